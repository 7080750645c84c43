//go:build linux

package sealbuf_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/memfd"
	"github.com/sealbuf/sealbuf/sealtest"
)

// sealNamed reports whether msg names seal s as a word of its own ("write",
// not "future_write" or "sealed").
func sealNamed(msg string, s memfd.Seals) bool {
	return regexp.MustCompile(`(^|[^a-z_])` + s.String() + `([^a-z_]|$)`).MatchString(msg)
}

// A consumer is one of the two ways to take a descriptor from a peer:
// Open and Map must refuse the same bad descriptors the same way and leave
// the caller's file alone. maxSize, when not negative, is the size policy
// (MaxSize, MapMaxSize).
type consumer struct {
	name string
	take func(f *os.File, maxSize int64) (io.Closer, error)
}

var (
	openConsumer = consumer{"Open", func(f *os.File, maxSize int64) (io.Closer, error) {
		var opts []sealbuf.OpenOption
		if maxSize >= 0 {
			opts = append(opts, sealbuf.MaxSize(maxSize))
		}
		s, err := sealbuf.Open(f, opts...)
		if s == nil {
			return nil, err // not a non-nil io.Closer holding a nil pointer
		}
		return s, err
	}}
	mapConsumer = consumer{"Map", func(f *os.File, maxSize int64) (io.Closer, error) {
		var opts []sealbuf.MapOption
		if maxSize >= 0 {
			opts = append(opts, sealbuf.MapMaxSize(maxSize))
		}
		m, err := sealbuf.Map(f, opts...)
		if m == nil {
			return nil, err // not a non-nil io.Closer holding a nil pointer
		}
		return m, err
	}}
	consumers = []consumer{openConsumer, mapConsumer}
)

// errAny, as a refusal's wanted error, takes any error.
var errAny = errors.New("any error")

// A badDescriptor is a descriptor a peer may hand over where a sealed memfd
// belongs, with what Open and Map do with it (nil: take it), and what the
// caller's file must still do after a refusal.
type badDescriptor struct {
	name    string
	make    func(t *testing.T) (f *os.File, use func(t *testing.T))
	maxSize int64 // the size policy to take it with, or -1
	open    error // what Open fails with
	mapErr  error // what Map fails with
}

// fromDesc makes a sealtest recipe, skipping where the system cannot (no
// disk file system for a regular file, no /dev/shm).
func fromDesc(d sealtest.Desc, use func(t *testing.T, f *os.File)) func(t *testing.T) (*os.File, func(t *testing.T)) {
	return func(t *testing.T) (*os.File, func(t *testing.T)) {
		f, err := d.Create()
		if err != nil {
			t.Skip(err)
		}
		closeLater(t, f)
		return f, func(t *testing.T) { use(t, f) }
	}
}

// readsPattern is a use: f still reads sealtest's pattern.
func readsPattern(n int) func(t *testing.T, f *os.File) {
	return func(t *testing.T, f *os.File) {
		p := make([]byte, n)
		_, err := f.ReadAt(p, 0)
		require.NoError(t, err)
		require.True(t, sealtest.IsPattern(p, 0), "contents unchanged")
	}
}

// pipeEnd is a pipe of which the refused file is one end; afterwards both
// ends still carry bytes.
func pipeEnd(end int) func(t *testing.T) (*os.File, func(t *testing.T)) {
	return func(t *testing.T) (*os.File, func(t *testing.T)) {
		r, w, err := os.Pipe()
		require.NoError(t, err)
		closeLater(t, r)
		closeLater(t, w)
		return []*os.File{r, w}[end], func(t *testing.T) {
			_, err := w.Write([]byte("ab"))
			require.NoError(t, err, "pipe still writable")
			p := make([]byte, 2)
			_, err = io.ReadFull(r, p)
			require.NoError(t, err, "pipe still readable")
			require.Equal(t, "ab", string(p))
		}
	}
}

