//go:build linux

package sealbuf_test

import (
	"fmt"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/internal/testutil"
)

// mmapNoReplace maps n bytes of anonymous memory at addr, unless something
// is mapped there already (EEXIST).
func mmapNoReplace(addr unsafe.Pointer, n int) ([]byte, error) {
	p, err := unix.MmapPtr(-1, 0, addr, uintptr(n), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE)
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*byte)(p), n), nil
}

var _ = testutil.Role("hugetlb-heal", func(string) int { return hugeHealChild() })

// hugeHealChild: a Mapping of an unsealed hugetlbfs memfd that the peer
// truncates (the Mapping poisons the range) and grows back while the pool
// is empty, so that healing cannot map the file again.
func hugeHealChild() int {
	hps := hugePageSize()
	if hps <= 0 {
		return childSkipf("no huge page size")
	}
	f, err := newHugeMemfd("hugetlb-heal", hps, 0)
	if err != nil {
		return childSkipf("hugetlbfs memfd: %v", err)
	}
	defer f.Close()
	m, err := hugeMapping(f)
	if err != nil {
		return childSkipf("mapping the hugetlbfs memfd: %v", err)
	}
	defer m.Close()
	var addr unsafe.Pointer // where the Mapping is; never dereferenced
	if err := m.Access(func(b []byte) error {
		addr = unsafe.Pointer(unsafe.SliceData(b))
		return nil
	}); err != nil {
		return testutil.ChildFail(err)
	}
	buf := make([]byte, 4096)
	if err := f.Truncate(0); err != nil {
		return testutil.ChildFail(err)
	}
	n, err := m.ReadAt(buf, 0)
	report("ReadAt truncated", int64(n), err)
	if err := f.Truncate(hps); err != nil {
		return testutil.ChildFail(err)
	}
	if why := emptyHugePool(); why != "" {
		return childSkipf("%s", why)
	}
	n, err = m.ReadAt(buf, 0)
	report("ReadAt grown back, pool empty", int64(n), err)

	// Whatever the Mapping's range holds now must still be the Mapping's:
	// were it unmapped, the next mmap of anyone in the process could land
	// there, and the next heal (MAP_FIXED) would map the file over it.
	foreign, err := mmapNoReplace(addr, int(hps))
	report("claim the Mapping's range", 0, err)
	if err == nil {
		for i := range foreign {
			foreign[i] = 0x77
		}
		if err := setSysctl(nrHugePages, 1); err != nil {
			return testutil.ChildFail(err)
		}
		_, _ = m.ReadAt(buf, 0)
		report("foreign memory after the next access", int64(foreign[0]), nil)
		return 0
	}
	if err := setSysctl(nrHugePages, 1); err != nil {
		return testutil.ChildFail(err)
	}
	n, err = m.ReadAt(buf, 0)
	report("ReadAt pool refilled", int64(n), err)
	for _, c := range buf {
		if c != 0 {
			return testutil.ChildFail(fmt.Errorf("the grown-back file reads %#x, not zeros", c))
		}
	}
	return 0
}

// TestMapHugeTLBFailedHealKeepsRange: when the file grew back but cannot be
// mapped again (an empty pool), the Mapping's range must stay mapped (zero
// pages): a MAP_FIXED that fails after the kernel dropped the old pages
// leaves a hole in the address space that another mapping can take, and
// the next heal would map the file over it.
func TestMapHugeTLBFailedHealKeepsRange(t *testing.T) {
	hugePool(t, 1)
	got := runOutcomes(t, "hugetlb-heal", "")
	o := requireOutcome(t, got, "claim the Mapping's range")
	require.True(t, o.Is["EEXIST"], "after a failed heal the Mapping's range was free for anyone to map (%q); with the pool back, the next access mapped the file over that memory (its first byte is now %#x, was 0x77)",
		o.Err, got["foreign memory after the next access"].N)
	o = requireOutcome(t, got, "ReadAt truncated")
	require.True(t, o.Is["ErrTruncated"], o.Err)
	o = requireOutcome(t, got, "ReadAt grown back, pool empty")
	require.NotEmpty(t, o.Err)
	require.True(t, o.Is["ErrTruncated"], "the bytes cannot be read: %s", o.Err)
	require.True(t, o.Is["ENOMEM"], o.Err)
	require.Contains(t, o.Err, "nr_hugepages")
	o = requireOutcome(t, got, "ReadAt pool refilled")
	require.Empty(t, o.Err, "the pool has a page again: the Mapping heals")
	require.Equal(t, int64(4096), o.N)
}
