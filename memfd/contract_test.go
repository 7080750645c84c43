//go:build linux

package memfd_test

// Contract tests for package memfd, written from DESIGN.md "Public contract"
// only: every sentence about package memfd (and the "Everywhere" paragraph)
// has a test here named TestContract_<Thing>.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/memfd"
)

// ---- compile-time contract: names and signatures ----

var (
	_ func(string, ...memfd.Option) (*memfd.File, error) = memfd.Create
	_ func(*os.File) (*memfd.File, error)                = memfd.FromFile
	_ func(int64) memfd.Option                           = memfd.WithHugeTLB
	_ func() memfd.Option                                = memfd.WithExec
	_ func(string) (memfd.Seals, error)                  = memfd.ParseSeals

	_ func(*memfd.File) string                      = (*memfd.File).Name
	_ func(*memfd.File) (int64, error)              = (*memfd.File).Size
	_ func(*memfd.File, int64) error                = (*memfd.File).Truncate
	_ func(*memfd.File, []byte, int64) (int, error) = (*memfd.File).ReadAt
	_ func(*memfd.File, []byte, int64) (int, error) = (*memfd.File).WriteAt
	_ func(*memfd.File) (memfd.Seals, error)        = (*memfd.File).Seals
	_ func(*memfd.File, memfd.Seals) error          = (*memfd.File).AddSeals
	_ func(*memfd.File) (syscall.RawConn, error)    = (*memfd.File).SyscallConn
	_ func(*memfd.File) (*memfd.File, error)        = (*memfd.File).ReopenReadOnly
	_ func(*memfd.File) error                       = (*memfd.File).Close
	_ func(memfd.Seals) string                      = memfd.Seals.String
	_ func(memfd.Seals, memfd.Seals) bool           = memfd.Seals.Has
	_ io.ReaderAt                                   = (*memfd.File)(nil)
	_ io.WriterAt                                   = (*memfd.File)(nil)
	_ io.Closer                                     = (*memfd.File)(nil)
	_ syscall.Conn                                  = (*memfd.File)(nil)
	_ fmt.Stringer                                  = memfd.Seals(0)
	_ error                                         = memfd.ErrNotMemfd
	_ memfd.Seals                                   = memfd.SealSeal | memfd.SealShrink | memfd.SealGrow | memfd.SealWrite | memfd.SealFutureWrite | memfd.SealExec
)

// Seals is "type Seals uint32".
var _ uint32 = uint32(memfd.Seals(0))

// ---- helpers (all prefixed ct) ----