var badDescriptors = []badDescriptor{
	{name: "pipe-read", make: pipeEnd(0), maxSize: -1, open: memfd.ErrNotMemfd, mapErr: memfd.ErrNotMemfd},
	{name: "pipe-write", make: pipeEnd(1), maxSize: -1, open: memfd.ErrNotMemfd, mapErr: memfd.ErrNotMemfd},
	{name: "socket", maxSize: -1, open: memfd.ErrNotMemfd, mapErr: memfd.ErrNotMemfd,
		make: func(t *testing.T) (*os.File, func(t *testing.T)) {
			a, b := testutil.Socketpair(t, unix.SOCK_STREAM)
			return a, func(t *testing.T) {
				_, err := a.Write([]byte("hi"))
				require.NoError(t, err)
				p := make([]byte, 2)
				_, err = io.ReadFull(b, p)
				require.NoError(t, err)
				require.Equal(t, "hi", string(p))
			}
		}},
	{name: "disk-file", make: fromDesc(sealtest.RegularFile(), readsPattern(4096)), maxSize: -1, open: memfd.ErrNotMemfd, mapErr: memfd.ErrNotMemfd},
	{name: "directory", maxSize: -1, open: memfd.ErrNotMemfd, mapErr: memfd.ErrNotMemfd,
		make: fromDesc(sealtest.Directory(), func(t *testing.T, f *os.File) {
			_, err := f.Readdirnames(-1)
			require.NoError(t, err)
			_, err = f.Seek(0, io.SeekStart) // for the next use
			require.NoError(t, err)
		})},
	{name: "dev-zero", maxSize: -1, open: memfd.ErrNotMemfd, mapErr: memfd.ErrNotMemfd,
		make: fromDesc(sealtest.DevZero(), func(t *testing.T, f *os.File) {
			p := []byte{1}
			_, err := f.Read(p)
			require.NoError(t, err)
			require.Zero(t, p[0])
		})},
	{name: "o-path-memfd", maxSize: -1, open: memfd.ErrNotMemfd, mapErr: memfd.ErrNotMemfd,
		make: fromDesc(sealtest.OPath(), func(t *testing.T, f *os.File) {
			fi, err := f.Stat()
			require.NoError(t, err)
			require.EqualValues(t, 4096, fi.Size())
		})},
	// A file on tmpfs is not a sealed memfd: it has only the seal seal.
	// Map needs no seals, and cannot tell it from an unsealed memfd.
	{name: "tmpfs-file", make: fromDesc(sealtest.TmpfsFile(), readsPattern(4096)), maxSize: -1, open: errAny, mapErr: nil},
	{name: "unsealed", make: fromDesc(sealtest.Unsealed(4096), readsPattern(4096)), maxSize: -1, open: sealbuf.ErrNotSealed, mapErr: nil},
	{name: "too-large", make: fromDesc(sealtest.Sealed(4097), readsPattern(4097)), maxSize: 4096, open: sealbuf.ErrTooLarge, mapErr: sealbuf.ErrTooLarge},
}

