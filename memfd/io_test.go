//go:build linux

package memfd_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/memfd"
)

// ReadAt must behave exactly as (*os.File).ReadAt: compare with a disk file
// holding the same bytes.
func TestReadAtMatchesOSFile(t *testing.T) {
	for _, size := range []int{0, 1, 10, 4096, 4097} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i*7 + 1)
		}
		m := create(t, fmt.Sprintf("readat-%d", size))
		if size > 0 {
			n, err := m.WriteAt(data, 0)
			require.NoError(t, err)
			require.Equal(t, size, n)
		}
		path := filepath.Join(t.TempDir(), "ref")
		require.NoError(t, os.WriteFile(path, data, 0o600))
		ref, err := os.Open(path)
		require.NoError(t, err)
		t.Cleanup(func() { ref.Close() })

		offs := []int64{0, 1, int64(size) - 1, int64(size), int64(size) + 1, int64(size) + 5000, 1 << 40}
		lens := []int{0, 1, 2, size, size + 1, 8192}
		for _, off := range offs {
			if off < 0 {
				continue
			}
			for _, l := range lens {
				got := make([]byte, l)
				want := make([]byte, l)
				gn, gerr := m.ReadAt(got, off)
				wn, werr := ref.ReadAt(want, off)
				require.Equal(t, wn, gn, "size %d off %d len %d: n", size, off, l)
				require.Equal(t, werr, gerr, "size %d off %d len %d: err", size, off, l)
				require.Equal(t, want[:wn], got[:gn])
			}
		}
	}
}

func TestReadAtEOF(t *testing.T) {
	m := create(t, "eof")

	// 0-byte file.
	n, err := m.ReadAt(make([]byte, 1), 0)
	require.Equal(t, 0, n)
	require.Equal(t, io.EOF, err)

	_, err = m.WriteAt([]byte("abcdef"), 0)
	require.NoError(t, err)

	// Exactly at the end, and past it.
	for _, off := range []int64{6, 7, 1 << 30} {
		n, err = m.ReadAt(make([]byte, 3), off)
		require.Equal(t, 0, n, "off %d", off)
		require.Equal(t, io.EOF, err, "off %d", off)
	}
	// Crossing the end: the bytes up to it, and io.EOF.
	b := make([]byte, 4)
	n, err = m.ReadAt(b, 4)
	require.Equal(t, 2, n)
	require.Equal(t, io.EOF, err)
	require.Equal(t, "ef", string(b[:n]))
	// Ending exactly at the end: no EOF.
	n, err = m.ReadAt(b[:2], 4)
	require.Equal(t, 2, n)
	require.NoError(t, err)

	// Negative offsets are errors, not EOF, and not panics.
	n, err = m.ReadAt(b, -1)
	require.Error(t, err)
	require.NotEqual(t, io.EOF, err)
	require.Zero(t, n)
	n, err = m.WriteAt(b, -1)
	require.Error(t, err)
	require.Zero(t, n)

	var _ io.ReaderAt = m
	var _ io.WriterAt = m
}

func TestWriteAtGrowsAndTruncate(t *testing.T) {
	m := create(t, "grow")
	n, err := m.WriteAt([]byte("xyz"), 10)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	size, err := m.Size()
	require.NoError(t, err)
	require.Equal(t, int64(13), size)
	b := make([]byte, 13)
	n, err = m.ReadAt(b, 0)
	require.NoError(t, err)
	require.Equal(t, 13, n)
	require.Equal(t, append(make([]byte, 10), "xyz"...), b)

	n, err = m.WriteAt(nil, 100)
	require.NoError(t, err)
	require.Zero(t, n)

	require.NoError(t, m.Truncate(4))
	size, err = m.Size()
	require.NoError(t, err)
	require.Equal(t, int64(4), size)
	require.NoError(t, m.Truncate(1<<20))
	size, err = m.Size()
	require.NoError(t, err)
	require.Equal(t, int64(1<<20), size)
	require.NoError(t, m.Truncate(0))
	size, err = m.Size()
	require.NoError(t, err)
	require.Zero(t, size)
	require.Error(t, m.Truncate(-1))
}

// All I/O is positional: the open file description's offset is never read or
// moved, whatever it is.
func TestIOIsPositional(t *testing.T) {
	m := create(t, "positional")
	require.Zero(t, offset(t, m))
	exercise := func() {
		_, err := m.WriteAt([]byte("0123456789"), 0)
		require.NoError(t, err)
		_, err = m.WriteAt([]byte("abc"), 20)
		require.NoError(t, err)
		_, err = m.ReadAt(make([]byte, 5), 2)
		require.NoError(t, err)
		_, err = m.ReadAt(make([]byte, 50), 0)
		require.Equal(t, io.EOF, err)
		_, err = m.Size()
		require.NoError(t, err)
		require.NoError(t, m.Truncate(30))
		_, err = m.Seals()
		require.NoError(t, err)
		require.NoError(t, m.AddSeals(memfd.SealGrow))
		r, err := m.ReopenReadOnly()
		require.NoError(t, err)
		require.NoError(t, r.Close())
	}
	exercise()
	require.Zero(t, offset(t, m), "the file offset moved")

	// Someone else sharing the open file description moved the offset: the
	// File neither depends on it nor changes it.
	borrow(t, m, func(fd int) {
		_, err := unix.Seek(fd, 7, unix.SEEK_SET)
		require.NoError(t, err)
	})
	_, fl := fdFlags(t, m)
	b := make([]byte, 3)
	n, err := m.ReadAt(b, 0)
	require.NoError(t, err)
	require.Equal(t, "012", string(b[:n]))
	exercise()
	require.Equal(t, int64(7), offset(t, m), "the file offset moved")
	_, fl2 := fdFlags(t, m)
	require.Equal(t, fl, fl2, "status flags changed")
}
