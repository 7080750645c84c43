//go:build linux

package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sealbuf/sealbuf/internal/futex"
	"github.com/sealbuf/sealbuf/internal/wire"
)

// The link's side of a futex pool (ring.go): publishing into the
// ring, taking from it, and waiting for the peer.

// poolFutexWait is how long a futex pool waits in futex(2) before it parks
// on the socket, when its Conn's Wait has no Kernel part. The wait is then an
// ordinary blocking system call: the runtime hands the P to other
// goroutines after 20 µs.
const poolFutexWait = time.Millisecond

// ringSetup makes the link carry its records through ring; deliver gets
// what the socket brings meanwhile (a hang-up, a protocol violation).
func (l *link) ringSetup(ring *poolRing, deliver func([]byte, error)) {
	l.ring = ring
	l.ringDeliver = deliver
	l.ringSockFn = l.onRingSocket
	l.ringBuf = make([]byte, 0, int(ring.slots)*poolRecordLen)
}

// sendMessage sends a message record and header: into the ring, or over
// the socket. published reports that the consumer can read the message
// even though err is set (only the wake-up failed).
func (l *link) sendMessage(rec poolRecord, header []byte) (published bool, err error) {
	if l.ring == nil {
		err = l.sendRecord(context.Background(), rec, header)
		return err == nil, err
	}
	return l.ringPublish(rec, header)
}

// releaseNow sends a release record at once: into the ring, or over the
// socket, where ctx (nil: none) bounds a wait for room.
func (l *link) releaseNow(ctx context.Context, rec poolRecord) error {
	if l.ring == nil {
		return l.sendRecord(ctx, rec, nil)
	}
	_, err := l.ringPublish(rec, nil)
	return err
}

// ringPublish writes a record (a message with its header, or a release)
// into this side's ring, publishes it and wakes the peer if it waits.
func (l *link) ringPublish(rec poolRecord, header []byte) (published bool, err error) {
	l.c.SendMu.Lock()
	if l.ringClosed {
		l.c.SendMu.Unlock()
		return false, fmt.Errorf("pool: %w", os.ErrClosed)
	}
	if rec.kind == poolKindMessage {
		l.ring.publishMessage(rec, header)
	} else {
		l.ring.publishRelease(rec)
	}
	wake := l.ring.claimWake()
	l.c.SendMu.Unlock()
	return true, l.wakePeer(wake)
}

// wakePeer wakes the peer as claimWake decided: in futex(2), or parked
// on the socket.
func (l *link) wakePeer(wake uint32) error {
	switch wake {
	case ringFutex:
		// After Close the ring may be unmapped: the call then fails
		// with EFAULT, which is harmless.
		futex.Wake(l.ring.peerState, 1)
	case ringSocket:
		l.c.SendMu.Lock()
		defer l.c.SendMu.Unlock()
		poolRecord{kind: poolKindWake}.put(l.sRec[:])
		// A wake-up record that finds the socket full is not needed: the
		// records queued there wake the peer.
		if err := l.c.Send(context.Background(), l.sRec[:], nil, nil, 0, true); err != wire.ErrWouldBlock {
			return ioError("wake the peer", err)
		}
		return nil
	}
	return nil
}

// ringKickWaiter interrupts this side's own wait (a slot freed locally,
// Close): the flag for a waiter on its way, the state word for one in
// futex(2) (which then returns at once, or does not sleep at all). The
// caller makes sure the ring is still mapped.
func (l *link) ringKickWaiter() {
	l.ringKick.Store(true)
	if l.ring.myState.CompareAndSwap(ringFutex, ringRunning) {
		futex.Wake(l.ring.myState, 1)
	}
}

// kick interrupts a blocked wait for releases: a slot came back locally.
func (l *link) kick() {
	if l.ring != nil {
		l.ringKickWaiter()
	}
	l.c.Kick()
}

// ringWakeAll wakes this side's waiter and the peer's (which then finds
// the hang-up on the socket), as Close begins.
func (l *link) ringWakeAll() {
	l.ringKickWaiter()
	if l.ring.claimWake() == ringFutex {
		futex.Wake(l.ring.peerState, 1)
	}
}