// testRefusals takes each of badDescriptors with c and checks the outcome:
// refused with the row's error and the caller's file left alone (its
// status flags and offset as they were, and still usable), or taken. With
// thorough, also that the refusal left no descriptor or memfd mapping
// behind (the garbage collector off) and that the file is still usable
// once the finalizers of anything c dropped have run.
func testRefusals(t *testing.T, c consumer, thorough bool) {
	for _, bd := range badDescriptors {
		want := bd.open
		if c.name == "Map" {
			want = bd.mapErr
		}
		t.Run(bd.name, func(t *testing.T) {
			f, use := bd.make(t)
			if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
				_, _ = f.Seek(3, io.SeekStart) // an offset to keep (an O_PATH descriptor has none)
			}
			fl := fdFlags(t, f)
			off, offErr := f.Seek(0, io.SeekCurrent)
			if thorough {
				testutil.NoGC(t)
			}
			before := testutil.Snap(t)
			x, err := c.take(f, bd.maxSize)
			if want == nil {
				require.NoError(t, err)
				require.NoError(t, x.Close())
				return
			}
			require.Nil(t, x)
			if want == errAny {
				require.Error(t, err)
			} else {
				require.ErrorIs(t, err, want)
			}
			t.Log(err)
			untouched := func(t *testing.T) {
				require.Equal(t, fl, fdFlags(t, f), "status flags unchanged")
				o, oerr := f.Seek(0, io.SeekCurrent)
				require.Equal(t, offErr, oerr)
				require.Equal(t, off, o, "the file offset is unchanged")
				use(t)
			}
			if !thorough {
				_, err := f.Stat()
				require.NoError(t, err, "the refused file must stay open")
				untouched(t)
				return
			}
			testutil.RequireFlat(t, before, "a refusal leaves nothing behind")
			requireStillUsable(t, f, untouched)
		})
	}
}

// requireStillUsable checks that a refused f is open and usable, also after
// the garbage collector ran the finalizers of anything Open dropped.
func requireStillUsable(t *testing.T, f *os.File, use func(t *testing.T)) {
	t.Helper()
	_, err := f.Stat()
	require.NoError(t, err, "the refused file must stay open")
	use(t)
	testutil.SettleFinalizers(t)
	_, err = f.Stat()
	require.NoError(t, err, "the refused file was closed later (by a finalizer?)")
	use(t)
}

// TestOpenRefusesNonMemfd: Open and Map, side by side, on every bad
// descriptor (some of which are memfds after all: unsealed, too large),
// thoroughly (TestContract_OpenRefusesNonMemfd and
// TestContract_MapRefusesNonMemfd check the contract's part alone).
func TestOpenRefusesNonMemfd(t *testing.T) {
	for _, c := range consumers {
		t.Run(c.name, func(t *testing.T) { testRefusals(t, c, true) })
	}
}

func TestOpenRefusesMissingSeals(t *testing.T) {
	all := []memfd.Seals{memfd.SealShrink, memfd.SealGrow, memfd.SealWrite}
	for has := memfd.Seals(0); has < memfd.SealImmutable; has += memfd.SealShrink {
		t.Run(has.String(), func(t *testing.T) {
			src := newTestMemfd(t, 4096, has)
			f := procOpen(t, src, os.O_RDWR)
			closeLater(t, f)
			fds, maps := testutil.CountFDs(t), testutil.CountMaps(t)
			s, err := sealbuf.Open(f)
			require.Nil(t, s)
			require.ErrorIs(t, err, sealbuf.ErrNotSealed)
			require.NotErrorIs(t, err, memfd.ErrNotMemfd)
			t.Log(err)
			for _, seal := range all {
				if !has.Has(seal) {
					require.True(t, sealNamed(err.Error(), seal), "the error must name the missing seal %q: %v", seal, err)
				}
			}
			require.Equal(t, fds, testutil.CountFDs(t))
			require.Equal(t, maps, testutil.CountMaps(t), "nothing is mapped before the seals are checked")
			requireStillUsable(t, f, func(t *testing.T) {
				// Still the caller's, and still a memfd the sender can fix.
				_, err := f.WriteAt([]byte("w"), 0)
				if !has.Has(memfd.SealWrite) {
					require.NoError(t, err)
				}
			})
			// Once sealed properly, the same descriptor opens.
			require.NoError(t, src.AddSeals(memfd.SealImmutable))
			s, err = sealbuf.Open(f)
			require.NoError(t, err)
			require.NoError(t, s.Close())
		})
	}
}

