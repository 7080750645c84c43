//go:build linux

package sealbuf

import (
	"time"

	"github.com/sealbuf/sealbuf/internal/wire"
)

// Wait is how a Conn (and a pool built on it) waits when it finds nothing
// to read: it spins for up to Spin, polling without sleeping; then waits in
// the kernel for up to Kernel (ppoll(2) on the socket, futex(2) on a futex
// pool's ring); then parks the goroutine in Go's netpoller, where it costs
// nothing until the peer writes. Each part is capped at MaxWait. The zero
// Wait, the default, parks at once.
//
// The trade-off (docs/bench.md has the figures, pinned and across cores):
//
//   - Parking costs the scheduler on both sides at every wake-up: tens of
//     microseconds across cores. It is right for servers with many mostly
//     idle connections.
//   - A kernel wait wakes straight from the kernel, without the netpoller's
//     park and wake-up, a few microseconds sooner. It keeps the goroutine's
//     thread and P for up to Kernel (it counts as running, without burning
//     CPU): with GOMAXPROCS=1 nothing else in the process runs meanwhile,
//     and a read deadline, a cancelled context or Close is noticed up to
//     Kernel late.
//   - Spinning wakes in a microsecond or two (a futex pool polls the shared
//     ring's word; a Conn polls its socket with non-blocking reads), at the
//     price of a busy CPU for up to Spin. A spin looks a few hundred times
//     without pause (about a microsecond), then calls sched_yield(2)
//     between looks: on a CPU shared with the peer that hands the CPU over
//     at once, on a CPU of its own it returns at once. It also yields to other goroutines as it
//     goes, so GOMAXPROCS=1 still runs them. Where the peer shares this
//     process's only CPU and has real work to do per message, a spin takes
//     CPU time from it (measured: a fresh sealed buffer per message, 4 KiB,
//     both processes on one CPU, p50 24 µs without a spin, 82 µs with
//     one); where its work is small it still helps (the futex pool, same
//     pinning, beats its futex wake-up). Leave Spin at 0 when both sides
//     share one CPU, unless you measured otherwise.
//
// Once Spin and Kernel are spent an idle side uses no CPU. For a
// latency-bound exchange across cores, use something like
// Wait{Spin: 50 * time.Microsecond, Kernel: time.Millisecond}; for peers
// pinned to one CPU, Kernel alone.
type Wait struct {
	Spin   time.Duration
	Kernel time.Duration
}

// MaxWait caps each part of a Wait: it bounds how late Close, a deadline or
// a cancelled context can be noticed, and matches the runtime's own time
// slice.
const MaxWait = 10 * time.Millisecond

// WithWait sets how the Conn, and a pool built on it, waits for its peer
// (see Wait).
func WithWait(w Wait) ConnOption {
	return func(c *Conn) { c.wait = wire.Wait{Spin: w.Spin, Kernel: w.Kernel}.Clamp() }
}

// The transport clamps to its own MaxWait: the two must agree (this does
// not compile otherwise).
var _ = [1]struct{}{}[MaxWait-wire.MaxWait]
