//go:build linux

package memfd_test

import (
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/memfd"
)

// With the garbage collector off no finalizer can close a forgotten
// descriptor: every path must release its own.
func TestNoDescriptorLeaks(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))

	// Warm up whatever the runtime opens lazily.
	w, err := memfd.Create("warm-up")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	before := openFDs(t)

	long := strings.Repeat("n", 300)
	for i := 0; i < 1000; i++ {
		m, err := memfd.Create("cycle")
		require.NoError(t, err)
		_, err = m.WriteAt([]byte("payload"), 0)
		require.NoError(t, err)
		_, err = m.Seals()
		require.NoError(t, err)
		r, err := m.ReopenReadOnly()
		require.NoError(t, err)
		require.NoError(t, r.Close())
		require.NoError(t, m.AddSeals(memfd.SealShrink|memfd.SealGrow|memfd.SealWrite|memfd.SealSeal))
		require.Error(t, m.AddSeals(memfd.SealFutureWrite))
		_, err = m.WriteAt([]byte("x"), 0)
		require.Error(t, err)
		require.NoError(t, m.Close())
		require.Error(t, m.Close())
		_, err = m.ReopenReadOnly()
		require.Error(t, err)

		// Create failures.
		_, err = memfd.Create(long)
		require.Error(t, err)
		_, err = memfd.Create("bad-huge", memfd.WithHugeTLB(3))
		require.Error(t, err)

		// Adoption, success and refusal.
		fd, err := unix.MemfdCreate("raw", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		require.NoError(t, err)
		a, err := memfd.FromFile(os.NewFile(uintptr(fd), "raw"))
		require.NoError(t, err)
		require.NoError(t, a.Close())

		pr, pw, err := os.Pipe()
		require.NoError(t, err)
		_, err = memfd.FromFile(pr)
		require.ErrorIs(t, err, memfd.ErrNotMemfd)
		require.NoError(t, pr.Close())
		require.NoError(t, pw.Close())
	}
	after := openFDs(t)
	require.Equal(t, before, after, "open descriptors before and after 1000 cycles")
}