func ctCreate(t *testing.T, name string, opts ...memfd.Option) *memfd.File {
	t.Helper()
	f, err := memfd.Create(name, opts...)
	require.NoError(t, err)
	require.NotNil(t, f)
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// ctControl borrows the descriptor of anything with SyscallConn.
func ctControl(t *testing.T, c syscall.Conn, fn func(fd int)) {
	t.Helper()
	rc, err := c.SyscallConn()
	require.NoError(t, err)
	require.NoError(t, rc.Control(func(fd uintptr) { fn(int(fd)) }))
}

// ctRawMemfd makes a memfd with the raw syscall, as a peer would, sized and
// sealed as asked, returned as an *os.File the test owns.
func ctRawMemfd(t *testing.T, name string, size int64, seals int) *os.File {
	t.Helper()
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	require.NoError(t, err)
	if size > 0 {
		require.NoError(t, unix.Ftruncate(fd, size))
	}
	if seals != 0 {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals)
		require.NoError(t, err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+name)
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func ctGetfl(t *testing.T, c syscall.Conn) int {
	t.Helper()
	var fl int
	ctControl(t, c, func(fd int) {
		v, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		require.NoError(t, err)
		fl = v
	})
	return fl
}

func ctGetfd(t *testing.T, c syscall.Conn) int {
	t.Helper()
	var fl int
	ctControl(t, c, func(fd int) {
		v, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		require.NoError(t, err)
		fl = v
	})
	return fl
}

func ctSeek(t *testing.T, c syscall.Conn) int64 {
	t.Helper()
	var off int64
	ctControl(t, c, func(fd int) {
		v, err := unix.Seek(fd, 0, io.SeekCurrent)
		require.NoError(t, err)
		off = v
	})
	return off
}

func ctFstat(t *testing.T, c syscall.Conn) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	ctControl(t, c, func(fd int) { require.NoError(t, unix.Fstat(fd, &st)) })
	return st
}

func ctFstatfs(t *testing.T, c syscall.Conn) unix.Statfs_t {
	t.Helper()
	var st unix.Statfs_t
	ctControl(t, c, func(fd int) { require.NoError(t, unix.Fstatfs(fd, &st)) })
	return st
}

// ctDiskDir returns a directory on a disk file system (not tmpfs).
func ctDiskDir(t *testing.T) string {
	t.Helper()
	for _, d := range []string{t.TempDir(), "."} {
		var st unix.Statfs_t
		if unix.Statfs(d, &st) == nil && uint32(st.Type) != unix.TMPFS_MAGIC && uint32(st.Type) != unix.HUGETLBFS_MAGIC {
			if d == "." {
				dd, err := os.MkdirTemp(".", "contract-disk-")
				require.NoError(t, err)
				t.Cleanup(func() { _ = os.RemoveAll(dd) })
				return dd
			}
			return d
		}
	}
	t.Skip("no disk file system to make a disk file on")
	return ""
}

// ---- Create ----

func TestContract_CreateCloexecAllowSealing(t *testing.T) {
	f := ctCreate(t, "contract-create")
	require.Equal(t, "contract-create", f.Name())
	require.NotZero(t, ctGetfd(t, f)&unix.FD_CLOEXEC, "Create must use MFD_CLOEXEC")
	st := ctFstatfs(t, f)
	require.EqualValues(t, unix.TMPFS_MAGIC, st.Type)
	fst := ctFstat(t, f)
	require.True(t, fst.Mode&unix.S_IFMT == unix.S_IFREG)

	// MFD_ALLOW_SEALING: seals can be added (F_SEAL_SEAL not set at birth).
	s, err := f.Seals()
	require.NoError(t, err)
	require.False(t, s.Has(memfd.SealSeal), "MFD_ALLOW_SEALING: got %v", s)
	require.NoError(t, f.AddSeals(memfd.SealShrink))
	s, err = f.Seals()
	require.NoError(t, err)
	require.True(t, s.Has(memfd.SealShrink))

	// New memfd is empty and read-write.
	size, err := f.Size()
	require.NoError(t, err)
	require.Zero(t, size)
	require.Equal(t, unix.O_RDWR, ctGetfl(t, f)&unix.O_ACCMODE)
}

func ctKernelHasNoexecSeal() bool {
	fd, err := unix.MemfdCreate("probe", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_NOEXEC_SEAL)
	if err != nil {
		return false
	}
	_ = unix.Close(fd)
	return true
}

func TestContract_CreateNoexecSealByDefault(t *testing.T) {
	if !ctKernelHasNoexecSeal() {
		t.Skip("kernel has no MFD_NOEXEC_SEAL")
	}
	f := ctCreate(t, "contract-noexec")
	s, err := f.Seals()
	require.NoError(t, err)
	require.True(t, s.Has(memfd.SealExec), "MFD_NOEXEC_SEAL by default: seals %v", s)
	st := ctFstat(t, f)
	require.Zero(t, st.Mode&0o111, "no-exec memfd mode %o", st.Mode)
	require.False(t, s.Has(memfd.SealSeal), "sealing must stay allowed: %v", s)
}

func TestContract_WithExec(t *testing.T) {
	f, err := memfd.Create("contract-exec", memfd.WithExec())
	if errors.Is(err, unix.EACCES) {
		t.Skip("vm.memfd_noexec forbids MFD_EXEC here")
	}
	require.NoError(t, err)
	defer f.Close()
	s, err := f.Seals()
	require.NoError(t, err)
	require.False(t, s.Has(memfd.SealExec), "WithExec: no SealExec, got %v", s)
	require.NotZero(t, ctFstat(t, f).Mode&0o111, "WithExec keeps exec bits")
	require.NotZero(t, ctGetfd(t, f)&unix.FD_CLOEXEC)
	require.NoError(t, f.AddSeals(memfd.SealShrink), "WithExec must keep MFD_ALLOW_SEALING")
}

const ctNoexecChildEnv = "SEALBUF_CONTRACT_NOEXEC2_CHILD"

// TestContract_WithExecNoexec2 runs Create(WithExec()) in a child in its own
// pid namespace with vm.memfd_noexec=2: the error must match unix.EACCES.
func TestContract_WithExecNoexec2(t *testing.T) {
	if os.Getenv(ctNoexecChildEnv) != "" {
		// child: we are pid 1 of a fresh pid namespace.
		if err := os.WriteFile("/proc/sys/vm/memfd_noexec", []byte("2\n"), 0); err != nil {
			fmt.Println("SKIP: " + err.Error())
			return
		}
		f, err := memfd.Create("contract-exec-denied", memfd.WithExec())
		if f != nil {
			_ = f.Close()
		}
		if !errors.Is(err, unix.EACCES) {
			t.Fatalf("WithExec with vm.memfd_noexec=2: err = %v, want a match for unix.EACCES", err)
		}
		require.Nil(t, f)
		fmt.Println("CHILD-OK")
		return
	}
	if _, err := os.Stat("/proc/sys/vm/memfd_noexec"); err != nil {
		t.Skip("no vm.memfd_noexec on this kernel")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestContract_WithExecNoexec2$", "-test.count=1")
	cmd.Env = append(os.Environ(), ctNoexecChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	out, err := cmd.CombinedOutput()
	if err != nil && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL)) {
		t.Skipf("cannot make a pid namespace: %v", err)
	}
	if strings.Contains(string(out), "SKIP: ") {
		t.Skipf("child could not set vm.memfd_noexec: %s", out)
	}
	require.NoError(t, err, "child output:\n%s", out)
	require.Contains(t, string(out), "CHILD-OK", "child output:\n%s", out)
}

func ctHugeOK(t *testing.T, f *memfd.File, err error) {
	t.Helper()
	if err != nil {
		require.Nil(t, f)
		return
	}
	require.NotNil(t, f)
	defer f.Close()
	st := ctFstatfs(t, f)
	require.Equal(t, uint32(unix.HUGETLBFS_MAGIC), uint32(st.Type), "WithHugeTLB must return a hugetlbfs memfd or an error, never a silent fallback")
	require.NotZero(t, ctGetfd(t, f)&unix.FD_CLOEXEC)
}

func TestContract_WithHugeTLB(t *testing.T) {
	for _, ps := range []int64{0, 2 << 20, 1 << 30} {
		t.Run(fmt.Sprint(ps), func(t *testing.T) {
			f, err := memfd.Create("contract-huge", memfd.WithHugeTLB(ps))
			ctHugeOK(t, f, err)
		})
	}
	// A size that is no huge page size must fail, not fall back.
	for _, ps := range []int64{4096, 12345, 3 << 20, -1} {
		t.Run(fmt.Sprint("bad", ps), func(t *testing.T) {
			f, err := memfd.Create("contract-huge-bad", memfd.WithHugeTLB(ps))
			if f != nil {
				_ = f.Close()
			}
			require.Error(t, err)
			require.Nil(t, f)
		})
	}
}

// ---- FromFile ----

func TestContract_FromFileAdoptsMemfd(t *testing.T) {
	raw := ctRawMemfd(t, "peer-name", 100, 0)
	f, err := memfd.FromFile(raw)
	require.NoError(t, err)
	require.NotNil(t, f)
	require.Equal(t, "peer-name", f.Name(), "Name of an adopted memfd is the kernel's name")
	size, err := f.Size()
	require.NoError(t, err)
	require.EqualValues(t, 100, size)
	require.NoError(t, f.Close())
	// It owned raw: raw is closed now.
	_, err = raw.Stat()
	require.ErrorIs(t, err, os.ErrClosed, "on success FromFile owns f")
	require.Equal(t, "peer-name", f.Name(), "Name never fails, also after Close")
}

func TestContract_FromFileAdoptsReadOnlyMemfd(t *testing.T) {
	raw := ctRawMemfd(t, "peer-ro", 10, 0)
	var ro *os.File
	ctControl(t, raw, func(fd int) {
		var err error
		ro, err = os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), os.O_RDONLY, 0)
		require.NoError(t, err)
	})
	f, err := memfd.FromFile(ro)
	require.NoError(t, err)
	defer f.Close()
	n, err := f.ReadAt(make([]byte, 10), 0)
	require.NoError(t, err)
	require.Equal(t, 10, n)
}

