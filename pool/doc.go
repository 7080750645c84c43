// Package pool passes a stream of messages between two processes through
// fixed-size slots in one shared memfd, reused from message to message:
// sealbuf's fastest handoff. A fresh sealed buffer per message
// (sealbuf.New, Seal, Conn.Send) pays for fresh pages every time —
// allocate, zero, map, free — which on normal pages costs more than
// copying the bytes through a socket. A pool is mapped once by each side; then a
// message costs one copy into a slot and a 16-byte record.
//
// # Producer and consumer
//
// New makes the memfd, maps it writable, seals it and sends it over a
// sealbuf.Conn (the hello); the peer's Accept checks it and maps it
// read-only. Each takes its Conn over: Close the Writer or the Reader, not
// the Conn.
//
//	w, err := pool.New(conn, 8, 4<<20) // 8 slots of 4 MiB, handed over once
//	if err != nil {
//		return err
//	}
//	defer w.Close() // the consumer reads io.EOF after the last message
//	slot, err := w.Acquire(ctx) // waits while every slot is in use
//	if err != nil {
//		return err // io.EOF: the consumer is gone, every slot is back
//	}
//	n := copy(slot.Bytes(), frame)
//	if err := slot.Send(n, header); err != nil {
//		return err
//	}
//
// and in the other process:
//
//	r, err := pool.Accept(conn, pool.WithMaxSize(256<<20))
//	if err != nil {
//		return err // sealbuf.ErrNotSealed, sealbuf.ErrTooLarge, ErrProtocol…
//	}
//	defer r.Close()
//	header := make([]byte, r.MaxHeader())
//	v, n, err := r.Receive(ctx, header)
//	if err != nil {
//		return err // io.EOF: the producer hung up
//	}
//	process(header[:n], v.Bytes()) // the producer's slot, read-only: no copy
//	v.Release()                    // the producer may reuse the slot
//
// ExampleNew runs both ends. Writer and Reader are safe for concurrent use,
// and the steady state (Acquire, Send, Receive, Release, and waiting)
// allocates nothing.
//
// # What the consumer can rely on
//
// The memfd is sealed shrink|grow before anybody maps it, and
// future_write|seal once the producer has: no side can ever change its size,
// so neither can make the other fault (no SIGBUS guard is needed), and
// nothing but the producer's own mapping can write it any more: the
// consumer, and anyone the descriptor reaches, can only map it read-only.
// But the contents are not immutable: the producer keeps its writable
// mapping, and one that breaks the protocol can change a slot while the
// consumer reads it. Read View.Bytes in place when that is harmless; copy
// out first (View.CopyTo, View.Snapshot) when you validate and then act;
// use sealbuf.Sealed when the bytes must never change.
//
// Accept checks, before it maps anything, that the descriptor is a memfd
// sealed at least shrink|grow|future_write, exactly as large as the hello
// announces (slots × stride, the stride no wider than a slot rounded up to
// a page), and within WithMaxSize and the Conn's sealbuf.MaxSize policy. It
// does not populate the mapping: the consumer's memory grows as it reads
// slots, and a slot the producer never wrote reads as fresh zeroed pages.
// So a size limit bounds both the address space a producer can make the
// consumer map and the memory its reads can make the kernel allocate. Set
// one when the producer is not yours.
//
// # Hostile peers
//
// Every record from the peer is checked; one that breaks the protocol fails
// the call that reads it with an error matching ErrProtocol and a precise
// sentinel (ErrBadSlot, ErrBadLength, ErrStaleGeneration, ErrDoubleRelease,
// ErrSlotBusy). The message is dropped, nothing leaks, and the next call
// goes on. Over a unix stream socket a peer can also break the framing,
// after which no message boundary can be found: the next call reports
// ErrProtocol once, and later calls wait for the hang-up and return io.EOF.
// A consumer that hangs up or dies gives every slot back: the producer's
// Acquire, TryAcquire and Send then fail matching io.EOF.
//
// # Waiting, and futex pools
//
// Acquire waits while every slot is in use (TryAcquire fails with ErrFull
// instead), Receive until a message comes. ctx bounds both, and so do the
// deadlines set with the Conn's SetDeadline (not on its *net.UnixConn). How
// a side waits is the Conn's sealbuf.WithWait: spin, then wait in the
// kernel, then park in Go's netpoller; by default it parks at once.
//
// WithFutex makes a futex pool, for latency: records travel through a
// second shared memfd, a ring beside the slots, and a side that waits is
// woken by futex(2), so a message costs no system call while the peer
// keeps up. The consumer follows the hello. Both sides write the ring, so
// it cannot be sealed against writes; Accept refuses a ring on hugetlbfs,
// where a page punched out of it would fault the reader once the huge page
// pool is empty.
//
// # Wire format
//
// Every pool message is one sealbuf.Conn message (a packet over
// unixpacket, a frame over a unix stream socket), so any language with
// sendmsg and recvmsg can speak it (the Python package python/sealbuf
// does). Once, the hello: 32 bytes (magic "sbpool\x00\x01", slot count,
// header limit, slot size, stride) with the memfd. Then per message a
// 16-byte record — kind 'M', three zero bytes, slot index, generation,
// length, little-endian uint32s — followed by the caller's header; and
// back, 1 to 16 release records of kind 'R' (length 0) in one message.
// docs/pool.md has the details, the futex ring's layout and measurements.
package pool
