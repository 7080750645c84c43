//go:build linux

package memfd_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/memfd"
)

func TestCreateIsCloexecSealableNoexec(t *testing.T) {
	f := create(t, "plain")
	require.Equal(t, "plain", f.Name())

	fdfl, fl := fdFlags(t, f)
	require.NotZero(t, fdfl&unix.FD_CLOEXEC, "Create must pass MFD_CLOEXEC")
	require.Equal(t, unix.O_RDWR, fl&unix.O_ACCMODE)
	require.Zero(t, fl&unix.O_APPEND)

	sfs := fstatfs(t, f)
	require.Equal(t, int64(unix.TMPFS_MAGIC), int64(sfs.Type))

	// The kernel here (6.18) has MFD_NOEXEC_SEAL: it clears the exec bits and
	// sets F_SEAL_EXEC. MFD_ALLOW_SEALING means no F_SEAL_SEAL.
	st := fstat(t, f)
	require.Equal(t, uint32(unix.S_IFREG), st.Mode&unix.S_IFMT)
	require.Zero(t, st.Mode&0o111, "default memfd must be no-exec, mode %#o", st.Mode&0o7777)
	seals, err := f.Seals()
	require.NoError(t, err)
	require.Equal(t, memfd.SealExec, seals, "seals after Create: %v", seals)

	size, err := f.Size()
	require.NoError(t, err)
	require.Zero(t, size)

	// Sealing is allowed: it would fail with EPERM without MFD_ALLOW_SEALING.
	require.NoError(t, f.AddSeals(memfd.SealGrow))
}

func TestCreateWithExec(t *testing.T) {
	f := create(t, "exec", memfd.WithExec())
	st := fstat(t, f)
	require.Equal(t, uint32(0o777), st.Mode&0o777, "WithExec keeps the exec bits, mode %#o", st.Mode&0o7777)
	seals, err := f.Seals()
	require.NoError(t, err)
	require.False(t, seals.Has(memfd.SealExec), "WithExec: no SealExec, got %v", seals)
	require.Equal(t, memfd.Seals(0), seals)
	fdfl, _ := fdFlags(t, f)
	require.NotZero(t, fdfl&unix.FD_CLOEXEC)
	// Still sealable.
	require.NoError(t, f.AddSeals(memfd.SealShrink))
}

func TestCreateNames(t *testing.T) {
	// memfd_create(2): at most 249 bytes (NAME_MAX minus "memfd:").
	long := strings.Repeat("n", 249)
	f := create(t, long)
	require.Equal(t, long, f.Name())

	for _, name := range []string{strings.Repeat("n", 250), strings.Repeat("x", 4096), "nul\x00inside"} {
		g, err := memfd.Create(name)
		require.Error(t, err, "name of %d bytes", len(name))
		require.Nil(t, g)
		require.False(t, errors.Is(err, memfd.ErrNotMemfd))
	}

	// Names need not be unique, and the empty name is valid.
	a := create(t, "same")
	b := create(t, "same")
	require.Equal(t, a.Name(), b.Name())
	e := create(t, "")
	require.Equal(t, "", e.Name())
}

func TestCreateNameSurvivesClose(t *testing.T) {
	f, err := memfd.Create("keeps-its-name")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.Equal(t, "keeps-its-name", f.Name())
}

func TestCreateFailureStaysRetryable(t *testing.T) {
	// A bad name must not poison the MFD_NOEXEC_SEAL probe: the next Create
	// is still no-exec.
	_, err := memfd.Create(strings.Repeat("n", 300))
	require.Error(t, err)
	_, err = memfd.Create("x", memfd.WithHugeTLB(3))
	require.Error(t, err)
	f := create(t, "after-failures")
	seals, err := f.Seals()
	require.NoError(t, err)
	require.True(t, seals.Has(memfd.SealExec), "seals %v", seals)
}

// ---- vm.memfd_noexec=2 ----

const noexecChildEnv = "SEALBUF_MEMFD_TEST_NOEXEC_CHILD"

// Exit codes of the re-executed child.
const (
	childOK   = 0
	childFail = 1
	childSkip = 3
)