type ctRefusal struct {
	name string
	make func(t *testing.T) (f *os.File, check func(t *testing.T))
}

func ctRefusals() []ctRefusal {
	return []ctRefusal{
		{"pipe", func(t *testing.T) (*os.File, func(t *testing.T)) {
			r, w, err := os.Pipe()
			require.NoError(t, err)
			t.Cleanup(func() { _ = r.Close(); _ = w.Close() })
			_, err = w.Write([]byte("abc"))
			require.NoError(t, err)
			fl := ctGetfl(t, r)
			return r, func(t *testing.T) {
				require.Equal(t, fl, ctGetfl(t, r), "status flags changed")
				buf := make([]byte, 3)
				_, err := io.ReadFull(r, buf)
				require.NoError(t, err)
				require.Equal(t, "abc", string(buf), "pipe was read")
			}
		}},
		{"socket", func(t *testing.T) (*os.File, func(t *testing.T)) {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			require.NoError(t, err)
			a := os.NewFile(uintptr(fds[0]), "sock-a")
			b := os.NewFile(uintptr(fds[1]), "sock-b")
			t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
			_, err = b.Write([]byte("xyz"))
			require.NoError(t, err)
			fl := ctGetfl(t, a)
			return a, func(t *testing.T) {
				require.Equal(t, fl, ctGetfl(t, a), "status flags changed")
				buf := make([]byte, 3)
				_, err := io.ReadFull(a, buf)
				require.NoError(t, err)
				require.Equal(t, "xyz", string(buf), "socket was read")
			}
		}},
		{"devzero", func(t *testing.T) (*os.File, func(t *testing.T)) {
			z, err := os.Open("/dev/zero")
			require.NoError(t, err)
			t.Cleanup(func() { _ = z.Close() })
			fl := ctGetfl(t, z)
			return z, func(t *testing.T) {
				require.Equal(t, fl, ctGetfl(t, z))
				_, err := z.Read(make([]byte, 1))
				require.NoError(t, err)
			}
		}},
		{"directory", func(t *testing.T) (*os.File, func(t *testing.T)) {
			d, err := os.Open(t.TempDir())
			require.NoError(t, err)
			t.Cleanup(func() { _ = d.Close() })
			return d, func(t *testing.T) {
				_, err := d.Stat()
				require.NoError(t, err)
				_, err = d.Readdirnames(-1)
				require.NoError(t, err)
			}
		}},
		{"diskfile", func(t *testing.T) (*os.File, func(t *testing.T)) {
			p := filepath.Join(ctDiskDir(t), "disk")
			require.NoError(t, os.WriteFile(p, []byte("0123456789"), 0o600))
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			require.NoError(t, err)
			t.Cleanup(func() { _ = f.Close() })
			_, err = f.Seek(3, io.SeekStart)
			require.NoError(t, err)
			fl := ctGetfl(t, f)
			return f, func(t *testing.T) {
				require.Equal(t, fl, ctGetfl(t, f))
				require.EqualValues(t, 3, ctSeek(t, f), "file offset moved")
				buf := make([]byte, 2)
				_, err := io.ReadFull(f, buf)
				require.NoError(t, err)
				require.Equal(t, "34", string(buf))
				fi, err := f.Stat()
				require.NoError(t, err)
				require.EqualValues(t, 10, fi.Size())
			}
		}},
		{"opath-memfd", func(t *testing.T) (*os.File, func(t *testing.T)) {
			raw := ctRawMemfd(t, "opath", 10, 0)
			var p *os.File
			ctControl(t, raw, func(fd int) {
				pfd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_PATH|unix.O_CLOEXEC, 0)
				require.NoError(t, err)
				p = os.NewFile(uintptr(pfd), "opath")
			})
			t.Cleanup(func() { _ = p.Close() })
			return p, func(t *testing.T) {
				st := ctFstat(t, p)
				require.EqualValues(t, 10, st.Size)
			}
		}},
	}
}

