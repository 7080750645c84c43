//go:build linux

package sealbuf_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/memfd"
)

// sparseSize is the size of the sparse memfds of the "rlimit-as" role: no
// memory, but more address space than its RLIMIT_AS leaves. (A variable:
// the test skips on 32-bit ports, where it does not fit in an int.)
var sparseSize int64 = 64 << 30

// vmSize returns the process's address space size (VmSize), in bytes.
func vmSize() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmSize:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmSize in /proc/self/status")
}

// The "rlimit-as" role limits its address space to what it uses plus 1 GiB
// and then tries to map sparse 64 GiB memfds every way a consumer can.
var _ = testutil.Role("rlimit-as", func(string) int {
	sparse := func(seals memfd.Seals) (*memfd.File, error) {
		f, err := memfd.Create("sparse")
		if err == nil {
			err = f.Truncate(sparseSize)
		}
		if err == nil {
			err = f.AddSeals(seals)
		}
		return f, err
	}
	sealed, err := sparse(memfd.SealImmutable)
	if err != nil {
		return testutil.ChildFail(err)
	}
	sized, err := sparse(memfd.SealShrink | memfd.SealGrow)
	if err != nil {
		return testutil.ChildFail(err)
	}
	b, err := sealbuf.New(int(sparseSize)) // mapped before the limit, unmapped by Seal
	if err != nil {
		return testutil.ChildFail(err)
	}
	s, err := b.Seal()
	if err != nil {
		return testutil.ChildFail(err)
	}

	used, err := vmSize()
	if err != nil {
		return testutil.ChildFail(err)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_AS, &lim); err != nil {
		return testutil.ChildFail(err)
	}
	lim.Cur = used + 1<<30
	if lim.Max < lim.Cur {
		return childSkipf("RLIMIT_AS hard limit %d is below what the child uses", lim.Max)
	}
	if err := unix.Setrlimit(unix.RLIMIT_AS, &lim); err != nil {
		return testutil.ChildFail(err)
	}

	_, err = sealbuf.New(int(sparseSize))
	report("New", 0, err)
	for _, c := range []struct {
		call string
		file *memfd.File
		flag int
		do   func(*os.File) (interface{ Close() error }, error)
	}{
		{"Open", sealed, os.O_RDONLY, func(f *os.File) (interface{ Close() error }, error) { return sealbuf.Open(f) }},
		{"Map read-only", sealed, os.O_RDONLY, func(f *os.File) (interface{ Close() error }, error) { return sealbuf.Map(f) }},
		{"Map writable", sized, os.O_RDWR, func(f *os.File) (interface{ Close() error }, error) { return sealbuf.Map(f) }},
	} {
		f, err := procOpenErr(c.file, c.flag)
		if err != nil {
			return testutil.ChildFail(err)
		}
		v, err := c.do(f)
		report(c.call, 0, err)
		if err == nil {
			v.Close()
		} else {
			f.Close()
		}
	}
	n, err := s.ReadAt(make([]byte, 1), 0) // maps the Sealed on first use
	report("Sealed.ReadAt", int64(n), err)
	return 0
})

// TestMapENOMEMIsTooLarge: a memfd that does not fit in the address space
// left under RLIMIT_AS fails Open, Map and a Sealed's first read matching
// ErrTooLarge, as New does, with unix.ENOMEM still reachable and a message
// that says what to do.
func TestMapENOMEMIsTooLarge(t *testing.T) {
	if strconv.IntSize < 64 {
		t.Skip("a 64 GiB memfd cannot be mapped on a 32-bit port at all")
	}
	got := runOutcomes(t, "rlimit-as", "")
	o := requireOutcome(t, got, "New")
	require.True(t, o.Is["ErrTooLarge"], "New: %s", o.Err)
	for _, call := range []string{"Open", "Map read-only", "Map writable", "Sealed.ReadAt"} {
		o := requireOutcome(t, got, call)
		require.NotEmpty(t, o.Err, "%s of a %d-byte memfd under RLIMIT_AS", call, sparseSize)
		require.True(t, o.Is["ErrTooLarge"], "%s: %s", call, o.Err)
		require.True(t, o.Is["ENOMEM"], "%s: %s", call, o.Err)
		require.Contains(t, o.Err, "RLIMIT_AS", call)
		require.Contains(t, o.Err, "MaxSize", call)
		require.Contains(t, o.Err, strconv.FormatInt(sparseSize, 10), call)
	}
}
