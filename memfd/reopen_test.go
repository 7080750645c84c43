//go:build linux

package memfd_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/memfd"
)

func TestReopenReadOnly(t *testing.T) {
	m, err := memfd.Create("reopen")
	require.NoError(t, err)
	_, err = m.WriteAt([]byte("same bytes"), 0)
	require.NoError(t, err)

	r, err := m.ReopenReadOnly()
	require.NoError(t, err)
	require.NotNil(t, r)
	t.Cleanup(func() { _ = r.Close() })
	require.Equal(t, "reopen", r.Name())

	fdfl, fl := fdFlags(t, r)
	require.NotZero(t, fdfl&unix.FD_CLOEXEC, "reopened descriptor must be close-on-exec")
	require.Equal(t, unix.O_RDONLY, fl&unix.O_ACCMODE)
	_, origFl := fdFlags(t, m)
	require.Equal(t, unix.O_RDWR, origFl&unix.O_ACCMODE, "the original stays read-write")

	// A new open file description: its offset is its own (a dup would share it).
	borrow(t, m, func(fd int) {
		_, err := unix.Seek(fd, 5, unix.SEEK_SET)
		require.NoError(t, err)
	})
	require.Zero(t, offset(t, r), "ReopenReadOnly shares the original's open file description")
	borrow(t, m, func(fd int) {
		_, err := unix.Seek(fd, 0, unix.SEEK_SET)
		require.NoError(t, err)
	})

	// The same memfd: same inode, same seals, writes visible.
	so, sr := fstat(t, m), fstat(t, r)
	require.Equal(t, so.Ino, sr.Ino)
	require.Equal(t, so.Dev, sr.Dev)
	require.NoError(t, m.AddSeals(memfd.SealShrink))
	seals, err := r.Seals()
	require.NoError(t, err)
	require.True(t, seals.Has(memfd.SealShrink|memfd.SealExec), "seals %v", seals)

	// Read-only.
	n, err := r.WriteAt([]byte("X"), 0)
	require.Error(t, err)
	require.ErrorIs(t, err, unix.EBADF)
	require.Zero(t, n)
	require.Error(t, r.Truncate(100))

	// Independent of the original's lifetime.
	require.NoError(t, m.Close())
	b := make([]byte, 10)
	n, err = r.ReadAt(b, 0)
	require.NoError(t, err)
	require.Equal(t, "same bytes", string(b[:n]))
	size, err := r.Size()
	require.NoError(t, err)
	require.Equal(t, int64(10), size)

	// A reopen of the reopen works too, and closing r leaves it alone.
	r2, err := r.ReopenReadOnly()
	require.NoError(t, err)
	require.NoError(t, r.Close())
	n, err = r2.ReadAt(b, 0)
	require.NoError(t, err)
	require.Equal(t, "same bytes", string(b[:n]))
	require.NoError(t, r2.Close())
}

func TestReopenReadOnlyOfAdopted(t *testing.T) {
	raw, _ := rawMemfd(t, "adopted-reopen", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	m, err := memfd.FromFile(raw)
	require.NoError(t, err)
	defer m.Close()
	r, err := m.ReopenReadOnly()
	require.NoError(t, err)
	defer r.Close()
	require.Equal(t, "adopted-reopen", r.Name())
	_, fl := fdFlags(t, r)
	require.Equal(t, unix.O_RDONLY, fl&unix.O_ACCMODE)
}