// TestWithExecForbiddenByNoexecSysctl re-executes the test binary as pid 1 of
// a new pid namespace, where vm.memfd_noexec can be raised to 2 without
// touching the host's value (the sysctl is per pid namespace since 6.3).
func TestWithExecForbiddenByNoexecSysctl(t *testing.T) {
	const path = "/proc/sys/vm/memfd_noexec"
	if _, err := os.Stat(path); err != nil {
		t.Skipf("kernel has no %s: %v", path, err)
	}
	before := readSysctl(t, path)

	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^$")
	// GORACE: skip the race runtime's one-second sleep at exit.
	cmd.Env = append(os.Environ(), noexecChildEnv+"=1", "GORACE=atexit_sleep_ms=0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() == childSkip:
		t.Skipf("cannot set vm.memfd_noexec=2 in a child pid namespace: %s", out)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSPC):
		t.Skipf("cannot start a process in a new pid namespace: %v", err)
	default:
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child: %s", out)
	require.Equal(t, before, readSysctl(t, path), "the host's vm.memfd_noexec must be untouched")
}

// noexecChild runs in the re-executed binary, as pid 1 of a new pid namespace.
func noexecChild() int {
	if os.Getpid() != 1 {
		fmt.Printf("not in a new pid namespace (pid %d)\n", os.Getpid())
		return childFail
	}
	if err := os.WriteFile("/proc/sys/vm/memfd_noexec", []byte("2"), 0); err != nil {
		fmt.Printf("write vm.memfd_noexec=2: %v\n", err)
		return childSkip
	}
	if v, _ := os.ReadFile("/proc/sys/vm/memfd_noexec"); strings.TrimSpace(string(v)) != "2" {
		fmt.Printf("vm.memfd_noexec reads %q after writing 2\n", v)
		return childSkip
	}

	f, err := memfd.Create("exec", memfd.WithExec())
	if f != nil {
		f.Close()
		fmt.Println("Create(WithExec) under vm.memfd_noexec=2 returned a File")
		return childFail
	}
	if !errors.Is(err, unix.EACCES) {
		fmt.Printf("Create(WithExec) under vm.memfd_noexec=2: error %v does not match unix.EACCES\n", err)
		return childFail
	}

	refused := err

	// The default (no-exec) Create still works.
	g, err := memfd.Create("noexec")
	if err != nil {
		fmt.Printf("default Create under vm.memfd_noexec=2: %v\n", err)
		return childFail
	}
	defer g.Close()
	seals, err := g.Seals()
	if err != nil || !seals.Has(memfd.SealExec) {
		fmt.Printf("default Create under vm.memfd_noexec=2: seals %v, %v\n", seals, err)
		return childFail
	}
	fmt.Printf("WithExec refused as expected: %v\n", refused)
	return childOK
}

// ---- huge pages ----

const mib = 1 << 20

func TestWithHugeTLBBadPageSize(t *testing.T) {
	for _, size := range []int64{3, -1, -2 << 20, 3 << 20, 1<<21 + 1} {
		f, err := memfd.Create("bad-huge", memfd.WithHugeTLB(size))
		if f != nil {
			f.Close()
		}
		require.Error(t, err, "WithHugeTLB(%d)", size)
		require.Nil(t, f, "WithHugeTLB(%d)", size)
	}
}

func TestWithHugeTLBUnsupportedPowerOfTwo(t *testing.T) {
	// Powers of two that are no huge page size on this machine must fail,
	// never fall back to another page size.
	for _, size := range []int64{1 << 12, 1 << 16, 1 << 20} {
		if _, err := os.Stat(fmt.Sprintf("/sys/kernel/mm/hugepages/hugepages-%dkB", size>>10)); err == nil {
			continue
		}
		f, err := memfd.Create("odd-huge", memfd.WithHugeTLB(size))
		if f != nil {
			t.Logf("got page size %d", fstatfs(t, f).Bsize)
			f.Close()
		}
		require.Error(t, err, "WithHugeTLB(%d)", size)
	}
}

// WithHugeTLB(1) is 2^0: encoded as a shift of 0 it means "the default huge
// page size", i.e. a silent fallback to 2 MiB pages for a request of 1-byte
// pages. Only 0 means the default.
func TestWithHugeTLBOneIsNotTheDefault(t *testing.T) {
	requireHugeTLBFS(t)
	f, err := memfd.Create("one-byte-pages", memfd.WithHugeTLB(1))
	if f != nil {
		t.Logf("WithHugeTLB(1) gave a memfd with %d-byte pages", fstatfs(t, f).Bsize)
		f.Close()
	}
	require.Error(t, err, "WithHugeTLB(1) must fail: 1 byte is not a huge page size")
}

