//go:build linux

package pool

// Option configures New or Accept.
type Option func(*options)

type options struct {
	name      string
	maxHeader int
	maxSize   int64
	futex     bool
}

// WithName names the pool's memfd (New; default "sealbuf-pool").
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithMaxHeader sets the largest header Send accepts (New; default
// 4 KiB, at most MaxHeader). The consumer learns it from the hello:
// Reader.MaxHeader.
func WithMaxHeader(n int) Option { return func(o *options) { o.maxHeader = n } }

// WithMaxSize makes Accept refuse pools larger than n bytes in all
// (slots × stride) with sealbuf.ErrTooLarge. A sealbuf.MaxSize in the
// Conn's receive policy (sealbuf.WithReceivePolicy) applies as well. Set
// one of them when the producer is not yours: Accept does not populate the
// mapping, so the limit bounds the address space a producer can make the
// consumer map and the zeroed pages its reads of unwritten slots can make
// the kernel allocate.
func WithMaxSize(n int64) Option { return func(o *options) { o.maxSize = n } }

// WithFutex makes New build a futex pool: messages and releases
// travel through a second shared memfd, a ring beside the slots, instead
// of the socket, and a side that waits is woken by futex(2). The socket
// then carries the hello, a wake-up record for a side that has waited
// longer than the futex wait, and the hang-up. The consumer's Accept
// follows the hello's lead (a sealbuf of this version or later is
// needed on both sides).
//
// What it buys: a message no longer costs a system call on each side, only
// a futex wake-up when the peer waits. Measured on a 2-core VM, both
// processes on one CPU, ping-pong, one interleaved run (docs/bench.md):
// 9.2 µs per 4 KiB message against 15.9 µs with records over the socket
// and 10.3 µs for the raw socket floor; 14.5 against 20.0 and 13.7 µs at
// 64 KiB.
//
// How a side waits, following the Conn's sealbuf.WithWait: it spins on
// the ring for the Wait's Spin, waits in futex(2) for its Kernel part, or
// for 1 ms when that is zero (then as an ordinary blocking system call:
// after 20 µs the runtime gives the P to other goroutines), then parks on
// the socket in Go's netpoller. While it waits in futex(2), a cancelled context, a
// deadline and the peer's death are noticed up to that long late;
// Discard, Close and a peer's Close wake it at once.
//
// What changes: Release never holds records back (a release costs no
// system call unless the producer waits), so Flush does nothing. Send
// fails only before the record is published (Close) or when the
// consumer's wake-up fails: then the error says so, matches io.EOF if the
// consumer is gone, and the slot stays sent (the consumer may read it). The
// trust model is the pool's: every record the peer writes into the ring is
// copied once and checked like a socket record, and a head that runs more
// than Slots entries ahead fails with ErrProtocol; the ring is sealed
// against resizing, so neither side can make the other fault.
func WithFutex() Option { return func(o *options) { o.futex = true } }

func newOptions(opts []Option) options {
	o := options{name: "sealbuf-pool", maxHeader: poolDefaultHeader, maxSize: noLimit}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}