func TestContract_FromFileRefusesNonMemfd(t *testing.T) {
	for _, c := range ctRefusals() {
		t.Run(c.name, func(t *testing.T) {
			f, check := c.make(t)
			m, err := memfd.FromFile(f)
			if m != nil {
				_ = m.Close()
			}
			require.Error(t, err)
			require.ErrorIs(t, err, memfd.ErrNotMemfd)
			require.Nil(t, m)
			check(t) // open, unread and unchanged
			require.NoError(t, f.Close(), "f must still be open and the caller's")
		})
	}
}

// ---- methods ----

func TestContract_NameAfterClose(t *testing.T) {
	f, err := memfd.Create("contract-name")
	require.NoError(t, err)
	require.Equal(t, "contract-name", f.Name())
	require.NoError(t, f.Close())
	require.Equal(t, "contract-name", f.Name())
}

func TestContract_SizeTruncate(t *testing.T) {
	f := ctCreate(t, "contract-size")
	require.NoError(t, f.Truncate(12345))
	size, err := f.Size()
	require.NoError(t, err)
	require.EqualValues(t, 12345, size)
	require.NoError(t, f.Truncate(7))
	size, err = f.Size()
	require.NoError(t, err)
	require.EqualValues(t, 7, size)
	require.Error(t, f.Truncate(-1))
}

