//go:build linux

package sealbuf_test

import (
	"bytes"
	"io"
	"os"
	"sync"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/memfd"
	"github.com/sealbuf/sealbuf/sigbus"
)

// sealedKinds builds a Sealed each way a user can get one.
var sealedKinds = []struct {
	name string
	make func(t *testing.T, content []byte) *sealbuf.Sealed
}{
	{"New+Seal", func(t *testing.T, content []byte) *sealbuf.Sealed {
		b, err := sealbuf.New(len(content))
		require.NoError(t, err)
		copy(b.Bytes(), content)
		s, err := b.Seal()
		require.NoError(t, err)
		return s
	}},
	{"FromBytes", func(t *testing.T, content []byte) *sealbuf.Sealed {
		s, err := sealbuf.FromBytes(content)
		require.NoError(t, err)
		return s
	}},
	{"Open", func(t *testing.T, content []byte) *sealbuf.Sealed {
		src, err := sealbuf.FromBytes(content)
		require.NoError(t, err)
		defer src.Close()
		s, err := sealbuf.Open(procOpen(t, src.File(), os.O_RDWR))
		require.NoError(t, err)
		return s
	}},
}

func TestSealedReadAt(t *testing.T) {
	const size = 2*4096 + 100
	want := patternBytes(size)
	for _, k := range sealedKinds {
		t.Run(k.name, func(t *testing.T) {
			s := k.make(t, want)
			defer s.Close()
			require.Equal(t, size, s.Len())

			p := make([]byte, 300)
			for _, off := range []int64{0, 1, 4095, 4096, size - 300} {
				n, err := s.ReadAt(p, off)
				require.NoError(t, err, "off %d", off)
				require.Equal(t, 300, n)
				require.Equal(t, want[off:off+300], p)
			}
			// Crossing the end: the bytes up to it, and io.EOF.
			n, err := s.ReadAt(p, size-100)
			require.ErrorIs(t, err, io.EOF)
			require.Equal(t, 100, n)
			require.Equal(t, want[size-100:], p[:100])
			// At or past the end: 0, io.EOF.
			for _, off := range []int64{size, size + 1, 1 << 40} {
				n, err = s.ReadAt(p, off)
				require.ErrorIs(t, err, io.EOF, "off %d", off)
				require.Zero(t, n)
			}
			// Empty reads inside the buffer succeed.
			n, err = s.ReadAt(nil, 5)
			require.NoError(t, err)
			require.Zero(t, n)
			// Negative offsets are an error, never a panic.
			n, err = s.ReadAt(p, -1)
			require.Error(t, err)
			require.Zero(t, n)

			var _ io.ReaderAt = s
			got, err := io.ReadAll(io.NewSectionReader(s, 0, 1<<40))
			require.NoError(t, err)
			require.True(t, bytes.Equal(want, got))
		})
	}
}

func TestSealedBytesReadOnly(t *testing.T) {
	for _, k := range sealedKinds {
		t.Run(k.name, func(t *testing.T) {
			s := k.make(t, patternBytes(5000))
			defer s.Close()
			mem := s.Bytes()
			require.Len(t, mem, 5000)
			line := testutil.MapsLine(t, uintptr(unsafe.Pointer(&mem[0])))
			require.NotEmpty(t, line)
			t.Log(line)
			var lo, hi uintptr
			var perms string
			_, err := sscanMaps(line, &lo, &hi, &perms)
			require.NoError(t, err)
			require.Equal(t, byte('r'), perms[0])
			require.Equal(t, byte('-'), perms[1], "the mapping of a Sealed must not be writable: %s", line)

			// And a store really faults.
			err = sigbus.Guard(mem, func() { mem[4999] = 0 })
			require.ErrorIs(t, err, sigbus.ErrFault, "a store into Sealed.Bytes must fault")
			require.Equal(t, pattern(4999), s.Bytes()[4999])
		})
	}
}

