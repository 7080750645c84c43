//go:build linux

package sealbuf_test

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/sealbuf/sealbuf"
	"github.com/stretchr/testify/require"
)

func TestHugePagesFallbackReason(t *testing.T) {
	b, err := sealbuf.New(1000, sealbuf.WithHugePages(0))
	require.NoError(t, err)
	defer b.Close()
	huge, why := b.HugePages()
	require.False(t, huge)
	require.ErrorContains(t, why, "multiple")
	require.Len(t, b.Bytes(), 1000)
}

// reserveHugePages sets /proc/sys/vm/nr_hugepages to n for the test and
// restores it after; it skips where that cannot be done.
func reserveHugePages(t *testing.T, n int) {
	t.Helper()
	const path = "/proc/sys/vm/nr_hugepages"
	old, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("huge pages: %v", err)
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(n)), 0); err != nil {
		t.Skipf("huge pages: cannot reserve (%v); needs root", err)
	}
	t.Cleanup(func() { os.WriteFile(path, old, 0) })
	got, _ := os.ReadFile(path)
	if strings.TrimSpace(string(got)) != strconv.Itoa(n) {
		t.Skipf("huge pages: asked for %d, the kernel gave %s", n, got)
	}
}

func TestHugePagesSealOpen(t *testing.T) {
	reserveHugePages(t, 2)
	const size = 2 << 20
	b, err := sealbuf.New(size, sealbuf.WithHugePages(0))
	require.NoError(t, err)
	huge, why := b.HugePages()
	require.True(t, huge, "%v", why)
	b.Bytes()[size-1] = 7
	s, err := b.Seal()
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, byte(7), s.Bytes()[size-1])

	// Exhausted pool: the second and third buffers cannot all have huge pages.
	var bufs []*sealbuf.Buffer
	defer func() {
		for _, b := range bufs {
			b.Close()
		}
	}()
	for range 2 {
		b, err := sealbuf.New(size, sealbuf.WithHugePages(0))
		require.NoError(t, err)
		bufs = append(bufs, b)
	}
	// Where the kernel allows shmem transparent huge pages, WithHugePages
	// takes those instead; otherwise the reason names the pool.
	if huge, why := bufs[1].HugePages(); !huge {
		require.ErrorContains(t, why, "nr_hugepages")
	}
}