func TestContract_ReadAtEOF(t *testing.T) {
	f := ctCreate(t, "contract-readat")
	n, err := f.WriteAt([]byte("hello"), 0)
	require.NoError(t, err)
	require.Equal(t, 5, n)

	p := make([]byte, 3)
	n, err = f.ReadAt(p, 0)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.Equal(t, "hel", string(p))

	n, err = f.ReadAt(make([]byte, 5), 0)
	require.NoError(t, err, "a read ending exactly at the end is not EOF (os.File)")
	require.Equal(t, 5, n)

	p = make([]byte, 10)
	n, err = f.ReadAt(p, 3)
	require.ErrorIs(t, err, io.EOF)
	require.Equal(t, 2, n)
	require.Equal(t, "lo", string(p[:n]))

	n, err = f.ReadAt(make([]byte, 4), 5)
	require.Equal(t, 0, n)
	require.ErrorIs(t, err, io.EOF)
	require.Equal(t, io.EOF, err, "off >= size gives io.EOF as os.File does")

	n, err = f.ReadAt(make([]byte, 4), 1<<40)
	require.Equal(t, 0, n)
	require.ErrorIs(t, err, io.EOF)

	n, err = f.ReadAt(make([]byte, 4), -1)
	require.Equal(t, 0, n)
	require.Error(t, err)
	require.NotErrorIs(t, err, io.EOF)
}

func TestContract_ReadAtZeroSize(t *testing.T) {
	f := ctCreate(t, "contract-zero")
	n, err := f.ReadAt(make([]byte, 1), 0)
	require.Equal(t, 0, n)
	require.Equal(t, io.EOF, err)
}

func TestContract_WriteAtOSFileSemantics(t *testing.T) {
	f := ctCreate(t, "contract-writeat")
	// os.File's WriteAt past the end extends the file (zero gap).
	n, err := f.WriteAt([]byte("xy"), 10)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	size, err := f.Size()
	require.NoError(t, err)
	require.EqualValues(t, 12, size)
	p := make([]byte, 12)
	n, err = f.ReadAt(p, 0)
	require.NoError(t, err)
	require.Equal(t, 12, n)
	require.Equal(t, append(make([]byte, 10), 'x', 'y'), p)

	n, err = f.WriteAt([]byte("z"), -1)
	require.Error(t, err)
	require.Equal(t, 0, n)
}

// Positional only: the shared file offset and status flags never move.
func TestContract_PositionalOnly(t *testing.T) {
	raw := ctRawMemfd(t, "contract-offset", 0, 0)
	// A second descriptor for the same open file description, to watch its offset.
	var dupf *os.File
	ctControl(t, raw, func(fd int) {
		d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		require.NoError(t, err)
		dupf = os.NewFile(uintptr(d), "dup")
	})
	defer dupf.Close()
	ctControl(t, dupf, func(fd int) {
		_, err := unix.Pwrite(fd, []byte("0123456789"), 0)
		require.NoError(t, err)
		_, err = unix.Seek(fd, 4, io.SeekStart)
		require.NoError(t, err)
	})
	fl := ctGetfl(t, dupf)

	f, err := memfd.FromFile(raw)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.ReadAt(make([]byte, 3), 1)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte("ab"), 2)
	require.NoError(t, err)
	_, err = f.Size()
	require.NoError(t, err)
	_, err = f.Seals()
	require.NoError(t, err)
	require.NoError(t, f.Truncate(20))
	require.NoError(t, f.AddSeals(memfd.SealGrow))
	r, err := f.ReopenReadOnly()
	require.NoError(t, err)
	require.NoError(t, r.Close())
	require.EqualValues(t, 4, ctSeek(t, dupf), "the shared file offset moved")
	require.Equal(t, fl, ctGetfl(t, dupf), "status flags changed")
}

