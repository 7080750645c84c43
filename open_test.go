//go:build linux

package sealbuf_test

import (
	"bytes"
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
)

// sealNamed reports whether msg names seal s as a word of its own ("write",
// not "future_write" or "sealed").
func sealNamed(msg string, s memfd.Seals) bool {
	return regexp.MustCompile(`(^|[^a-z_])` + s.String() + `([^a-z_]|$)`).MatchString(msg)
}

// consumers are the two ways to take a descriptor from a peer; both must
// refuse non-memfds the same way and leave the caller's file alone.
var consumers = []struct {
	name string
	take func(f *os.File) (io.Closer, error)
}{
	{"Open", func(f *os.File) (io.Closer, error) {
		s, err := sealbuf.Open(f)
		if s == nil {
			return nil, err
		}
		return s, err
	}},
	{"Map", func(f *os.File) (io.Closer, error) {
		m, err := sealbuf.Map(f)
		if m == nil {
			return nil, err
		}
		return m, err
	}},
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

func TestOpenRefusesNonMemfd(t *testing.T) {
	for _, c := range consumers {
		t.Run(c.name, func(t *testing.T) {
			t.Run("pipe", func(t *testing.T) {
				for _, end := range []string{"read", "write"} {
					r, w, err := os.Pipe()
					require.NoError(t, err)
					closeLater(t, r)
					closeLater(t, w)
					f := r
					if end == "write" {
						f = w
					}
					x, err := c.take(f)
					require.Nil(t, x)
					require.ErrorIs(t, err, memfd.ErrNotMemfd)
					t.Log(err)
					requireStillUsable(t, f, func(t *testing.T) {
						_, err := w.Write([]byte("ab"))
						require.NoError(t, err, "pipe still writable")
						p := make([]byte, 2)
						_, err = io.ReadFull(r, p)
						require.NoError(t, err, "pipe still readable")
						require.Equal(t, "ab", string(p))
					})
				}
			})
			t.Run("disk-file", func(t *testing.T) {
				dir := t.TempDir()
				var sfs unix.Statfs_t
				require.NoError(t, unix.Statfs(dir, &sfs))
				if sfs.Type == unix.TMPFS_MAGIC {
					dir = "."
					require.NoError(t, unix.Statfs(dir, &sfs))
					if sfs.Type == unix.TMPFS_MAGIC {
						t.Skip("no disk file system to test with")
					}
				}
				f, err := os.CreateTemp(dir, "sealbuf-disk-*")
				require.NoError(t, err)
				t.Cleanup(func() { f.Close(); os.Remove(f.Name()) })
				_, err = f.Write([]byte("0123456789"))
				require.NoError(t, err)
				_, err = f.Seek(3, io.SeekStart)
				require.NoError(t, err)

				x, err := c.take(f)
				require.Nil(t, x)
				require.ErrorIs(t, err, memfd.ErrNotMemfd)
				t.Log(err)
				requireStillUsable(t, f, func(t *testing.T) {
					pos, err := f.Seek(0, io.SeekCurrent)
					require.NoError(t, err)
					require.Equal(t, int64(3), pos, "the file offset is unchanged")
					p := make([]byte, 10)
					n, err := f.ReadAt(p, 0)
					require.NoError(t, err)
					require.Equal(t, "0123456789", string(p[:n]), "contents unchanged")
				})
			})
			t.Run("socket", func(t *testing.T) {
				fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				require.NoError(t, err)
				a, b := os.NewFile(uintptr(fds[0]), "sock-a"), os.NewFile(uintptr(fds[1]), "sock-b")
				closeLater(t, a)
				closeLater(t, b)
				x, err := c.take(a)
				require.Nil(t, x)
				require.ErrorIs(t, err, memfd.ErrNotMemfd)
				t.Log(err)
				requireStillUsable(t, a, func(t *testing.T) {
					_, err := a.Write([]byte("hi"))
					require.NoError(t, err)
					p := make([]byte, 2)
					_, err = io.ReadFull(b, p)
					require.NoError(t, err)
					require.Equal(t, "hi", string(p))
				})
			})
			t.Run("directory", func(t *testing.T) {
				f, err := os.Open(t.TempDir())
				require.NoError(t, err)
				closeLater(t, f)
				x, err := c.take(f)
				require.Nil(t, x)
				require.ErrorIs(t, err, memfd.ErrNotMemfd)
				requireStillUsable(t, f, func(t *testing.T) {
					_, err := f.ReadDir(-1)
					require.NoError(t, err)
				})
			})
			t.Run("dev-zero", func(t *testing.T) {
				f, err := os.OpenFile("/dev/zero", os.O_RDWR, 0)
				require.NoError(t, err)
				closeLater(t, f)
				x, err := c.take(f)
				require.Nil(t, x)
				require.ErrorIs(t, err, memfd.ErrNotMemfd)
				requireStillUsable(t, f, func(t *testing.T) {
					p := []byte{1}
					_, err := f.Read(p)
					require.NoError(t, err)
					require.Zero(t, p[0])
				})
			})
			t.Run("o-path-memfd", func(t *testing.T) {
				src := newTestMemfd(t, 100, memfd.SealImmutable)
				f := procOpen(t, src, unix.O_PATH)
				closeLater(t, f)
				x, err := c.take(f)
				require.Nil(t, x)
				require.ErrorIs(t, err, memfd.ErrNotMemfd)
				requireStillUsable(t, f, func(*testing.T) {})
			})
			t.Run("tmpfs-file", func(t *testing.T) {
				// A file on tmpfs is not a sealed memfd: it has only the
				// seal seal. Refused one way or another, and left alone.
				if _, err := os.Stat("/dev/shm"); err != nil {
					t.Skip("no /dev/shm")
				}
				f, err := os.CreateTemp("/dev/shm", "sealbuf-shm-*")
				if err != nil {
					t.Skip(err)
				}
				t.Cleanup(func() { f.Close(); os.Remove(f.Name()) })
				require.NoError(t, f.Truncate(8192))
				x, err := c.take(f)
				if c.name == "Map" && err == nil {
					// Map needs no seals; a tmpfs file is a valid target.
					require.NoError(t, x.Close())
					return
				}
				require.Nil(t, x)
				require.Error(t, err)
				t.Log(err)
				requireStillUsable(t, f, func(t *testing.T) {
					_, err := f.WriteAt([]byte("x"), 0)
					require.NoError(t, err)
				})
			})
		})
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
