//go:build linux

package sealbuf

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MaxBlockingWait is the longest wait WithBlockingWait accepts: it bounds
// how late Close, a deadline or a cancelled context can be noticed, and
// matches the runtime's own time slice (a goroutine running longer is
// preempted).
const MaxBlockingWait = 10 * time.Millisecond

// WithBlockingWait makes a Conn that finds nothing to read wait for the
// socket in ppoll(2), for up to d, before it parks the goroutine in Go's
// netpoller. It applies to Receive, ReceiveFiles and the waits of a Pool
// or PoolReader built on the Conn. d ≤ 0 (the default) turns it off; d is
// capped at MaxBlockingWait.
//
// What it buys is latency when the peer answers within d: the goroutine
// wakes straight from the kernel, without the netpoller's park and wake-up
// and without handing its P over. Measured on a 2-core VM, both processes
// on one CPU (docs/bench.md): Pool ping-pong 16–21 → 13–16.5 µs per message
// at 4 KiB, 25–28 → 23 µs at 64 KiB, 199–210 → 169–180 µs at 1 MiB; a fresh
// sealed buffer per message 64 → 50 µs at 4 KiB and 145 → 93 µs at 64 KiB,
// but 20% slower at 1 MiB (use it for small sealed messages only).
//
// What it costs: the wait counts as running. The goroutine keeps its P and
// its thread for up to d, as a busy loop would but without burning CPU, so
// with GOMAXPROCS=1 nothing else in the process runs meanwhile (a peer in
// the same process would then add up to d to every exchange). The
// runtime's preemption signal (a garbage collection, or a goroutine
// running past its time slice) ends the wait at once. Anything else that
// should end it is noticed up to d late: a read deadline, a cancelled
// context, a Pool slot freed by Discard or a failed Send (an Acquire
// waiting for a release), and Close — which itself blocks until the wait
// ends, as the waiting read still holds the socket. Use it for a
// latency-bound exchange with a peer in another process that answers at
// once; leave it off for servers with many mostly idle connections.
func WithBlockingWait(d time.Duration) ConnOption {
	return func(c *Conn) { c.blockingWait = min(max(d, 0), MaxBlockingWait) }
}

// waitReadable waits up to d for fd to become readable or hung up, and
// reports whether it did. A signal (EINTR: the runtime's preemption) or an
// error counts as a timeout: the caller goes on to the netpoller, which
// sees the same state.
//
// It is a raw system call on purpose: through syscall.Syscall the runtime's
// monitor takes the P away after 20 µs and the wake-up must win it back,
// which measured 15–20% slower per 1 MiB pool message than not waiting at
// all. A blocked raw call keeps the P, is bounded by d ≤ MaxBlockingWait,
// and is interrupted by preemption like running Go code.
func waitReadable(fd int, d time.Duration) bool {
	if d <= 0 {
		return false
	}
	ts := unix.NsecToTimespec(int64(d))
	pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, _, errno := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd[0])), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	return errno == 0 && n > 0
}
