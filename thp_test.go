//go:build linux

package sealbuf_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/sealbuf/sealbuf"
	"github.com/stretchr/testify/require"
)

const (
	thpShmemEnabled = "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
	thpSize         = 2 << 20 // the PMD size the tests expect (x86-64, arm64 with 4 KiB pages)
)

// shmemTHPPolicy returns the bracketed word of shmem_enabled, skipping the
// test where the kernel has no shmem transparent huge pages or where they
// are not 2 MiB.
func shmemTHPPolicy(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(thpShmemEnabled)
	if err != nil {
		t.Skipf("no shmem transparent huge pages: %v", err)
	}
	pmd, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
	if err != nil || strings.TrimSpace(string(pmd)) != "2097152" {
		t.Skipf("transparent huge pages are not 2 MiB here (%q, %v)", pmd, err)
	}
	s := string(b)
	return s[strings.IndexByte(s, '[')+1 : strings.IndexByte(s, ']')]
}

// setShmemTHP sets shmem_enabled (and the 2 MiB per-size control, where the
// kernel has one, to inherit) for the test and restores both afterwards; it
// skips where that cannot be done (not root).
func setShmemTHP(t *testing.T, policy string) {
	t.Helper()
	old := shmemTHPPolicy(t)
	const perSize = "/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/shmem_enabled"
	if err := os.WriteFile(thpShmemEnabled, []byte(policy), 0); err != nil {
		t.Skipf("cannot set %s to %s (%v): needs root", thpShmemEnabled, policy, err)
	}
	t.Cleanup(func() { os.WriteFile(thpShmemEnabled, []byte(old), 0) })
	if b, err := os.ReadFile(perSize); err == nil {
		s := string(b)
		oldPer := s[strings.IndexByte(s, '[')+1 : strings.IndexByte(s, ']')]
		if oldPer != "inherit" {
			require.NoError(t, os.WriteFile(perSize, []byte("inherit"), 0))
			t.Cleanup(func() { os.WriteFile(perSize, []byte(oldPer), 0) })
		}
	}
	require.Equal(t, policy, shmemTHPPolicy(t))
}

// freeHugetlbPages returns the free pages of the default hugetlbfs pool.
func freeHugetlbPages(t *testing.T) string {
	b, err := os.ReadFile("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
	if err != nil {
		return "0"
	}
	return strings.TrimSpace(string(b))
}

func TestTransparentHugePages(t *testing.T) {
	setShmemTHP(t, "advise")
	// Two whole huge pages and a tail of normal ones.
	const size = 2*thpSize + 3*4096 + 5
	b, err := sealbuf.New(size, sealbuf.WithTransparentHugePages())
	require.NoError(t, err)
	defer b.Close()
	huge, why := b.HugePages()
	if !huge && strings.Contains(why.Error(), "no free") {
		t.Skipf("the kernel had no free 2 MiB blocks: %v", why)
	}
	require.True(t, huge, "%v", why)
	require.NoError(t, why)
	mem := b.Bytes()
	require.Len(t, mem, size)
	require.Equal(t, make([]byte, size), mem, "zero-filled")
	want := bytes.Repeat([]byte("thp!"), size/4+1)[:size]
	copy(mem, want)
	s, err := b.Seal()
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, size, s.Len())
	require.Equal(t, want, s.Bytes())

	// FromBytes takes the huge-page path too.
	f, err := sealbuf.FromBytes(want, sealbuf.WithTransparentHugePages())
	require.NoError(t, err)
	defer f.Close()
	require.Equal(t, want, f.Bytes())
}

// WithHugePages takes transparent huge pages when the hugetlbfs pool has
// none free.
func TestHugePagesFallBackToTransparent(t *testing.T) {
	setShmemTHP(t, "advise")
	if free := freeHugetlbPages(t); free != "0" {
		t.Skipf("the hugetlbfs pool has %s free pages: WithHugePages takes those", free)
	}
	b, err := sealbuf.New(thpSize, sealbuf.WithHugePages(0))
	require.NoError(t, err)
	defer b.Close()
	huge, why := b.HugePages()
	if !huge && strings.Contains(why.Error(), "no free") {
		t.Skipf("the kernel had no free 2 MiB blocks: %v", why)
	}
	require.True(t, huge, "%v", why)
}

// With shmem_enabled never, the buffer has normal pages, and the reason
// names the knob.
func TestTransparentHugePagesOff(t *testing.T) {
	if shmemTHPPolicy(t) != "never" {
		setShmemTHP(t, "never")
	}
	b, err := sealbuf.New(thpSize, sealbuf.WithTransparentHugePages())
	if err == nil {
		defer b.Close()
	}
	require.NoError(t, err)
	huge, why := b.HugePages()
	if huge {
		t.Skip("the 2 MiB per-size control allows shmem huge pages although shmem_enabled is never")
	}
	require.ErrorContains(t, why, "shmem_enabled")
	require.Len(t, b.Bytes(), thpSize)
	b.Bytes()[thpSize-1] = 1
	s, err := b.Seal()
	require.NoError(t, err)
	require.NoError(t, s.Close())
}

func TestTransparentHugePagesTooSmall(t *testing.T) {
	shmemTHPPolicy(t)
	b, err := sealbuf.New(thpSize-1, sealbuf.WithTransparentHugePages())
	require.NoError(t, err)
	defer b.Close()
	huge, why := b.HugePages()
	require.False(t, huge)
	require.ErrorContains(t, why, "less than one")
	require.Len(t, b.Bytes(), thpSize-1)

	_, err = sealbuf.New(thpSize, sealbuf.WithHugePages(1<<30), sealbuf.WithTransparentHugePages())
	require.NoError(t, err, "the last huge-page option wins")
}