func TestWithHugeTLBPageSizes(t *testing.T) {
	requireHugeTLBFS(t)
	def := defaultHugePageSize(t)
	for _, size := range []int64{0, 2 * mib, 1 << 30} {
		want := size
		if size == 0 {
			want = def
		}
		if _, err := os.Stat(fmt.Sprintf("/sys/kernel/mm/hugepages/hugepages-%dkB", want>>10)); err != nil {
			t.Logf("no %d-byte huge pages here", want)
			continue
		}
		// Creating needs no pages from the pool (no reservation until mmap).
		f := create(t, fmt.Sprintf("huge-%d", size), memfd.WithHugeTLB(size))
		sfs := fstatfs(t, f)
		require.Equal(t, int64(unix.HUGETLBFS_MAGIC), int64(sfs.Type), "WithHugeTLB(%d)", size)
		require.Equal(t, want, sfs.Bsize, "WithHugeTLB(%d): page size", size)
		fdfl, _ := fdFlags(t, f)
		require.NotZero(t, fdfl&unix.FD_CLOEXEC)
		_, err := f.Seals()
		require.NoError(t, err)
	}
}

func TestWithHugeTLBReserved(t *testing.T) {
	requireHugeTLBFS(t)
	if defaultHugePageSize(t) != 2*mib {
		t.Skip("default huge page size is not 2 MiB")
	}
	reserveHugePages(t, 4)

	f := create(t, "huge", memfd.WithHugeTLB(0))
	require.Equal(t, "huge", f.Name())
	require.Equal(t, int64(unix.HUGETLBFS_MAGIC), int64(fstatfs(t, f).Type))
	require.NoError(t, f.Truncate(2*mib))
	size, err := f.Size()
	require.NoError(t, err)
	require.Equal(t, int64(2*mib), size)

	// The page really comes from the pool: map it populated and touch it.
	borrow(t, f, func(fd int) {
		mem, err := unix.Mmap(fd, 0, 2*mib, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		require.NoError(t, err)
		mem[0], mem[2*mib-1] = 'h', 't'
		require.NoError(t, unix.Munmap(mem))
	})
	b := make([]byte, 1)
	n, err := f.ReadAt(b, 2*mib-1)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, byte('t'), b[0])

	seals, err := f.Seals()
	require.NoError(t, err)
	require.NoError(t, f.AddSeals(memfd.SealShrink|memfd.SealGrow))
	seals2, err := f.Seals()
	require.NoError(t, err)
	require.Equal(t, seals|memfd.SealShrink|memfd.SealGrow, seals2)

	// Explicit 2 MiB too.
	g := create(t, "huge-2m", memfd.WithHugeTLB(2*mib))
	require.NoError(t, g.Truncate(2*mib))
}

func requireHugeTLBFS(t *testing.T) {
	t.Helper()
	fd, err := unix.MemfdCreate("probe", unix.MFD_CLOEXEC|unix.MFD_HUGETLB)
	if err != nil {
		t.Skipf("kernel cannot make hugetlbfs memfds: %v", err)
	}
	unix.Close(fd)
}

func defaultHugePageSize(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Hugepagesize:"); ok {
			var kb int64
			_, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Skip("no Hugepagesize in /proc/meminfo")
	return 0
}

// reserveHugePages makes sure the default pool has n free pages, raising
// vm.nr_hugepages (as root) and restoring it when the test ends.
func reserveHugePages(t *testing.T, n int) {
	t.Helper()
	const path = "/proc/sys/vm/nr_hugepages"
	old := strings.TrimSpace(readSysctl(t, path))
	if free := hugePagesFree(t); free >= n {
		return
	}
	var cur int
	_, err := fmt.Sscanf(old, "%d", &cur)
	require.NoError(t, err)
	if err := os.WriteFile(path, []byte(fmt.Sprint(cur+n)), 0); err != nil {
		t.Skipf("no free huge pages and cannot reserve %d (%s): %v", n, path, err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(path, []byte(old), 0); err != nil {
			t.Errorf("restore %s=%s: %v", path, old, err)
		}
	})
	if free := hugePagesFree(t); free < 1 {
		t.Skipf("asked the kernel for %d huge pages, got %d free (memory too fragmented?)", n, free)
	}
}

func hugePagesFree(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "HugePages_Free:"); ok {
			var n int
			_, err := fmt.Sscanf(strings.TrimSpace(rest), "%d", &n)
			require.NoError(t, err)
			return n
		}
	}
	return 0
}
