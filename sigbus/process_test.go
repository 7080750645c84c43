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

	"github.com/sealbuf/sealbuf/sigbus"
)

// childEnv names the mode in which TestMain runs runChild instead of the
// tests; childSizeEnv is the size the "truncate" child cuts fd 3 to.
const (
	childEnv     = "SIGBUS_TEST_CHILD"
	childSizeEnv = "SIGBUS_TEST_SIZE"
)

// runChild is the body of a re-executed test binary. Modes that should crash
// return 0 if they survive, so the parent sees the difference.
func runChild(mode string) int {
	switch mode {
	case "truncate":
		size, err := strconv.ParseInt(os.Getenv(childSizeEnv), 10, 64)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		//iosafety:allow newfile descriptor 3 is ExtraFiles[0] from the parent test, adopted once
		f := os.NewFile(3, "memfd")
		if err := f.Truncate(size); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case "unguarded":
		m := childMapping()
		sinkByte = m[page+1]
	case "goroutine-inside-guard":
		m := childMapping()
		_ = sigbus.Guard(m, func() {
			done := make(chan struct{})
			go func() {
				defer close(done)
				sinkByte = m[page+1]
			}()
			<-done
		})
	case "println-inside-guard":
		m := childMapping()
		_ = sigbus.Guard(m, func() {
			println(unsafe.String(&m[page], 8))
		})
	default:
		fmt.Fprintln(os.Stderr, "unknown child mode", mode)
		return 1
	}
	fmt.Fprintln(os.Stderr, "survived")
	return 0
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

// child returns a command re-executing this test binary in the given mode.
func child(mode string, extra ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "GOTRACEBACK=single")
	cmd.Env = append(cmd.Env, extra...)
	return cmd
}

// requireCrash runs mode in a child and checks that it died of a fatal
// runtime error whose output contains every string in want.
func requireCrash(t *testing.T, mode string, want ...string) {
	t.Helper()
	var stderr bytes.Buffer
	cmd := child(mode)
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

	cmd := child("truncate", childSizeEnv+"="+strconv.Itoa(page))
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

	cmd := child("truncate", childSizeEnv+"="+strconv.Itoa(page))
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