func TestContract_SyscallConn(t *testing.T) {
	f := ctCreate(t, "contract-rawconn")
	rc, err := f.SyscallConn()
	require.NoError(t, err)
	var st unix.Stat_t
	require.NoError(t, rc.Control(func(fd uintptr) { require.NoError(t, unix.Fstat(int(fd), &st)) }))
	require.True(t, st.Mode&unix.S_IFMT == unix.S_IFREG)
}

func TestContract_ReopenReadOnly(t *testing.T) {
	f, err := memfd.Create("contract-reopen")
	require.NoError(t, err)
	_, err = f.WriteAt([]byte("data"), 0)
	require.NoError(t, err)

	r, err := f.ReopenReadOnly()
	require.NoError(t, err)
	require.NotNil(t, r)
	defer r.Close()
	require.Equal(t, unix.O_RDONLY, ctGetfl(t, r)&unix.O_ACCMODE, "ReopenReadOnly is O_RDONLY")
	require.NotZero(t, ctGetfd(t, r)&unix.FD_CLOEXEC, "ReopenReadOnly is close-on-exec")
	require.Equal(t, ctFstat(t, f).Ino, ctFstat(t, r).Ino, "same memfd")

	// A new open file description: different offsets.
	ctControl(t, f, func(fd int) {
		_, err := unix.Seek(fd, 3, io.SeekStart)
		require.NoError(t, err)
	})
	require.EqualValues(t, 0, ctSeek(t, r), "ReopenReadOnly must be a new open file description")

	_, err = r.WriteAt([]byte("x"), 0)
	require.Error(t, err, "read-only")

	// Independent of the original's lifetime.
	require.NoError(t, f.Close())
	p := make([]byte, 4)
	n, err := r.ReadAt(p, 0)
	require.NoError(t, err)
	require.Equal(t, 4, n)
	require.Equal(t, "data", string(p))
	size, err := r.Size()
	require.NoError(t, err)
	require.EqualValues(t, 4, size)

	// And the other way round.
	g := ctCreate(t, "contract-reopen2")
	r2, err := g.ReopenReadOnly()
	require.NoError(t, err)
	require.NoError(t, r2.Close())
	_, err = g.WriteAt([]byte("ok"), 0)
	require.NoError(t, err)
}

func TestContract_SealErrorsAreKernelErrors(t *testing.T) {
	f := ctCreate(t, "contract-seals")
	require.NoError(t, f.Truncate(10))
	require.NoError(t, f.AddSeals(memfd.SealShrink))
	require.ErrorIs(t, f.Truncate(5), unix.EPERM)
	require.NoError(t, f.AddSeals(memfd.SealGrow))
	require.ErrorIs(t, f.Truncate(50), unix.EPERM)
	_, err := f.WriteAt([]byte("x"), 20)
	require.ErrorIs(t, err, unix.EPERM, "growing write under SealGrow")
	require.NoError(t, f.AddSeals(memfd.SealWrite))
	n, err := f.WriteAt([]byte("x"), 0)
	require.ErrorIs(t, err, unix.EPERM)
	require.Equal(t, 0, n)
	require.NoError(t, f.AddSeals(memfd.SealSeal))
	require.ErrorIs(t, f.AddSeals(memfd.SealFutureWrite), unix.EPERM, "after SealSeal")
	s, err := f.Seals()
	require.NoError(t, err)
	require.True(t, s.Has(memfd.SealSeal|memfd.SealShrink|memfd.SealGrow|memfd.SealWrite), "%v", s)
}

func TestContract_AddSealsEBUSY(t *testing.T) {
	f := ctCreate(t, "contract-ebusy")
	require.NoError(t, f.Truncate(4096))
	var mem []byte
	ctControl(t, f, func(fd int) {
		var err error
		mem, err = unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		require.NoError(t, err)
	})
	err := f.AddSeals(memfd.SealWrite)
	require.ErrorIs(t, err, unix.EBUSY)
	require.NoError(t, unix.Munmap(mem))
	require.NoError(t, f.AddSeals(memfd.SealWrite))
}

