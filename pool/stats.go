//go:build linux

package pool

import (
	"errors"
	"io"
	"sync/atomic"

	"golang.org/x/sys/cpu"
)

// Stats are the counters of one side of a pool, from New or Accept on:
// cheap enough to be always on (atomic adds, no lock, no allocation per
// message), for a service to export. Each counter only grows, except
// MappedBytes. Writer.Stats and Reader.Stats fill the same type; a field
// says what it counts on each side, and is zero where it does not apply.
type Stats struct {
	// Messages: the Writer's messages sent (Send published them to the
	// consumer); the Reader's messages received (Receive returned a View).
	Messages uint64

	// Bytes: the slot bytes of those messages (Send's n, View.Len): what
	// went through shared memory with no copy.
	Bytes uint64

	// HeaderBytes: the caller's header bytes of those messages, which
	// travel with each record.
	HeaderBytes uint64

	// Releases: the Writer's slots given back by the consumer (release
	// records applied); the Reader's Views released with Release. A
	// message the Reader refuses is handed back without a View, so the
	// Writer may count more releases than the Reader.
	Releases uint64

	// Full (Writer): Acquire calls that waited for the consumer (every
	// slot was in use, and the releases already queued freed none, or
	// another goroutine was already reading them), and TryAcquire calls
	// that failed with ErrFull: how often the consumer held the producer
	// back. Each call counts once.
	Full uint64

	// ProtocolErrors: the protocol violations this side found in what
	// the peer sent, each counted once, when it is read: the errors
	// matching ErrProtocol. (A Reader returns each from Receive; a Writer
	// returns the first found in one read of releases from Acquire,
	// TryAcquire or WaitIdle.) The fields below break down those with a
	// precise sentinel; the rest (malformed records, descriptors
	// attached, a stream out of step) are counted only here. Local misuse
	// (a Slot sent twice, a View released twice) is not counted.
	ProtocolErrors uint64

	BadSlot         uint64 // ErrBadSlot: a slot index outside the pool
	BadLength       uint64 // ErrBadLength (Reader): a length past the slot's end
	StaleGeneration uint64 // ErrStaleGeneration: a record about an earlier use of a slot
	DoubleRelease   uint64 // ErrDoubleRelease (Writer): a slot released that was not in flight
	SlotBusy        uint64 // ErrSlotBusy (Reader): a slot sent again while a View holds it

	// ShortBuffer (Reader): messages dropped because their header was
	// longer than Receive's buffer (io.ErrShortBuffer; the slot was handed
	// back).
	ShortBuffer uint64

	// MappedBytes: the address space this side maps for the pool now:
	// the slots, and a futex pool's ring. It is not resident memory (the
	// Reader maps the slots without populating them). It drops to 0 at
	// Close.
	MappedBytes uint64
}

// counters are a pool side's Stats, updated with atomic adds: the sending
// and the receiving counters on separate cache lines, as they are
// usually updated by different goroutines.
type counters struct {
	messages, bytes, headerBytes atomic.Uint64
	full                         atomic.Uint64
	_                            cpu.CacheLinePad
	releases                     atomic.Uint64
	protocol                     atomic.Uint64
	badSlot, badLength           atomic.Uint64
	stale, double, busy          atomic.Uint64
	shortBuffer                  atomic.Uint64
	mapped                       atomic.Uint64
}

// message counts one message of n slot bytes and hn header bytes.
func (c *counters) message(n, hn int) {
	c.messages.Add(1)
	c.bytes.Add(uint64(n))
	c.headerBytes.Add(uint64(hn))
}

// refused counts an error this side returned, or kept for a later call,
// because of what the peer sent: protocol violations by sentinel, and
// headers too long for the caller's buffer. Other errors are not counted.
func (c *counters) refused(err error) {
	if err == nil {
		return
	}
	if !errors.Is(err, ErrProtocol) {
		if errors.Is(err, io.ErrShortBuffer) {
			c.shortBuffer.Add(1)
		}
		return
	}
	c.protocol.Add(1)
	switch {
	case errors.Is(err, ErrBadSlot):
		c.badSlot.Add(1)
	case errors.Is(err, ErrBadLength):
		c.badLength.Add(1)
	case errors.Is(err, ErrStaleGeneration):
		c.stale.Add(1)
	case errors.Is(err, ErrDoubleRelease):
		c.double.Add(1)
	case errors.Is(err, ErrSlotBusy):
		c.busy.Add(1)
	}
}

func (c *counters) load() Stats {
	return Stats{
		Messages:        c.messages.Load(),
		Bytes:           c.bytes.Load(),
		HeaderBytes:     c.headerBytes.Load(),
		Releases:        c.releases.Load(),
		Full:            c.full.Load(),
		ProtocolErrors:  c.protocol.Load(),
		BadSlot:         c.badSlot.Load(),
		BadLength:       c.badLength.Load(),
		StaleGeneration: c.stale.Load(),
		DoubleRelease:   c.double.Load(),
		SlotBusy:        c.busy.Load(),
		ShortBuffer:     c.shortBuffer.Load(),
		MappedBytes:     c.mapped.Load(),
	}
}

// Stats returns the producer's counters (see Stats), each read
// atomically without a lock (they are not one snapshot: a message being
// sent may be counted in Messages and not yet in Bytes). It is safe to
// call at any time, from any goroutine, also after Close, and allocates
// nothing.
func (p *Writer) Stats() Stats { return p.stats.load() }

// Stats returns the consumer's counters (see Stats), as Writer.Stats.
func (r *Reader) Stats() Stats { return r.stats.load() }
