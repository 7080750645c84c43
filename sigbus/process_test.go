//go:build linux

package sigbus_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/sigbus"
)

// The children are this test binary run again in a role (see
// internal/testutil). Roles that should crash print "survived" and exit 0
// if they do not, so the parent sees the difference.
var (
	// truncate ARG: cut descriptor 3 to ARG bytes.
	_ = testutil.Role("truncate", func(arg string) int {
		size, err := strconv.ParseInt(arg, 10, 64)
		if err != nil {
			return testutil.ChildFail(err)
		}
		f := testutil.ChildFile(0, "memfd")
		if err := f.Truncate(size); err != nil {
			return testutil.ChildFail(err)
		}
		return 0
	})
	_ = crashRole("unguarded", func() {
		m := childMapping()
		sinkByte = m[page+1]
	})
	_ = crashRole("goroutine-inside-guard", func() {
		m := childMapping()
		_ = sigbus.Guard(m, func() {
			done := make(chan struct{})
			go func() {
				defer close(done)
				sinkByte = m[page+1]
			}()
			<-done
		})
	})
	_ = crashRole("println-inside-guard", func() {
		m := childMapping()
		_ = sigbus.Guard(m, func() {
			println(unsafe.String(&m[page], 8))
		})
	})
)

// crashRole registers a role that runs fn, which should crash the child.
func crashRole(name string, fn func()) bool {
	return testutil.Role(name, func(string) int {
		fn()
		fmt.Fprintln(os.Stderr, "survived")
		return 0
	})
}

// childMapping is truncatedMapping for a child process, which has no
// testing.TB; the process exits soon, so nothing is released.
func childMapping() []byte {
	fd, err := unix.MemfdCreate("sigbus-child", unix.MFD_CLOEXEC)
	if err == nil {
		err = unix.Ftruncate(fd, mapSize)
	}
	var p unsafe.Pointer
	if err == nil {
		p, err = unix.MmapPtr(fd, 0, nil, mapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	}
	if err == nil {
		err = unix.Ftruncate(fd, int64(page))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return unsafe.Slice((*byte)(p), mapSize)
}

// child returns a command running this test binary in role with arg.
func child(role, arg string) *exec.Cmd {
	cmd := testutil.Command(role, arg)
	cmd.Env = append(cmd.Env, "GOTRACEBACK=single")
	return cmd
}

// requireCrash runs mode in a child and checks that it died of a fatal
// runtime error whose output contains every string in want.
func requireCrash(t *testing.T, mode string, want ...string) {
	t.Helper()
	var stderr bytes.Buffer
	cmd := child(mode, "")
	cmd.Stderr = &stderr
	err := cmd.Run()
	out := stderr.String()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "child did not crash; stderr:\n%s", out)
	require.Equal(t, 2, exit.ExitCode(), "stderr:\n%s", out)
	require.NotContains(t, out, "survived")
	for _, w := range want {
		require.Contains(t, out, w)
	}
}

// TestUnguardedAccessCrashes shows what Guard prevents: without it, reading
// past the end of a truncated file kills the process. If this ever stops
// crashing, the fault tests above prove nothing.
func TestUnguardedAccessCrashes(t *testing.T) {
	requireCrash(t, "unguarded", "unexpected fault address", "fatal error: fault", "SIGBUS")
}

// TestGuardDoesNotCoverNewGoroutines documents the main limit: the setting is
// per goroutine, and a goroutine started inside fn runs unprotected.
func TestGuardDoesNotCoverNewGoroutines(t *testing.T) {
	requireCrash(t, "goroutine-inside-guard", "unexpected fault address", "fatal error: fault")
}

// TestGuardDoesNotCoverPrintln documents that runtime code holding locks
// cannot panic: println of mapped bytes copies them under the print lock.
func TestGuardDoesNotCoverPrintln(t *testing.T) {
	requireCrash(t, "println-inside-guard", "unexpected signal during runtime execution")
}

// TestGuardChildTruncates has another process cut the file, as a peer would.
func TestGuardChildTruncates(t *testing.T) {
	f := newMemfd(t, mapSize)
	m := mapShared(t, f, mapSize)
	fillHead(m, page)

	cmd := child("truncate", strconv.Itoa(page))
	cmd.ExtraFiles = []*os.File{f}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "child: %s", out)

	fi, err := f.Stat()
	require.NoError(t, err)
	require.Equal(t, int64(page), fi.Size())

	dst := make([]byte, len(m))
	fe := requireFault(t, m, sigbus.Guard(m, func() { copy(dst, m) }))
	require.GreaterOrEqual(t, fe.Offset, int64(page))
	fe = requireFault(t, m, sigbus.Guard(m, func() { m[mapSize-1] = 1 }))
	require.Equal(t, int64(mapSize-1), fe.Offset)

	var last byte
	require.NoError(t, sigbus.Guard(m, func() { last = m[page-1] }))
	require.Equal(t, pattern(page-1), last)
}

// TestGuardChildTruncatesDuringAccess copies the mapping in a loop while a
// child process cuts the file: every copy either succeeds or faults, and the
// first copy after the child is done faults.
func TestGuardChildTruncatesDuringAccess(t *testing.T) {
	f := newMemfd(t, mapSize)
	m := mapShared(t, f, mapSize)
	fillHead(m, page)

	dst := make([]byte, len(m))
	require.NoError(t, sigbus.Guard(m, func() { copy(dst, m) }), "populating the mapping")

	cmd := child("truncate", strconv.Itoa(page))
	cmd.ExtraFiles = []*os.File{f}
	done := make(chan error, 1)
	require.NoError(t, cmd.Start())
	go func() { done <- cmd.Wait() }()

	copies, exited := 0, false
	deadline := time.After(time.Minute)
	for {
		err := sigbus.Guard(m, func() { copy(dst, m) })
		if err != nil {
			requireFault(t, m, err)
			break
		}
		require.False(t, exited, "copy succeeded after the child cut the file")
		copies++
		select {
		case werr := <-done:
			require.NoError(t, werr)
			exited = true
		case <-deadline:
			t.Fatal("child did not exit")
		default:
		}
	}
	t.Logf("%d whole copies before the fault", copies)
	if !exited {
		require.NoError(t, <-done)
	}
}