// ringWait waits until the peer publishes past what this side took: in
// futex(2) on its own state word for the link's wait, then parked on the
// socket, where the peer's wake-up record, a hang-up, a kick or ctx ends
// the wait. It may also return nil with nothing new (a wake-up that
// raced, Close): the caller looks again. The caller holds c.recvMu.
func (l *link) ringWait(ctx context.Context) error {
	r := l.ring
	seen := r.taken
	if r.peerHead.Load() != seen {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	wait := l.c.Wait()
	if wait.Spin > 0 {
		var spin wire.Spinner
		for spin.Start(wait.Spin); spin.Next(); {
			if r.peerHead.Load() != seen || l.ringKick.Load() || l.ringClosing.Load() {
				break
			}
		}
		if r.peerHead.Load() != seen {
			return nil
		}
	}
	d, raw := wait.Kernel, true
	if d <= 0 {
		d, raw = poolFutexWait, false
	}
	r.myState.Store(ringFutex)
	if r.peerHead.Load() == seen && !l.ringKick.Load() && !l.ringClosing.Load() {
		futex.Wait(r.myState, ringFutex, d, raw)
	}
	if l.ringKick.Swap(false) && !l.ringClosing.Load() {
		r.myState.Store(ringRunning)
		return wire.ErrKicked
	}
	if r.peerHead.Load() != seen {
		r.myState.Store(ringRunning)
		return nil
	}
	// Nothing new. Still ringFutex: the wait ran out, and the swap keeps a
	// publisher from waking the futex from now on. Anything else: someone
	// woke us without publishing — the peer's Close, most likely (or a
	// peer writing our state word): the socket says why, so park there at
	// once rather than wait in futex(2) again.
	if !r.myState.CompareAndSwap(ringFutex, ringSocket) {
		r.myState.Store(ringSocket)
	}
	if r.peerHead.Load() != seen {
		r.myState.Store(ringRunning)
		return nil
	}
	err := l.drainLocked(ctx, wire.ReadPark, l.ringSockFn)
	r.myState.Store(ringRunning)
	return err
}

// onRingSocket takes a message that came over the socket of a futex pool:
// only wake-up records travel there; anything else, and the hang-up, go
// to ringDeliver.
func (l *link) onRingSocket(payload []byte, err error) {
	if err == nil {
		if _, perr := parsePoolRecord(payload, poolKindWake); perr != nil || len(payload) != poolRecordLen {
			err = poolProtoError(nil, "a %d-byte message on the socket of a futex pool, where only 16-byte wake-up records travel", len(payload))
		}
	}
	if err != nil {
		l.ringDeliver(nil, err)
	}
}

// ringDrain is drain for a futex pool (producer): it passes the pending
// release records to fn; without any, and with wait, it waits first. The
// caller holds c.recvMu.
func (l *link) ringDrain(ctx context.Context, wait bool, fn func([]byte, error)) error {
	if l.ring.mem == nil { // Close unmapped it, under recvMu
		return fmt.Errorf("pool: %w", os.ErrClosed)
	}
	if l.ringTake(fn) {
		return nil
	}
	var err error
	if wait {
		err = l.ringWait(ctx)
	} else {
		err = l.drainLocked(ctx, wire.ReadNow, l.ringSockFn) // a hang-up, at least
	}
	l.ringTake(fn)
	return err
}

// ringTake passes the pending release records to fn and reports whether
// there were any (or an error).
func (l *link) ringTake(fn func([]byte, error)) bool {
	recs, err := l.ring.takeReleases(l.ringBuf)
	if err != nil {
		fn(nil, err)
		return true
	}
	if len(recs) > 0 {
		fn(recs, nil)
		return true
	}
	return false
}

// ringRecv is recvMessage for a futex pool (consumer). The caller holds
// c.recvMu.
func (l *link) ringRecv(ctx context.Context, header []byte) (rec poolRecord, hn int, recOK bool, err error) {
	if l.ring.mem == nil { // Close unmapped it, under recvMu
		return rec, 0, false, fmt.Errorf("pool: receive: %w", os.ErrClosed)
	}
	for {
		rec, hn, ok, recOK, err := l.ring.takeMessage(header)
		if ok {
			return rec, hn, recOK, err
		}
		if err := l.ringNews; err != nil {
			l.ringNews = nil
			return rec, 0, false, err
		}
		if l.ringEOF != nil {
			return rec, 0, false, l.ringEOF
		}
		if err := l.ringWait(ctx); err != nil {
			return rec, 0, false, ioError("receive", err)
		}
	}
}

// onConsumerNews keeps what the socket of a consumer's futex pool brought:
// the producer's hang-up for good, a protocol violation for the next
// Receive.
func (l *link) onConsumerNews(_ []byte, err error) {
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		if l.ringEOF == nil {
			l.ringEOF = fmt.Errorf("pool: the producer hung up: %w", io.EOF)
		}
	case l.ringNews == nil:
		l.ringNews = err
	}
}
