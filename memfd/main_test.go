//go:build linux

package memfd_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/memfd"
)

func TestMain(m *testing.M) {
	// The vm.memfd_noexec test re-executes this binary inside a fresh pid
	// namespace; in that child run only its checks, never the test suite.
	if os.Getenv(noexecChildEnv) != "" {
		os.Exit(noexecChild())
	}
	goleak.VerifyTestMain(m)
}

// create makes a memfd and closes it when the test ends (a second Close is
// harmless for the test: it only returns an error).
func create(t *testing.T, name string, opts ...memfd.Option) *memfd.File {
	t.Helper()
	f, err := memfd.Create(name, opts...)
	require.NoError(t, err)
	require.NotNil(t, f)
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// borrow runs fn with f's descriptor, the way the package documents:
// SyscallConn().Control.
func borrow(t *testing.T, f *memfd.File, fn func(fd int)) {
	t.Helper()
	rc, err := f.SyscallConn()
	require.NoError(t, err)
	require.NoError(t, rc.Control(func(fd uintptr) { fn(int(fd)) }))
}

// borrowOS is borrow for a plain *os.File.
func borrowOS(t *testing.T, f *os.File, fn func(fd int)) {
	t.Helper()
	rc, err := f.SyscallConn()
	require.NoError(t, err)
	require.NoError(t, rc.Control(func(fd uintptr) { fn(int(fd)) }))
}

func fdFlags(t *testing.T, f *memfd.File) (fdfl, fl int) {
	t.Helper()
	borrow(t, f, func(fd int) {
		var err error
		fdfl, err = unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		require.NoError(t, err)
		fl, err = unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		require.NoError(t, err)
	})
	return fdfl, fl
}

func fstat(t *testing.T, f *memfd.File) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	borrow(t, f, func(fd int) { require.NoError(t, unix.Fstat(fd, &st)) })
	return st
}

func fstatfs(t *testing.T, f *memfd.File) unix.Statfs_t {
	t.Helper()
	var sfs unix.Statfs_t
	borrow(t, f, func(fd int) { require.NoError(t, unix.Fstatfs(fd, &sfs)) })
	return sfs
}

// offset returns the file offset of f's open file description.
func offset(t *testing.T, f *memfd.File) int64 {
	t.Helper()
	var off int64
	borrow(t, f, func(fd int) {
		var err error
		off, err = unix.Seek(fd, 0, unix.SEEK_CUR)
		require.NoError(t, err)
	})
	return off
}

// openFDs counts the entries of /proc/self/fd.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// rawMemfd makes a memfd with unix.MemfdCreate, wrapped in an *os.File the
// test owns until it hands it to FromFile.
func rawMemfd(t *testing.T, name string, flags int) (*os.File, int) {
	t.Helper()
	fd, err := unix.MemfdCreate(name, flags)
	require.NoError(t, err)
	f := os.NewFile(uintptr(fd), "raw-"+name)
	require.NotNil(t, f)
	return f, fd
}

// fdIsOpen reports whether descriptor number fd is open in this process.
func fdIsOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err != syscall.EBADF
}

func readSysctl(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Clean(path))
	require.NoError(t, err)
	return string(b)
}
