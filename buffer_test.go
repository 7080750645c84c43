//go:build linux

package sealbuf_test

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/memfd"
)

// bufferSizes are the sizes New and FromBytes must honour exactly: no
// rounding to pages.
func bufferSizes() []int {
	return []int{0, 1, page - 1, page, page + 1, 3*page + 17, 64 << 20}
}

func TestNewSizes(t *testing.T) {
	for _, size := range bufferSizes() {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			b, err := sealbuf.New(size)
			require.NoError(t, err)
			require.NotNil(t, b)
			require.Equal(t, size, b.Len())
			mem := b.Bytes()
			require.Len(t, mem, size)
			require.NotNil(t, mem, "Bytes of a live Buffer is never nil, also for size 0")
			require.Equal(t, -1, bytes.IndexFunc(mem[:min(size, 1<<16)], func(r rune) bool { return r != 0 }), "New zero-fills")
			want := patternBytes(size)
			copy(mem, want)

			s, err := b.Seal()
			require.NoError(t, err)
			defer func() { require.NoError(t, s.Close()) }()
			require.Nil(t, b.Bytes(), "the writable view is gone after Seal")

			require.Equal(t, size, s.Len())
			got, err := s.File().Size()
			require.NoError(t, err)
			require.Equal(t, int64(size), got, "the memfd has exactly size bytes")
			require.True(t, bytes.Equal(want, s.Bytes()), "sealed bytes differ from what was written")
			require.Len(t, s.Bytes(), size)

			all := make([]byte, size+1)
			n, err := s.ReadAt(all, 0)
			require.Equal(t, size, n)
			require.ErrorIs(t, err, io.EOF)
			require.True(t, bytes.Equal(want, all[:n]))

			// What a consumer would see.
			o, err := sealbuf.Open(procOpen(t, s.File(), os.O_RDONLY))
			require.NoError(t, err)
			defer func() { require.NoError(t, o.Close()) }()
			require.Equal(t, size, o.Len())
			require.True(t, bytes.Equal(want, o.Bytes()))
		})
	}
}

func TestNewRefusesBadSizes(t *testing.T) {
	for _, size := range []int{-1, -page, math.MaxInt>>1 + 1, math.MaxInt} { // 1<<62, 1<<63-1 (on 64-bit ports)
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			fds, maps := testutil.CountFDs(t), testutil.CountMaps(t)
			b, err := sealbuf.New(size)
			require.Error(t, err)
			require.Nil(t, b, "a failed New returns a nil *Buffer")
			require.Equal(t, fds, testutil.CountFDs(t), "descriptor leaked by a failed New")
			require.Equal(t, maps, testutil.CountMaps(t), "mapping leaked by a failed New")
			t.Log(err)
		})
	}
}

func TestBufferSealConsumes(t *testing.T) {
	b, err := sealbuf.New(100)
	require.NoError(t, err)
	copy(b.Bytes(), "sealed")
	s, err := b.Seal()
	require.NoError(t, err)
	defer s.Close()

	s2, err := b.Seal()
	require.Error(t, err, "a second Seal must fail")
	require.Nil(t, s2)
	require.Nil(t, b.Bytes())
	require.Equal(t, 100, b.Len())

	require.NoError(t, b.Close(), "Close after Seal is a no-op returning nil")
	require.NoError(t, b.Close(), "and stays one")

	// The Sealed is untouched by the Buffer's Close.
	require.Equal(t, "sealed", string(s.Bytes()[:6]))
	p := make([]byte, 6)
	n, err := s.ReadAt(p, 0)
	require.NoError(t, err)
	require.Equal(t, "sealed", string(p[:n]))
	size, err := s.File().Size()
	require.NoError(t, err)
	require.Equal(t, int64(100), size)

	seals := s.Seals()
	require.True(t, seals.Has(memfd.SealShrink|memfd.SealGrow|memfd.SealWrite|memfd.SealSeal), "%v", seals)
	now, err := s.File().Seals()
	require.NoError(t, err)
	require.Equal(t, now, seals, "Seals reports what the memfd has")

	// The seals are real: nobody can change the memfd any more.
	_, err = s.File().WriteAt([]byte("x"), 0)
	require.ErrorIs(t, err, unix.EPERM)
	require.ErrorIs(t, s.File().Truncate(10), unix.EPERM)
	require.ErrorIs(t, s.File().Truncate(1000), unix.EPERM)
	require.ErrorIs(t, s.File().AddSeals(memfd.SealFutureWrite), unix.EPERM)
}

func TestBufferCloseTwice(t *testing.T) {
	b, err := sealbuf.New(10)
	require.NoError(t, err)
	require.NoError(t, b.Close())
	requireClosed(t, b.Close())
	require.Nil(t, b.Bytes())
	s, err := b.Seal()
	requireClosed(t, err, "Seal after Close")
	require.Nil(t, s)
	requireClosed(t, b.Close())
}