func TestContract_ConcurrentUse(t *testing.T) {
	f, err := memfd.Create("contract-concurrent")
	require.NoError(t, err)
	require.NoError(t, f.Truncate(1<<16))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, 64)
			for j := range 200 {
				off := int64((i*200 + j) * 16 % (1 << 15))
				_, _ = f.WriteAt(p, off)
				_, _ = f.ReadAt(p, off)
				_, _ = f.Size()
				_, _ = f.Seals()
				_ = f.Name()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = f.Close()
	}()
	wg.Wait()
	require.ErrorIs(t, f.Close(), os.ErrClosed)
}

// ---- after Close ----

func TestContract_FileAfterClose(t *testing.T) {
	f, err := memfd.Create("contract-closed")
	require.NoError(t, err)
	require.NoError(t, f.Truncate(10))
	require.NoError(t, f.Close())

	_, err = f.Size()
	require.ErrorIs(t, err, os.ErrClosed, "Size")
	require.ErrorIs(t, f.Truncate(1), os.ErrClosed, "Truncate")
	_, err = f.ReadAt(make([]byte, 1), 0)
	require.ErrorIs(t, err, os.ErrClosed, "ReadAt")
	_, err = f.WriteAt([]byte("x"), 0)
	require.ErrorIs(t, err, os.ErrClosed, "WriteAt")
	_, err = f.Seals()
	require.ErrorIs(t, err, os.ErrClosed, "Seals")
	require.ErrorIs(t, f.AddSeals(memfd.SealShrink), os.ErrClosed, "AddSeals")
	r, err := f.ReopenReadOnly()
	require.ErrorIs(t, err, os.ErrClosed, "ReopenReadOnly")
	require.Nil(t, r)
	require.ErrorIs(t, f.Close(), os.ErrClosed, "second Close")
	require.Equal(t, "contract-closed", f.Name())
}

func TestContract_FileSyscallConnAfterClose(t *testing.T) {
	f, err := memfd.Create("contract-closed-rc")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	rc, err := f.SyscallConn()
	if err == nil {
		// At the very least, borrowing must fail with os.ErrClosed.
		called := false
		cerr := rc.Control(func(uintptr) { called = true })
		require.False(t, called)
		require.ErrorIs(t, cerr, os.ErrClosed, "RawConn.Control after Close")
	}
	require.ErrorIs(t, err, os.ErrClosed, "every method returns an error wrapping os.ErrClosed after Close: SyscallConn")
}

func TestContract_ErrClosedNotUseOfClosedFile(t *testing.T) {
	f, err := memfd.Create("contract-closed-msg")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	_, err = f.ReadAt(make([]byte, 1), 0)
	require.ErrorIs(t, err, os.ErrClosed)
	_, err = f.WriteAt([]byte{1}, 0)
	require.ErrorIs(t, err, os.ErrClosed)
}

// ---- Seals ----

func TestContract_SealsString(t *testing.T) {
	cases := map[memfd.Seals]string{
		0:                     "none",
		memfd.SealSeal:        "seal",
		memfd.SealShrink:      "shrink",
		memfd.SealGrow:        "grow",
		memfd.SealWrite:       "write",
		memfd.SealFutureWrite: "future_write",
		memfd.SealExec:        "exec",
		memfd.SealSeal | memfd.SealShrink | memfd.SealGrow | memfd.SealWrite | memfd.SealFutureWrite | memfd.SealExec: "seal|shrink|grow|write|future_write|exec",
		memfd.SealShrink | memfd.SealGrow | memfd.SealWrite:                                                           "shrink|grow|write",
		memfd.SealExec | memfd.SealSeal:                                                                               "seal|exec",
		memfd.SealFutureWrite | memfd.SealShrink:                                                                      "shrink|future_write",
	}
	for s, want := range cases {
		require.Equal(t, want, s.String(), "%#x", uint32(s))
		require.Equal(t, want, fmt.Sprint(s))
	}
	// Kernel bit values.
	require.EqualValues(t, unix.F_SEAL_SEAL, memfd.SealSeal)
	require.EqualValues(t, unix.F_SEAL_SHRINK, memfd.SealShrink)
	require.EqualValues(t, unix.F_SEAL_GROW, memfd.SealGrow)
	require.EqualValues(t, unix.F_SEAL_WRITE, memfd.SealWrite)
	require.EqualValues(t, unix.F_SEAL_FUTURE_WRITE, memfd.SealFutureWrite)
	require.EqualValues(t, 0x20, memfd.SealExec)
}

