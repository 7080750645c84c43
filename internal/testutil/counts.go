//go:build linux

package testutil

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// CountFDs counts the entries of /proc/self/fd (the one ReadDir opens to
// list them included).
func CountFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// CountMaps counts the lines of /proc/self/maps: every mapping of the
// process, the runtime's own included (which grow with the heap).
func CountMaps(t testing.TB) int {
	t.Helper()
	return strings.Count(readMaps(t), "\n")
}

// CountMemfdMaps counts the lines of /proc/self/maps that map a memfd.
func CountMemfdMaps(t testing.TB) int {
	t.Helper()
	return strings.Count(readMaps(t), " /memfd:")
}

func readMaps(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	require.NoError(t, err)
	return string(b)
}

// Counts is what the leak checks count: all descriptors of the process,
// those that are memfds, and the memfd mappings. It is a plain value, to
// compare with require.Equal or to do sums on.
type Counts struct {
	Total, MemfdCount, MemfdMaps int
}

func (c Counts) String() string {
	return fmt.Sprintf("%d descriptors (%d memfds), %d memfd mappings", c.Total, c.MemfdCount, c.MemfdMaps)
}

// Snapshot is Counts with what was counted: each descriptor's target and
// each memfd mapping's line, so that a check can say what differs.
type Snapshot struct {
	Counts
	fds  map[string]string // descriptor number: readlink target
	maps []string          // the memfd lines of /proc/self/maps, sorted
}

// Count counts the process's descriptors, memfds and memfd mappings.
func Count(t testing.TB) Counts {
	t.Helper()
	return Snap(t).Counts
}

// Snap counts as Count does and keeps what it counted.
func Snap(t testing.TB) Snapshot {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	s := Snapshot{fds: map[string]string{}}
	s.Total = len(ents)
	for _, e := range ents {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the descriptor ReadDir used, closed by now: counted, not listed
		}
		s.fds[e.Name()] = link
		if strings.HasPrefix(link, "/memfd:") {
			s.MemfdCount++
		}
	}
	for line := range strings.SplitSeq(readMaps(t), "\n") {
		if strings.Contains(line, " /memfd:") {
			s.maps = append(s.maps, line)
		}
	}
	slices.Sort(s.maps)
	s.MemfdMaps = len(s.maps)
	return s
}

// Diff lists what differs from s to now: descriptors gone (-), new (+) or
// pointing elsewhere, and memfd mappings gone or new. Empty when nothing
// does.
func (s Snapshot) Diff(now Snapshot) string {
	var b strings.Builder
	var nums []string
	for n := range s.fds {
		nums = append(nums, n)
	}
	for n := range now.fds {
		if _, ok := s.fds[n]; !ok {
			nums = append(nums, n)
		}
	}
	slices.SortFunc(nums, func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return x - y
	})
	for _, n := range nums {
		was, wok := s.fds[n]
		is, iok := now.fds[n]
		switch {
		case !iok:
			fmt.Fprintf(&b, "  - fd %s -> %s\n", n, was)
		case !wok:
			fmt.Fprintf(&b, "  + fd %s -> %s\n", n, is)
		case was != is:
			fmt.Fprintf(&b, "  ~ fd %s -> %s, was %s\n", n, is, was)
		}
	}
	for _, l := range without(s.maps, now.maps) {
		fmt.Fprintf(&b, "  - map %s\n", l)
	}
	for _, l := range without(now.maps, s.maps) {
		fmt.Fprintf(&b, "  + map %s\n", l)
	}
	return b.String()
}

// without returns the lines of a not in b, as a multiset.
func without(a, b []string) []string {
	left := map[string]int{}
	for _, l := range b {
		left[l]++
	}
	var out []string
	for _, l := range a {
		if left[l] > 0 {
			left[l]--
			continue
		}
		out = append(out, l)
	}
	return out
}

// RequireFlat fails, listing what differs, when the counts are not what
// they were at before.
func RequireFlat(t testing.TB, before Snapshot, msgAndArgs ...any) {
	t.Helper()
	RequireDelta(t, before, Counts{}, msgAndArgs...)
}

// RequireDelta fails, listing what differs, when the counts are not
// before's plus delta (Counts{Total: -1}: one descriptor fewer, nothing else
// changed).
func RequireDelta(t testing.TB, before Snapshot, delta Counts, msgAndArgs ...any) {
	t.Helper()
	now := Snap(t)
	want := Counts{before.Total + delta.Total, before.MemfdCount + delta.MemfdCount, before.MemfdMaps + delta.MemfdMaps}
	if now.Counts != want {
		require.Failf(t, "counts differ", "want %v, have %v (before: %v); from before to now:\n%s%s",
			want, now.Counts, before.Counts, before.Diff(now), messageFrom(msgAndArgs))
	}
}

func messageFrom(msgAndArgs []any) string {
	if len(msgAndArgs) == 0 {
		return ""
	}
	if f, ok := msgAndArgs[0].(string); ok {
		return "\n" + fmt.Sprintf(f, msgAndArgs[1:]...)
	}
	return "\n" + fmt.Sprint(msgAndArgs...)
}

// NoGC turns the garbage collector off until the test ends, so that no
// finalizer can close what the code under test forgot to.
func NoGC(t testing.TB) {
	old := debug.SetGCPercent(-1)
	t.Cleanup(func() { debug.SetGCPercent(old) })
}

// SettleFinalizers runs the garbage collector and waits until the
// finalizers it queued have run, so that a forgotten *os.File that shares a
// descriptor with the caller's would have closed it by now.
func SettleFinalizers(t testing.TB) {
	t.Helper()
	for range 2 {
		done := make(chan struct{})
		sentinel := new([64]byte)
		runtime.SetFinalizer(sentinel, func(*[64]byte) { close(done) })
		sentinel = nil
		runtime.GC()
		runtime.GC()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("finalizers did not run")
		}
	}
}

// MapsLine returns the /proc/self/maps line of the mapping holding addr,
// or "".
func MapsLine(t testing.TB, addr uintptr) string {
	t.Helper()
	for line := range strings.SplitSeq(readMaps(t), "\n") {
		var lo, hi uintptr
		if _, err := fmt.Sscanf(line, "%x-%x", &lo, &hi); err == nil && lo <= addr && addr < hi {
			return line
		}
	}
	return ""
}

// MemfdByName opens, read-write through /proc/self/fd, a memfd this
// process holds under name: a second handle on a memfd whose owner
// exposes none. The caller closes it.
func MemfdByName(t testing.TB, name string) *os.File {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	for _, e := range ents {
		p := "/proc/self/fd/" + e.Name()
		if link, err := os.Readlink(p); err == nil && link == "/memfd:"+name+" (deleted)" {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			require.NoError(t, err)
			return f
		}
	}
	t.Fatalf("no memfd called %q in /proc/self/fd", name)
	return nil
}
