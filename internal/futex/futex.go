//go:build linux

// Package futex waits on and wakes a 32-bit word that two processes share
// (a futex(2) in a MAP_SHARED mapping of the same file): the doorbell of a
// pool whose records travel through shared memory.
//
// The operations are the shared (not process-private) FUTEX_WAIT and
// FUTEX_WAKE, keyed by the file page and offset, so the two processes may
// map the word at different addresses, and the waiter may map it
// read-only.
package futex

import (
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// futex(2) operations on a shared word; x/sys/unix does not name them.
const (
	opWait = 0 // FUTEX_WAIT
	opWake = 1 // FUTEX_WAKE
)

// Wait blocks while *w == old, for at most d (d > 0), and reports whether
// it returned because *w changed or a wake-up came (true), or on the
// timeout, a signal or an error (false): the caller looks at *w again
// either way.
//
// With raw, it is a raw system call: the goroutine keeps its P and thread
// while it waits, as a busy loop would but without burning CPU (see
// sealbuf.WithWait for why and at what cost). Without, it is an
// ordinary blocking system call: after 20 µs the runtime hands the P to
// other goroutines, and the wake-up must win one back.
func Wait(w *atomic.Uint32, old uint32, d time.Duration, raw bool) bool {
	ts := unix.NsecToTimespec(int64(d))
	var e unix.Errno
	if raw {
		_, _, e = unix.RawSyscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), opWait, uintptr(old), uintptr(unsafe.Pointer(&ts)), 0, 0)
	} else {
		_, _, e = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), opWait, uintptr(old), uintptr(unsafe.Pointer(&ts)), 0, 0)
	}
	return e == 0 || e == unix.EAGAIN
}

// Wake wakes up to n waiters on w and returns how many it woke. Waking a
// word nobody waits on costs one system call and does nothing.
func Wake(w *atomic.Uint32, n int) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), opWake, uintptr(n), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