func TestOpenRequireAdds(t *testing.T) {
	t.Run("seal-missing", func(t *testing.T) {
		src := newTestMemfd(t, 10, memfd.SealImmutable)
		f := procOpen(t, src, os.O_RDONLY)
		closeLater(t, f)
		s, err := sealbuf.Open(f, sealbuf.Require(memfd.SealSeal))
		require.Nil(t, s)
		require.ErrorIs(t, err, sealbuf.ErrNotSealed)
		require.True(t, sealNamed(err.Error(), memfd.SealSeal), "names the seal seal: %v", err)
		t.Log(err)
		requireStillUsable(t, f, func(*testing.T) {})

		require.NoError(t, src.AddSeals(memfd.SealSeal))
		s, err = sealbuf.Open(f, sealbuf.Require(memfd.SealSeal))
		require.NoError(t, err)
		require.NoError(t, s.Close())
	})
	t.Run("never-weakens", func(t *testing.T) {
		src := newTestMemfd(t, 10, memfd.SealShrink)
		for _, opts := range [][]sealbuf.OpenOption{
			{sealbuf.Require(0)},
			{sealbuf.Require(memfd.SealShrink)},
			{sealbuf.Require(memfd.SealShrink), sealbuf.Require(0)},
		} {
			f := procOpen(t, src, os.O_RDWR)
			closeLater(t, f)
			s, err := sealbuf.Open(f, opts...)
			require.Nil(t, s)
			require.ErrorIs(t, err, sealbuf.ErrNotSealed)
			require.True(t, sealNamed(err.Error(), memfd.SealWrite), "%v", err)
			require.True(t, sealNamed(err.Error(), memfd.SealGrow), "%v", err)
		}
	})
	t.Run("future-write", func(t *testing.T) {
		src := newTestMemfd(t, 10, memfd.SealImmutable)
		f := procOpen(t, src, os.O_RDWR)
		closeLater(t, f)
		s, err := sealbuf.Open(f, sealbuf.Require(memfd.SealFutureWrite))
		require.Nil(t, s)
		require.ErrorIs(t, err, sealbuf.ErrNotSealed)
		require.True(t, sealNamed(err.Error(), memfd.SealFutureWrite), "%v", err)
	})
}

func TestOpenMaxSize(t *testing.T) {
	for _, n := range []int64{0, 1, 4096, 100000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			src := newTestMemfd(t, n, memfd.SealImmutable)
			if n > 0 {
				f := procOpen(t, src, os.O_RDONLY)
				closeLater(t, f)
				maps := testutil.CountMaps(t)
				s, err := sealbuf.Open(f, sealbuf.MaxSize(n-1))
				require.Nil(t, s)
				require.ErrorIs(t, err, sealbuf.ErrTooLarge)
				require.Equal(t, maps, testutil.CountMaps(t), "nothing mapped")
				t.Log(err)
				requireStillUsable(t, f, func(*testing.T) {})
			}
			for _, max := range []int64{n, n + 1, 1 << 40} {
				f := procOpen(t, src, os.O_RDONLY)
				s, err := sealbuf.Open(f, sealbuf.MaxSize(max))
				require.NoError(t, err, "MaxSize(%d) with %d bytes", max, n)
				require.Equal(t, int(n), s.Len())
				require.NoError(t, s.Close())
			}
		})
	}
	t.Run("huge-sparse", func(t *testing.T) {
		src := newTestMemfd(t, 0, 0)
		require.NoError(t, src.Truncate(1<<40))
		require.NoError(t, src.AddSeals(memfd.SealImmutable))
		f := procOpen(t, src, os.O_RDONLY)
		closeLater(t, f)
		maps := testutil.CountMaps(t)
		s, err := sealbuf.Open(f, sealbuf.MaxSize(1<<20))
		require.Nil(t, s)
		require.ErrorIs(t, err, sealbuf.ErrTooLarge)
		require.Equal(t, maps, testutil.CountMaps(t))
	})
}

