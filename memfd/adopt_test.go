//go:build linux

package memfd_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/memfd"
)

// requireRefused checks that FromFile refuses f with ErrNotMemfd and leaves
// it open, with the same status flags and descriptor flags.
func requireRefused(t *testing.T, f *os.File) {
	t.Helper()
	var flBefore, fdflBefore int
	borrowOS(t, f, func(fd int) {
		flBefore, _ = unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		fdflBefore, _ = unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	})
	m, err := memfd.FromFile(f)
	require.Error(t, err)
	require.Nil(t, m)
	require.ErrorIs(t, err, memfd.ErrNotMemfd)
	require.NotEmpty(t, err.Error())
	// Still the caller's, open, unchanged.
	_, err = f.Stat()
	require.NoError(t, err, "the refused *os.File must stay open")
	borrowOS(t, f, func(fd int) {
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		require.NoError(t, err)
		require.Equal(t, flBefore, fl, "status flags changed")
		fdfl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		require.NoError(t, err)
		require.Equal(t, fdflBefore, fdfl, "descriptor flags changed")
	})
}

func TestFromFileRefusesNil(t *testing.T) {
	m, err := memfd.FromFile(nil)
	require.ErrorIs(t, err, memfd.ErrNotMemfd)
	require.Nil(t, m)
}

func TestFromFileRefusesPipe(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	_, err = w.Write([]byte("before"))
	require.NoError(t, err)

	requireRefused(t, r)
	requireRefused(t, w)

	// Both ends still work, nothing was read.
	_, err = w.Write([]byte("|after"))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Equal(t, "before|after", string(b))
}

func TestFromFileRefusesSocket(t *testing.T) {
	for _, typ := range []int{unix.SOCK_STREAM, unix.SOCK_SEQPACKET, unix.SOCK_DGRAM} {
		fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		a := os.NewFile(uintptr(fds[0]), "sock-a")
		b := os.NewFile(uintptr(fds[1]), "sock-b")

		requireRefused(t, a)

		_, err = a.Write([]byte("ping"))
		require.NoError(t, err)
		buf := make([]byte, 8)
		n, err := b.Read(buf)
		require.NoError(t, err)
		require.Equal(t, "ping", string(buf[:n]))
		require.NoError(t, a.Close())
		require.NoError(t, b.Close())
	}
}

func TestFromFileRefusesDiskFile(t *testing.T) {
	dir := t.TempDir()
	var sfs unix.Statfs_t
	require.NoError(t, unix.Statfs(dir, &sfs))
	if sfs.Type == unix.TMPFS_MAGIC {
		t.Skipf("%s is on tmpfs: its files pass for memfds", dir)
	}
	path := filepath.Join(dir, "disk")
	require.NoError(t, os.WriteFile(path, []byte("hello, disk"), 0o600))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Seek(3, io.SeekStart)
	require.NoError(t, err)

	requireRefused(t, f)

	off, err := f.Seek(0, io.SeekCurrent)
	require.NoError(t, err)
	require.Equal(t, int64(3), off, "FromFile moved the file offset")
	rest, err := io.ReadAll(f)
	require.NoError(t, err)
	require.Equal(t, "lo, disk", string(rest))
	_, err = f.WriteAt([]byte("J"), 0)
	require.NoError(t, err)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "Jello, disk", string(b))

	// Read-only too.
	ro, err := os.Open(path)
	require.NoError(t, err)
	defer ro.Close()
	requireRefused(t, ro)
}

func TestFromFileRefusesDevZero(t *testing.T) {
	f, err := os.OpenFile("/dev/zero", os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	requireRefused(t, f)
	b := make([]byte, 4)
	_, err = io.ReadFull(f, b)
	require.NoError(t, err)
	require.Equal(t, []byte{0, 0, 0, 0}, b)
}

func TestFromFileRefusesDirectory(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a"), nil, 0o600))
	f, err := os.Open(dir)
	require.NoError(t, err)
	defer f.Close()
	requireRefused(t, f)
	names, err := f.Readdirnames(-1)
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, names)

	// A directory on tmpfs (/dev/shm) is no memfd either.
	if shm, err := os.Open("/dev/shm"); err == nil {
		defer shm.Close()
		requireRefused(t, shm)
	}
}

