//go:build linux

package sealbuf_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/memfd"
)

var _ = testutil.Role("hugetlb-open", func(string) int { return hugeOpenChild() })

// hugeOpenChild: Open of hugetlbfs memfds sealed immutable. A punch is
// refused (the write seal), so an empty pool cannot take a page away; and a
// memfd whose pages were never allocated is refused at Open when the pool
// cannot back it.
func hugeOpenChild() int {
	hps := hugePageSize()
	if hps <= 0 {
		return childSkipf("no huge page size")
	}
	b, err := sealbuf.New(int(hps), sealbuf.WithHugePages(0))
	if err != nil {
		return testutil.ChildFail(err)
	}
	if huge, why := b.HugePages(); !huge {
		b.Close()
		return childSkipf("no huge page for the sealed buffer: %v", why)
	}
	copy(b.Bytes(), patternBytes(4096))
	s, err := b.Seal()
	if err != nil {
		return testutil.ChildFail(err)
	}
	defer s.Close()
	osf, err := procOpenErr(s.File(), os.O_RDONLY)
	if err != nil {
		return testutil.ChildFail(err)
	}
	o, err := sealbuf.Open(osf)
	if err != nil {
		return testutil.ChildFail(err)
	}
	defer o.Close()
	report("punch sealed", 0, punchHole(s.File(), 0, hps))

	g, err := newHugeMemfd("hugetlb-untouched", hps, memfd.SealImmutable)
	if err != nil {
		return testutil.ChildFail(err)
	}
	defer g.Close()
	if why := emptyHugePool(); why != "" {
		return childSkipf("%s", why)
	}
	buf := make([]byte, 4096)
	n, err := o.ReadAt(buf, 0)
	report("ReadAt sealed", int64(n), err)
	if err == nil && string(buf) != string(patternBytes(4096)) {
		return testutil.ChildFail(fmt.Errorf("the sealed buffer lost its bytes"))
	}
	gf, err := procOpenErr(g, os.O_RDONLY)
	if err != nil {
		return testutil.ChildFail(err)
	}
	u, err := sealbuf.Open(gf)
	report("Open untouched", 0, err)
	if err == nil {
		u.Close()
	} else {
		gf.Close()
	}
	return 0
}

// TestOpenHugeTLB: Open of a hugetlbfs memfd is safe. Its write seal
// forbids punching pages out, so an emptied pool cannot fault it; and a
// memfd whose pages the pool cannot back fails at Open, matching
// ErrTooLarge (and ENOMEM), with a message naming the pool.
func TestOpenHugeTLB(t *testing.T) {
	hugePool(t, 1)
	got := runOutcomes(t, "hugetlb-open", "")
	o := requireOutcome(t, got, "punch sealed")
	require.True(t, o.Is["EPERM"], "punching a write-sealed hugetlbfs memfd: %q", o.Err)
	o = requireOutcome(t, got, "ReadAt sealed")
	require.Empty(t, o.Err)
	require.Equal(t, int64(4096), o.N)
	o = requireOutcome(t, got, "Open untouched")
	require.NotEmpty(t, o.Err, "the pool cannot back the memfd's page: Open must fail")
	require.True(t, o.Is["ErrTooLarge"], o.Err)
	require.True(t, o.Is["ENOMEM"], o.Err)
	require.Contains(t, o.Err, "nr_hugepages")
}
