//go:build linux

package testutil_test

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// echo-line: read a line from descriptor 3, write it back, and say so on
// stdout and stderr.
var _ = testutil.Role("echo-line", func(arg string) int {
	f := testutil.ChildFile(0, "sock")
	defer f.Close()
	b := make([]byte, 64)
	n, err := f.Read(b)
	if err != nil {
		return testutil.ChildFail(err)
	}
	if _, err := f.Write(b[:n]); err != nil {
		return testutil.ChildFail(err)
	}
	fmt.Println("out", arg)
	fmt.Fprintln(os.Stderr, "err", arg)
	return 0
})

var _ = testutil.Role("fail", func(arg string) int { return testutil.ChildFail(fmt.Errorf("asked to: %s", arg)) })

var _ = testutil.Role("wait", func(string) int {
	time.Sleep(time.Hour)
	return 0
})

func TestChild(t *testing.T) {
	testutil.NoGC(t)
	a, b := testutil.Socketpair(t, unix.SOCK_STREAM)
	before := testutil.Snap(t)
	c := testutil.StartChild(t, "echo-line", "x", b)
	_, err := a.Write([]byte("hello"))
	require.NoError(t, err)
	got := make([]byte, 5)
	_, err = io.ReadFull(a, got)
	require.NoError(t, err)
	require.Equal(t, "hello", string(got))
	require.NoError(t, c.Wait())
	require.NoError(t, c.Wait(), "a second Wait says the same")
	require.Equal(t, "out x\n", c.Stdout())
	require.Equal(t, "err x\n", c.Stderr())
	testutil.RequireDelta(t, before, testutil.Counts{Total: -1}, "the parent's copy of b is closed, and nothing else is left open")

	c = testutil.StartChild(t, "fail", "because")
	err = c.Wait()
	require.Error(t, err)
	require.Contains(t, err.Error(), "child: asked to: because")

	c = testutil.StartChild(t, "wait", "")
	c.Kill(t)

	c = testutil.StartChild(t, "no-such-role", "")
	require.ErrorContains(t, c.Wait(), `unknown child role "no-such-role"`)

	testutil.StartChild(t, "wait", "") // killed at cleanup
}

func TestCountsDiff(t *testing.T) {
	testutil.NoGC(t)
	before := testutil.Snap(t)
	testutil.RequireFlat(t, before)
	fd, err := unix.MemfdCreate("testutil-diff", unix.MFD_CLOEXEC)
	require.NoError(t, err)
	defer unix.Close(fd)
	m, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ, unix.MAP_SHARED)
	require.NoError(t, err)
	defer unix.Munmap(m)
	now := testutil.Snap(t)
	require.Equal(t, testutil.Counts{Total: before.Total + 1, MemfdCount: before.MemfdCount + 1, MemfdMaps: before.MemfdMaps + 1}, now.Counts)
	diff := before.Diff(now)
	require.Contains(t, diff, fmt.Sprintf("  + fd %d -> /memfd:testutil-diff (deleted)\n", fd))
	require.Contains(t, diff, "  + map ")
	require.Equal(t, 2, strings.Count(diff, "\n"), diff)
	testutil.RequireDelta(t, before, testutil.Counts{Total: 1, MemfdCount: 1, MemfdMaps: 1})
	require.Contains(t, testutil.MapsLine(t, uintptr(unsafeAddr(m))), "/memfd:testutil-diff")
}

func TestBlocked(t *testing.T) {
	a, b := testutil.UnixPair(t, unix.SOCK_SEQPACKET)
	require.False(t, testutil.Blocked("testutil_test.blockedRead"))
	done := make(chan error, 1)
	go func() { done <- blockedRead(a) }()
	testutil.WaitBlocked(t, "testutil_test.blockedRead", "TestBlocked")
	_, err := b.Write([]byte("x"))
	require.NoError(t, err)
	require.NoError(t, <-done)
	require.False(t, testutil.Blocked("testutil_test.blockedRead"))
}

//go:noinline
func blockedRead(c io.Reader) error {
	_, err := c.Read(make([]byte, 8))
	return err
}