func TestFromFileRefusesOPath(t *testing.T) {
	// O_PATH on a memfd: tmpfs, a regular file, yet unusable for I/O.
	raw, fd := rawMemfd(t, "opath-target", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	defer raw.Close()
	pfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_PATH|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	p := os.NewFile(uintptr(pfd), "opath-memfd")
	defer p.Close()
	requireRefused(t, p)

	// O_PATH on a disk file.
	path := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(path, []byte("x"), 0o600))
	dfd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	d := os.NewFile(uintptr(dfd), "opath-disk")
	defer d.Close()
	requireRefused(t, d)
}

func TestFromFileRefusesClosedFile(t *testing.T) {
	raw, _ := rawMemfd(t, "closed", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	require.NoError(t, raw.Close())
	m, err := memfd.FromFile(raw)
	require.Error(t, err)
	require.Nil(t, m)
}

func TestFromFileAdoptsMemfd(t *testing.T) {
	raw, fd := rawMemfd(t, "kernel-name", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	_, err := raw.WriteAt([]byte("adopted"), 0)
	require.NoError(t, err)

	m, err := memfd.FromFile(raw)
	require.NoError(t, err)
	require.NotNil(t, m)
	require.Equal(t, "kernel-name", m.Name())

	size, err := m.Size()
	require.NoError(t, err)
	require.Equal(t, int64(7), size)
	b := make([]byte, 7)
	n, err := m.ReadAt(b, 0)
	require.NoError(t, err)
	require.Equal(t, "adopted", string(b[:n]))
	require.NoError(t, m.AddSeals(memfd.SealShrink))
	seals, err := m.Seals()
	require.NoError(t, err)
	require.True(t, seals.Has(memfd.SealShrink))

	// The File owns the descriptor: closing it closes fd (and raw with it).
	require.True(t, fdIsOpen(fd))
	require.NoError(t, m.Close())
	require.False(t, fdIsOpen(fd), "closing the adopted File must close the descriptor")
	_, err = raw.Stat()
	require.ErrorIs(t, err, os.ErrClosed)
	require.Equal(t, "kernel-name", m.Name())
}

func TestFromFileAdoptedNames(t *testing.T) {
	for _, name := range []string{"", "with space", "x (deleted)", "memfd:inner", "a/b"} {
		raw, _ := rawMemfd(t, name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		m, err := memfd.FromFile(raw)
		require.NoError(t, err, "name %q", name)
		require.Equal(t, name, m.Name())
		require.NoError(t, m.Close())
		require.Equal(t, name, m.Name())
	}
}

func TestFromFileAdoptsVariants(t *testing.T) {
	// Without MFD_ALLOW_SEALING: a memfd all the same (seals read F_SEAL_SEAL).
	raw, _ := rawMemfd(t, "unsealable", unix.MFD_CLOEXEC)
	m, err := memfd.FromFile(raw)
	require.NoError(t, err)
	seals, err := m.Seals()
	require.NoError(t, err)
	require.True(t, seals.Has(memfd.SealSeal))
	require.NoError(t, m.Close())

	// A read-only descriptor of a memfd (as a peer would receive).
	src := create(t, "ro-source")
	_, err = src.WriteAt([]byte("ro"), 0)
	require.NoError(t, err)
	var rofd int
	borrow(t, src, func(fd int) {
		rofd, err = unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		require.NoError(t, err)
	})
	ro, err := memfd.FromFile(os.NewFile(uintptr(rofd), "ro"))
	require.NoError(t, err)
	require.Equal(t, "ro-source", ro.Name())
	b := make([]byte, 2)
	_, err = ro.ReadAt(b, 0)
	require.NoError(t, err)
	require.Equal(t, "ro", string(b))
	require.NoError(t, ro.Close())

	// A hugetlbfs memfd.
	hfd, err := unix.MemfdCreate("huge-adopt", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_HUGETLB)
	if err != nil {
		t.Logf("no hugetlbfs memfd: %v", err)
		return
	}
	h, info, err := memfd.Adopt(os.NewFile(uintptr(hfd), "huge"))
	require.NoError(t, err)
	require.Equal(t, "huge-adopt", h.Name())
	require.True(t, info.HugeTLB, "a hugetlbfs memfd must be reported as one")
	require.NoError(t, h.Close())
}

// TestAdoptInfo: Info reports what the descriptor is: seals (read before
// the size), size, and not hugetlbfs for a tmpfs memfd — also when tmpfs
// reports a huge st_blksize (shmem transparent huge pages), where inspect
// must ask fstatfs.
func TestAdoptInfo(t *testing.T) {
	raw, _ := rawMemfd(t, "info", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	require.NoError(t, raw.Truncate(12345))
	m, info, err := memfd.Adopt(raw)
	require.NoError(t, err)
	require.False(t, info.HugeTLB)
	require.EqualValues(t, 12345, info.Size)
	require.False(t, info.Seals.Has(memfd.SealWrite))
	require.NoError(t, m.AddSeals(memfd.SealWrite|memfd.SealShrink))
	_, info, err = memfd.Adopt(reopen(t, m))
	require.NoError(t, err)
	require.True(t, info.Seals.Has(memfd.SealWrite|memfd.SealShrink), "%s", info.Seals)
	require.False(t, info.HugeTLB)
	require.NoError(t, m.Close())

	// tmpfs with transparent huge pages reports st_blksize 2 MiB, as
	// hugetlbfs does: Adopt must look closer and still say tmpfs.
	const thp = "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
	old, err := os.ReadFile(thp)
	if err != nil {
		t.Skipf("no %s: %v", thp, err)
	}
	mode := strings.TrimSuffix(strings.SplitN(strings.SplitN(string(old), "[", 2)[1], "]", 2)[0], "\n")
	if err := os.WriteFile(thp, []byte("always"), 0); err != nil {
		t.Skipf("cannot turn on shmem huge pages (needs root): %v", err)
	}
	defer os.WriteFile(thp, []byte(mode), 0)
	raw, _ = rawMemfd(t, "thp-info", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	st, err := raw.Stat()
	require.NoError(t, err)
	if blk := int64(st.Sys().(*syscall.Stat_t).Blksize); blk == int64(os.Getpagesize()) {
		t.Skipf("shmem_enabled=always left st_blksize at %d", blk)
	}
	m, info, err = memfd.Adopt(raw)
	require.NoError(t, err)
	require.False(t, info.HugeTLB, "a tmpfs memfd with transparent huge pages is not hugetlbfs")
	require.NoError(t, m.Close())
}

// reopen returns a new *os.File on m's memfd, through /proc/self/fd.
func reopen(t *testing.T, m *memfd.File) *os.File {
	t.Helper()
	var f *os.File
	require.NoError(t, m.Control(func(fd int) error {
		var err error
		f, err = os.Open("/proc/self/fd/" + strconv.Itoa(fd))
		return err
	}))
	t.Cleanup(func() { f.Close() })
	return f
}

func TestFromFileOfCreatedFileDescriptorIsMemfd(t *testing.T) {
	// A dup of a Created memfd (what SCM_RIGHTS delivers) is adoptable and
	// shares the seals; adopting and closing it leaves the original alone.
	f := create(t, "dup-me")
	var dfd int
	borrow(t, f, func(fd int) {
		var err error
		dfd, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		require.NoError(t, err)
	})
	m, err := memfd.FromFile(os.NewFile(uintptr(dfd), "dup"))
	require.NoError(t, err)
	require.Equal(t, "dup-me", m.Name())
	seals, err := m.Seals()
	require.NoError(t, err)
	require.Equal(t, memfd.SealExec, seals)
	require.NoError(t, m.Close())
	// The original is unaffected.
	_, err = f.Size()
	require.NoError(t, err)
	require.False(t, errors.Is(err, os.ErrClosed))
}