func TestSealedSealsAndFile(t *testing.T) {
	for _, k := range sealedKinds {
		t.Run(k.name, func(t *testing.T) {
			s := k.make(t, []byte("contents"))
			seals := s.Seals()
			require.True(t, seals.Has(memfd.SealShrink|memfd.SealGrow|memfd.SealWrite|memfd.SealSeal), "%v", seals)

			f := s.File()
			require.NotNil(t, f)
			require.Same(t, f, s.File(), "File is borrowed: the same handle every time")
			size, err := f.Size()
			require.NoError(t, err)
			require.Equal(t, int64(8), size)
			p := make([]byte, 8)
			_, err = f.ReadAt(p, 0)
			require.NoError(t, err)
			require.Equal(t, "contents", string(p))

			require.NoError(t, s.Close())
			_, err = f.Size()
			requireClosed(t, err, "Close closes the borrowed memfd")
		})
	}
}

func TestSealedAfterClose(t *testing.T) {
	for _, k := range sealedKinds {
		for _, used := range []bool{false, true} {
			name := k.name + "/unused"
			if used {
				name = k.name + "/used"
			}
			t.Run(name, func(t *testing.T) {
				s := k.make(t, []byte("contents"))
				if used {
					require.Equal(t, "contents", string(s.Bytes()))
				}
				require.NoError(t, s.Close())

				p := make([]byte, 4)
				for _, off := range []int64{0, 7, 8, 100} {
					n, err := s.ReadAt(p, off)
					requireClosed(t, err, "ReadAt(off %d) after Close", off)
					require.Zero(t, n)
				}
				n, err := s.ReadAt(nil, 0)
				requireClosed(t, err, "empty ReadAt after Close")
				require.Zero(t, n)
				require.Empty(t, s.Bytes(), "Bytes after Close")
				require.Equal(t, 8, s.Len())
				require.True(t, s.Seals().Has(memfd.SealImmutable))
				require.NotNil(t, s.File())
				_, err = s.File().Seals()
				requireClosed(t, err)
				requireClosed(t, s.Close(), "second Close")
				requireClosed(t, s.Close(), "third Close")
			})
		}
	}
}

func TestSealedAfterCloseNegativeOffset(t *testing.T) {
	// os.File checks for Close before it looks at the arguments.
	s, err := sealbuf.FromBytes([]byte("x"))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = s.ReadAt(make([]byte, 1), -1)
	requireClosed(t, err, "ReadAt(-1) after Close")
}

func TestSealedZeroSize(t *testing.T) {
	for _, k := range sealedKinds {
		t.Run(k.name, func(t *testing.T) {
			s := k.make(t, nil)
			requireEmptySealed(t, s)
			require.NoError(t, s.Close())
			_, err := s.ReadAt(make([]byte, 1), 0)
			requireClosed(t, err)
			requireClosed(t, s.Close())
		})
	}
}

// Readers, Bytes and Close race: nothing panics, reads either succeed with
// the right bytes or fail with os.ErrClosed.
func TestSealedConcurrentClose(t *testing.T) {
	want := patternBytes(1 << 16)
	for range 50 {
		s, err := sealbuf.FromBytes(want)
		require.NoError(t, err)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 4 {
			wg.Go(func() {
				p := make([]byte, 512)
				for i := range 200 {
					off := int64(i*512) % int64(len(want))
					n, err := s.ReadAt(p, off)
					if err != nil {
						if !isClosed(err) {
							errs <- err
						}
						return
					}
					if !bytes.Equal(p[:n], want[off:off+int64(n)]) {
						errs <- errBadBytes
						return
					}
				}
			})
		}
		require.NoError(t, s.Close())
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	}
}

// TestOpenOwnsFile: on success Open owns f, and the Sealed's Close closes it.
func TestOpenOwnsFile(t *testing.T) {
	src := newTestMemfd(t, 100, memfd.SealImmutable)
	f := procOpen(t, src, os.O_RDONLY)
	s, err := sealbuf.Open(f)
	require.NoError(t, err)
	_, err = f.Stat()
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = f.Stat()
	require.ErrorIs(t, err, os.ErrClosed, "Sealed.Close closes the file Open took")
}
