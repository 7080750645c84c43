//go:build linux

package testutil

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Probes tell that another goroutine has got as far as blocking, so that a
// test acts on a blocked call instead of sleeping and hoping it blocked.

// Blocked reports whether a goroutine whose stack names every one of
// frames (substrings of its function names, "sealbuf.(*Conn).ReceiveContext",
// "TestConnCloseUnblocksReceive") is blocked: parked on a descriptor in
// the runtime's poller (state "IO wait"), or on a channel, lock or
// condition ("chan receive", "select", "semacquire", "sync.Cond.Wait", …).
// Running, runnable and sleeping goroutines are not blocked, nor are those
// in a system call: a Conn's ppoll(2) wait (WithWait's Kernel) is a raw
// system call, which shows as running — InSyscall(unix.SYS_PPOLL) tells
// that one. Each call stops the world for the stack dump, and the signal
// that preempts a goroutine ends such a ppoll wait early (EINTR: the read
// then parks in the poller, as it would have a little later).
func Blocked(frames ...string) bool {
	for _, g := range goroutines() {
		if g.blocked() && g.names(frames) {
			return true
		}
	}
	return false
}

// AwaitBlocked waits up to timeout for Blocked(frames...), and reports
// whether it came; for goroutines that must not fail the test themselves.
func AwaitBlocked(timeout time.Duration, frames ...string) bool {
	for end := time.Now().Add(timeout); ; {
		if Blocked(frames...) {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		time.Sleep(50 * time.Microsecond) // between probes, each of which stops the world
	}
}

// WaitBlocked waits until Blocked(frames...), failing the test after 10
// seconds with the goroutines it saw.
func WaitBlocked(t testing.TB, frames ...string) {
	t.Helper()
	if !AwaitBlocked(10*time.Second, frames...) {
		var names []string
		for _, g := range goroutines() {
			if g.names(frames) {
				names = append(names, g.text)
			}
		}
		t.Fatalf("no goroutine naming %q blocked within 10s; those naming them:\n%s", frames, strings.Join(names, "\n\n"))
	}
}

type goroutine struct {
	state string // "IO wait", from "goroutine 7 [IO wait, 2 minutes]:"
	text  string // the whole record
}

func (g goroutine) names(frames []string) bool {
	for _, f := range frames {
		if !strings.Contains(g.text, f) {
			return false
		}
	}
	return true
}

func (g goroutine) blocked() bool {
	switch g.state {
	case "running", "runnable", "sleep", "syscall", "":
		return false
	}
	return true
}

// goroutines returns every goroutine of the process, from runtime.Stack.
func goroutines() []goroutine {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var gs []goroutine
	for rec := range strings.SplitSeq(string(buf), "\n\n") {
		_, rest, ok := strings.Cut(rec, " [")
		if !ok {
			continue
		}
		state, _, _ := strings.Cut(rest, "]")
		state, _, _ = strings.Cut(state, ",") // "IO wait, 2 minutes"
		gs = append(gs, goroutine{state: state, text: rec})
	}
	return gs
}

// InSyscall reports whether some thread of this process is in system call
// nr (unix.SYS_PPOLL, say), from /proc/self/task/*/syscall, whose first
// field is the number. Without that file (a kernel without
// CONFIG_HAVE_ARCH_TRACEHOOK) it reports false; HaveSyscallFiles tells.
func InSyscall(nr int) bool {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return false
	}
	want := strconv.Itoa(nr) + " "
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/syscall")
		if err == nil && strings.HasPrefix(string(b), want) {
			return true
		}
	}
	return false
}

// HaveSyscallFiles reports whether /proc/self/task/TID/syscall exists,
// which InSyscall reads.
func HaveSyscallFiles() error {
	_, err := os.Stat("/proc/thread-self/syscall")
	return err
}

// ProcessCPU returns the CPU time this process has used so far, user and
// system, all threads (0 if getrusage fails, which it does not).
func ProcessCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
