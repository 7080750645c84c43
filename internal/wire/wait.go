//go:build linux

package wire

import (
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Wait is how a side with nothing to read waits for its peer: it spins
// (polls without sleeping) for up to Spin, then waits in the kernel
// (ppoll(2) on the socket, futex(2) on a futex pool's ring) for up to
// Kernel, then parks in Go's netpoller, where it costs nothing until the
// peer writes.
//
// The trade-off, in one place. A wake-up through the netpoller costs a
// round of the scheduler on both sides (tens of microseconds across cores
// on a busy VM); a kernel wait keeps the goroutine's thread and P but
// sleeps, and wakes in a few microseconds; spinning wakes in well under a
// microsecond but keeps a CPU busy for as long as it lasts. A pure spin
// helps only when the peer runs on another CPU at the same time; on the
// peer's own CPU it would take the time the peer needs to answer. So a spin
// looks spinPure times without pause (a microsecond or so: what an answer
// across cores takes), then calls sched_yield(2) between looks: on a CPU it
// shares with the peer that hands the CPU over at once, on a CPU of its own
// it returns at once. (This process's affinity cannot tell the two apart:
// each side pinned to a CPU of its own looks like both on one.) Once the
// budgets are spent an idle side uses no CPU.
type Wait struct {
	Spin   time.Duration
	Kernel time.Duration
}

// MaxWait bounds each part of a Wait: a longer kernel wait would keep a
// thread from the runtime for too long, a longer spin would only burn CPU.
const MaxWait = 10 * time.Millisecond

// Clamp returns w with each part within 0..MaxWait.
func (w Wait) Clamp() Wait {
	return Wait{Spin: min(max(w.Spin, 0), MaxWait), Kernel: min(max(w.Kernel, 0), MaxWait)}
}

// spinPure is how many looks a spin takes before it yields between looks.
const spinPure = 256

// Spinner runs a spin phase: Next reports whether to poll again, yielding
// the processor now and then so that a GOMAXPROCS=1 process still runs its
// other goroutines.
type Spinner struct {
	start time.Time
	d     time.Duration // 0: no spin
	n     int
}

// Start begins a spin of d.
func (s *Spinner) Start(d time.Duration) {
	s.n = 0
	s.d = 0
	if d > 0 {
		s.start, s.d = time.Now(), d
	}
}

// Next reports whether the spin goes on.
func (s *Spinner) Next() bool {
	if s.d == 0 {
		return false
	}
	s.n++
	if s.n <= spinPure {
		return true
	}
	if s.n&15 == 0 {
		if time.Since(s.start) >= s.d {
			s.d = 0
			return false
		}
		runtime.Gosched() // other goroutines of a GOMAXPROCS=1 process
	}
	unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0) // other threads on this CPU: the peer, maybe
	return true
}

// waitReadable waits for fd to become readable in ppoll(2), for up to d, as
// a raw system call: the thread keeps its P (the goroutine counts as
// running) so that the wake-up costs no scheduling. It reports whether fd
// became readable.
func waitReadable(fd int, d time.Duration) bool {
	if d <= 0 {
		return false
	}
	ts := unix.NsecToTimespec(int64(d))
	pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, _, errno := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd[0])), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	return errno == 0 && n > 0
}