func TestContract_ParseSealsRoundTrip(t *testing.T) {
	for s := memfd.Seals(0); s < 64; s++ {
		got, err := memfd.ParseSeals(s.String())
		require.NoError(t, err, "%q", s.String())
		require.Equal(t, s, got, "%q", s.String())
	}
}

func TestContract_ParseSealsAnyOrder(t *testing.T) {
	for in, want := range map[string]memfd.Seals{
		"exec|future_write|write|grow|shrink|seal": 63,
		"write|shrink|grow":                        memfd.SealShrink | memfd.SealGrow | memfd.SealWrite,
		"grow|seal":                                memfd.SealGrow | memfd.SealSeal,
		"none":                                     0,
		"exec":                                     memfd.SealExec,
	} {
		got, err := memfd.ParseSeals(in)
		require.NoError(t, err, "%q", in)
		require.Equal(t, want, got, "%q", in)
	}
}

func TestContract_ParseSealsFailures(t *testing.T) {
	for _, in := range []string{
		"",
		"bogus",
		"seal|bogus",
		"seal||grow",
		"|seal",
		"seal|",
		"|",
		"none|seal",
		"seal|none",
		"none|none",
		"SEAL",
		"future-write",
	} {
		_, err := memfd.ParseSeals(in)
		require.Error(t, err, "ParseSeals(%q) must fail", in)
	}
}

func TestContract_SealsHas(t *testing.T) {
	all := memfd.Seals(63)
	for s := memfd.Seals(0); s < 64; s++ {
		require.True(t, s.Has(0), "Has(0) is true for %v", s)
		require.True(t, all.Has(s))
		require.True(t, s.Has(s))
		for x := memfd.Seals(0); x < 64; x++ {
			require.Equal(t, s&x == x, s.Has(x), "%v.Has(%v)", s, x)
		}
	}
}

func TestContract_ErrnoReachable(t *testing.T) {
	f := ctCreate(t, "contract-errno")
	require.NoError(t, f.AddSeals(memfd.SealSeal))
	err := f.AddSeals(memfd.SealShrink)
	require.ErrorIs(t, err, unix.EPERM)
	require.ErrorIs(t, err, syscall.EPERM)
}

// Receiving a memfd through a socket and adopting it is the normal use of
// FromFile.
func TestContract_FromFileAfterSCMRights(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	fa := os.NewFile(uintptr(fds[0]), "a")
	fb := os.NewFile(uintptr(fds[1]), "b")
	ca, err := net.FileConn(fa)
	require.NoError(t, err)
	cb, err := net.FileConn(fb)
	require.NoError(t, err)
	_ = fa.Close()
	_ = fb.Close()
	defer ca.Close()
	defer cb.Close()
	raw := ctRawMemfd(t, "sent", 3, unix.F_SEAL_SHRINK)
	var rights []byte
	ctControl(t, raw, func(fd int) { rights = unix.UnixRights(fd) })
	_, _, err = ca.(*net.UnixConn).WriteMsgUnix([]byte("h"), rights, nil)
	require.NoError(t, err)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := cb.(*net.UnixConn).ReadMsgUnix(make([]byte, 8), oob)
	require.NoError(t, err)
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	require.NoError(t, err)
	got, err := unix.ParseUnixRights(&msgs[0])
	require.NoError(t, err)
	require.Len(t, got, 1)
	rf := os.NewFile(uintptr(got[0]), "recv")
	m, err := memfd.FromFile(rf)
	require.NoError(t, err)
	defer m.Close()
	require.Equal(t, "sent", m.Name())
	s, err := m.Seals()
	require.NoError(t, err)
	require.True(t, s.Has(memfd.SealShrink))
}

// A RawConn taken before Close: borrowing after Close fails with an error
// wrapping os.ErrClosed (Go's "use of closed file", translated).
func TestContract_RawConnAfterClose(t *testing.T) {
	f, err := memfd.Create("contract-rc-before")
	require.NoError(t, err)
	rc, err := f.SyscallConn()
	require.NoError(t, err)
	require.NoError(t, f.Close())
	called := false
	err = rc.Control(func(uintptr) { called = true })
	require.False(t, called)
	require.ErrorIs(t, err, os.ErrClosed)
}