func TestOpenAccessModes(t *testing.T) {
	want := patternBytes(3*4096 + 1)
	src := newTestMemfd(t, int64(len(want)), memfd.SealImmutable|memfd.SealSeal)
	for _, mode := range []int{os.O_RDONLY, os.O_RDWR} {
		s, err := sealbuf.Open(procOpen(t, src, mode))
		require.NoError(t, err, "mode %#x", mode)
		require.Equal(t, len(want), s.Len())
		require.True(t, bytes.Equal(want, s.Bytes()))
		require.True(t, s.Seals().Has(memfd.SealImmutable|memfd.SealSeal))
		p := make([]byte, 10)
		n, err := s.ReadAt(p, int64(len(want)-5))
		require.ErrorIs(t, err, io.EOF)
		require.Equal(t, want[len(want)-5:], p[:n])
		require.NoError(t, s.Close())
		requireClosed(t, s.Close())
	}
}

func TestOpenZeroSize(t *testing.T) {
	src := newTestMemfd(t, 0, memfd.SealImmutable)
	for _, mode := range []int{os.O_RDONLY, os.O_RDWR} {
		s, err := sealbuf.Open(procOpen(t, src, mode))
		require.NoError(t, err)
		requireEmptySealed(t, s)
		require.NoError(t, s.Close())
	}
}

// TestOpenDoesNotTouchOffset: all I/O is positional, also on success.
func TestOpenDoesNotTouchOffset(t *testing.T) {
	src := newTestMemfd(t, 100, 0)
	f := procOpen(t, src, os.O_RDWR)
	_, err := f.Seek(42, io.SeekStart)
	require.NoError(t, err)
	flags := fdFlags(t, f)
	require.NoError(t, src.AddSeals(memfd.SealImmutable))
	// The offset is per open file description; keep a second descriptor
	// on f's description to look at it after Open took f.
	var dupFd int
	rc, err := f.SyscallConn()
	require.NoError(t, err)
	var derr error
	require.NoError(t, rc.Control(func(fd uintptr) { dupFd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }))
	require.NoError(t, derr)
	dup := os.NewFile(uintptr(dupFd), "dup")
	closeLater(t, dup)

	s, err := sealbuf.Open(f)
	require.NoError(t, err)
	_, err = s.ReadAt(make([]byte, 10), 0)
	require.NoError(t, err)
	_ = s.Bytes()
	pos, err := dup.Seek(0, io.SeekCurrent)
	require.NoError(t, err)
	require.Equal(t, int64(42), pos)
	require.Equal(t, flags, fdFlags(t, dup), "status flags unchanged")
	require.NoError(t, s.Close())
}

func TestOpenNilFile(t *testing.T) {
	s, err := sealbuf.Open(nil)
	require.Nil(t, s)
	require.Error(t, err)
	m, err := sealbuf.Map(nil)
	require.Nil(t, m)
	require.Error(t, err)
}

// TestOpenClosedFile: a file the caller already closed is an error, not a
// panic.
func TestOpenClosedFile(t *testing.T) {
	src := newTestMemfd(t, 10, memfd.SealImmutable)
	f := procOpen(t, src, os.O_RDONLY)
	require.NoError(t, f.Close())
	s, err := sealbuf.Open(f)
	require.Nil(t, s)
	requireClosed(t, err)
	m, err := sealbuf.Map(f)
	require.Nil(t, m)
	requireClosed(t, err)
}

// TestOpenProcPath: a memfd reached by path is still a memfd.
func TestOpenProcPath(t *testing.T) {
	src := newTestMemfd(t, 10, memfd.SealImmutable)
	var path string
	require.NoError(t, src.Control(func(fd int) error {
		path = filepath.Join("/proc", fmt.Sprint(os.Getpid()), "fd", fmt.Sprint(fd))
		return nil
	}))
	f, err := os.Open(path)
	require.NoError(t, err)
	s, err := sealbuf.Open(f)
	require.NoError(t, err)
	require.Equal(t, patternBytes(10), s.Bytes())
	require.NoError(t, s.Close())
}