func TestBufferZeroSize(t *testing.T) {
	b, err := sealbuf.New(0)
	require.NoError(t, err)
	require.Equal(t, 0, b.Len())
	require.Empty(t, b.Bytes())
	s, err := b.Seal()
	require.NoError(t, err)
	defer s.Close()
	requireEmptySealed(t, s)
}

func requireEmptySealed(t *testing.T, s *sealbuf.Sealed) {
	t.Helper()
	require.Equal(t, 0, s.Len())
	require.Empty(t, s.Bytes())
	n, err := s.ReadAt(make([]byte, 8), 0)
	require.Equal(t, 0, n)
	require.ErrorIs(t, err, io.EOF)
	n, err = s.ReadAt(nil, 0)
	require.Equal(t, 0, n)
	require.ErrorIs(t, err, io.EOF, "at the end, even an empty read is io.EOF (as os.File)")
	require.True(t, s.Seals().Has(memfd.SealImmutable), "%v", s.Seals())
}

// sealBlocker maps the Buffer's memfd writable a second time, behind the
// Buffer's back, so that sealing it against write fails with EBUSY.
func sealBlocker(t *testing.T, name string, size int) (unmap func()) {
	t.Helper()
	f := testutil.MemfdByName(t, name)
	defer f.Close()
	rc, err := f.SyscallConn()
	require.NoError(t, err)
	var p unsafe.Pointer
	var merr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		p, merr = unix.MmapPtr(int(fd), 0, nil, uintptr(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	}))
	require.NoError(t, merr)
	done := false
	unmap = func() {
		if !done {
			done = true
			require.NoError(t, unix.MunmapPtr(p, uintptr(size)))
		}
	}
	t.Cleanup(unmap)
	return unmap
}

func TestBufferSealFailsBusy(t *testing.T) {
	name := fmt.Sprintf("sealbuf-busy-%d", time.Now().UnixNano())
	const size = 3*4096 + 5

	t.Run("then-close", func(t *testing.T) {
		b, err := sealbuf.New(size, sealbuf.WithName(name+"-a"))
		require.NoError(t, err)
		want := patternBytes(size)
		copy(b.Bytes(), want)
		sealBlocker(t, name+"-a", size)

		s, err := b.Seal()
		require.Error(t, err)
		require.Nil(t, s)
		require.ErrorIs(t, err, unix.EBUSY, "the kernel's error stays reachable")
		t.Log(err)
		require.True(t, bytes.Equal(want, b.Bytes()), "a Buffer that failed to seal keeps its contents")
		require.Equal(t, size, b.Len())
		require.NoError(t, b.Close(), "a Buffer that failed to seal stays closable")
		requireClosed(t, b.Close())
	})

	t.Run("then-retry", func(t *testing.T) {
		b, err := sealbuf.New(size, sealbuf.WithName(name+"-b"))
		require.NoError(t, err)
		defer b.Close()
		copy(b.Bytes(), patternBytes(size))
		unmap := sealBlocker(t, name+"-b", size)

		_, err = b.Seal()
		require.ErrorIs(t, err, unix.EBUSY)
		mem := b.Bytes()
		require.Len(t, mem, size, "the writable view is back after a failed Seal")
		mem[0] = 'X'

		unmap()
		s, err := b.Seal()
		require.NoError(t, err, "once the other writable mapping is gone, Seal works")
		defer s.Close()
		want := patternBytes(size)
		want[0] = 'X'
		require.True(t, bytes.Equal(want, s.Bytes()))
		require.NoError(t, b.Close())
	})
}

func TestBufferName(t *testing.T) {
	name := fmt.Sprintf("sealbuf-named-%d", time.Now().UnixNano())
	b, err := sealbuf.New(1, sealbuf.WithName(name))
	require.NoError(t, err)
	s, err := b.Seal()
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, name, s.File().Name())
}

func TestFromBytesEmpty(t *testing.T) {
	for _, in := range [][]byte{nil, {}} {
		s, err := sealbuf.FromBytes(in)
		require.NoError(t, err)
		requireEmptySealed(t, s)
		size, err := s.File().Size()
		require.NoError(t, err)
		require.Zero(t, size)
		require.NoError(t, s.Close())
	}
}

func TestFromBytesContent(t *testing.T) {
	for _, size := range append(bufferSizes()[1:], 1<<20+3) {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			in := patternBytes(size)
			s, err := sealbuf.FromBytes(in)
			require.NoError(t, err)
			defer func() { require.NoError(t, s.Close()) }()
			in[0], in[size-1] = 0, 0 // b is not retained
			want := patternBytes(size)

			require.Equal(t, size, s.Len())
			got, err := s.File().Size()
			require.NoError(t, err)
			require.Equal(t, int64(size), got, "exactly len(b) bytes")
			require.True(t, s.Seals().Has(memfd.SealImmutable|memfd.SealSeal), "%v", s.Seals())

			all := make([]byte, size)
			n, err := s.ReadAt(all, 0)
			require.NoError(t, err)
			require.Equal(t, size, n)
			require.True(t, bytes.Equal(want, all), "ReadAt content")
			require.True(t, bytes.Equal(want, s.Bytes()), "Bytes content")
		})
	}
}
