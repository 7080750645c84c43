//go:build linux

package sealbuf_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/memfd"
)

// On hugetlbfs a page punched out of a memfd (fallocate PUNCH_HOLE) is not
// replaced by a zero page on the next fault the way tmpfs does it: the
// kernel needs a free huge page, and when the pool has none the access
// raises SIGBUS. Anyone on the machine can empty the pool, and only a write
// or future_write seal forbids punching. These tests punch holes, empty the
// pool and look at what a Mapping or a Sealed does then, in a child process
// (the "hugetlb" role): the parent sets the pool up and restores it.

const (
	nrHugePages     = "/proc/sys/vm/nr_hugepages"
	nrOvercommitHPs = "/proc/sys/vm/nr_overcommit_hugepages"
)

// hugePool makes sure need free huge pages of the default size exist for
// the test (and no surplus pages can be had on demand), and restores the
// pool's settings when it ends. It skips where that cannot be done.
func hugePool(t *testing.T, need int) {
	t.Helper()
	if hugePageSize() == 0 {
		t.Skip("huge pages: the kernel reports no huge page size")
	}
	pages, err := sysctlInt(nrHugePages)
	if err != nil {
		t.Skipf("huge pages: %v", err)
	}
	over, err := sysctlInt(nrOvercommitHPs)
	if err != nil {
		t.Skipf("huge pages: %v", err)
	}
	t.Cleanup(func() {
		_ = setSysctl(nrHugePages, pages)
		_ = setSysctl(nrOvercommitHPs, over)
	})
	if err := setSysctl(nrOvercommitHPs, 0); err != nil {
		t.Skipf("huge pages: cannot turn overcommit off (%v); needs root", err)
	}
	if err := setSysctl(nrHugePages, pages+need); err != nil {
		t.Skipf("huge pages: cannot reserve (%v); needs root", err)
	}
	if free := meminfo("HugePages_Free") - meminfo("HugePages_Rsvd"); free < int64(need) {
		t.Skipf("huge pages: asked for %d free pages, the kernel has %d", need, free)
	}
}

// emptyHugePool (in a child) gives every free, unreserved huge page back to
// the kernel, as any root process on the machine may. It returns why not,
// or "".
func emptyHugePool() string {
	if err := setSysctl(nrHugePages, 0); err != nil {
		return fmt.Sprintf("cannot empty the huge page pool: %v", err)
	}
	if free := meminfo("HugePages_Free") - meminfo("HugePages_Rsvd"); free != 0 {
		return fmt.Sprintf("the huge page pool still has %d free pages (another process holds them)", free)
	}
	return ""
}

// hugePageSize returns the default huge page size in bytes, or 0.
func hugePageSize() int64 { return max(meminfo("Hugepagesize"), 0) << 10 }

// punchHole punches [off, off+n) out of f, keeping its size: what a peer
// holding the memfd can do unless it is sealed against writing.
func punchHole(f *memfd.File, off, n int64) error {
	return f.Control(func(fd int) error {
		return unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	})
}

var _ = testutil.Role("hugetlb-hole", func(string) int { return hugeHoleChild() })

// newHugeMemfd creates a hugetlbfs memfd of size bytes with seals.
func newHugeMemfd(name string, size int64, seals memfd.Seals) (*memfd.File, error) {
	f, err := memfd.Create(name, memfd.WithHugeTLB(0))
	if err != nil {
		return nil, err
	}
	if err = f.Truncate(size); err == nil && seals != 0 {
		err = f.AddSeals(seals)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// hugeMapping maps f with Map and fills its first 4096 bytes with pattern
// (which allocates the first huge page).
func hugeMapping(f *memfd.File) (*sealbuf.Mapping, error) {
	osf, err := procOpenErr(f, os.O_RDWR)
	if err != nil {
		return nil, err
	}
	m, err := sealbuf.Map(osf)
	if err != nil {
		osf.Close()
		return nil, err
	}
	if _, err := m.WriteAt(patternBytes(4096), 0); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// hugeHoleChild: a Mapping of a hugetlbfs memfd sealed shrink|grow, whose
// only page the peer punches out while the pool is empty.
func hugeHoleChild() int {
	hps := hugePageSize()
	if hps <= 0 {
		return childSkipf("no huge page size")
	}
	f, err := newHugeMemfd("hugetlb-hole", hps, memfd.SealShrink|memfd.SealGrow)
	if err != nil {
		return childSkipf("hugetlbfs memfd: %v", err)
	}
	defer f.Close()
	m, err := hugeMapping(f)
	if err != nil {
		return childSkipf("mapping the hugetlbfs memfd: %v", err)
	}
	defer m.Close()
	err = punchHole(f, 0, hps)
	report("punch", 0, err)
	if err != nil {
		return 0
	}
	if why := emptyHugePool(); why != "" {
		return childSkipf("%s", why)
	}
	buf := make([]byte, 4096)
	n, err := m.ReadAt(buf, 0)
	report("ReadAt", int64(n), err)
	err = m.Access(func(b []byte) error {
		sinkByte = b[len(b)-1]
		return nil
	})
	report("Access", 0, err)
	n, err = m.WriteAt([]byte("x"), 4096)
	report("WriteAt", int64(n), err)
	size, err := f.Size()
	report("Size", size, err)
	return 0
}

// TestMapHugeTLBHole: a Mapping of a hugetlbfs memfd sealed against
// shrinking (not writing) is guarded, since a punched page faults once the
// pool is empty; and the error says what happened: not a truncation.
func TestMapHugeTLBHole(t *testing.T) {
	hugePool(t, 1)
	got := runOutcomes(t, "hugetlb-hole", "")
	require.Empty(t, requireOutcome(t, got, "punch").Err, "a memfd not sealed against writing can be punched")
	hps := hugePageSize()
	require.Equal(t, hps, requireOutcome(t, got, "Size").N, "the size did not change")
	for _, call := range []string{"ReadAt", "Access", "WriteAt"} {
		o := requireOutcome(t, got, call)
		require.NotEmpty(t, o.Err, "%s of a page punched out while the pool is empty must fail", call)
		require.True(t, o.Is["ErrTruncated"], "%s: %s", call, o.Err)
		require.Zero(t, o.N, call)
		require.Contains(t, o.Err, "size did not change", call)
		require.Contains(t, o.Err, "page inside the mapping is gone", call)
		require.Contains(t, o.Err, "hugetlbfs", call)
		require.NotContains(t, o.Err, "the file is now", call)
		require.NotContains(t, o.Err, "truncated", call)
	}
}
