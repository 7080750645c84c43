//go:build linux

package pool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/wire"
	"github.com/sealbuf/sealbuf/memfd"
)

// link is a pool's side of its Conn once the hello has gone: it sends and
// receives records through the transport (internal/wire) with no heap
// allocation per message. Its buffers and the operations handed to the
// transport are made once; every call fills fields and passes a cached
// method value, so nothing escapes per call. Sending holds the
// transport's SendMu, receiving its RecvMu.
type link struct {
	c *wire.Conn

	// Sending, under c.SendMu.
	sRec [poolRecordLen]byte

	// Release records held back (consumer), under relMu; relAny is
	// relN > 0, readable without the lock.
	relMu     sync.Mutex
	relBuf    [poolMaxBatch * poolRecordLen]byte
	relN      int
	relAny    atomic.Bool
	relTimer  *time.Timer // flushes what is held back after poolHoldBack
	relArmed  bool
	relClosed bool
	relErr    error // a timed flush that failed, for the next Release or Receive

	// queued is how many messages the consumer has read from the socket
	// and not handed out yet (packets: batch entries; streams: whole frames
	// buffered, 0 or 1).
	queued atomic.Int32

	// Reading up to poolDrain packets with one recvmmsg, under c.RecvMu:
	// release messages on the producer side; on the consumer side a batch
	// of messages that Receive hands out one by one. Entry i's bytes are
	// mmBuf[i*mmEntry:][:mmEntry].
	mm      [poolDrain]unix.Mmsghdr
	mmIov   [poolDrain]unix.Iovec
	mmOOB   [poolDrain][poolOOBLen]byte
	mmBuf   []byte
	mmEntry int
	mmN     int // entries filled by the last recvmmsg
	mmNext  int // next entry Receive hands out
	// mmAtt: what closeAttached said of each entry's control data, closed
	// as soon as the batch is read (an entry never handed out, at Close,
	// must not keep a peer's descriptors open).
	mmAtt [poolDrain]error
	mmOp  func(fd int) error

	// Stream input, buffered, under c.RecvMu: only the hello carries
	// descriptors, so reading past a frame's end is harmless.
	sb      []byte
	sbR     int
	sbW     int
	sbSkip  int
	sbStray int // descriptors received (and closed) since the last frame
	sbN     int
	sbOOBN  int
	sbFlags int
	sbOp    func(fd int) error
	rOOB    [poolOOBLen]byte // stream reads' control data
	broken  error            // a stream out of sync: no message can be found any more
	// brokenTold: Receive reported broken once; brokenEOF: then the hang-up.
	brokenTold bool
	brokenEOF  error

	flushFn func() bool // relAny.Load: a read stops to send held-back releases first

	// A futex pool's ring (WithFutex; nil otherwise), ring_link.go.
	ring        *poolRing
	ringDeliver func([]byte, error) // what the socket brings: hang-up, violations
	ringSockFn  func([]byte, error) // onRingSocket
	ringBuf     []byte              // release records taken (producer), under RecvMu
	ringKick    atomic.Bool         // interrupt this side's futex wait
	ringClosing atomic.Bool
	ringClosed  bool  // under c.SendMu: publish no more
	ringEOF     error // the producer hung up (consumer), under RecvMu
	ringNews    error // a violation on the socket, for the next Receive
}

const (
	poolDrain  = 16 // release packets read by one recvmmsg
	poolOOBLen = 64 // room for a few descriptors, to close what a peer attaches
)

// transport returns the transport under conn, and its receive policy's
// size limit.
func transport(conn *sealbuf.Conn) (*wire.Conn, int64, error) {
	if conn == nil {
		return nil, 0, errors.New("nil Conn")
	}
	w, maxSize, ok := wire.Unwrap(conn)
	if !ok {
		return nil, 0, errors.New("not a sealbuf Conn")
	}
	return w, maxSize, nil
}

// newLink prepares the link on w; entry is the largest message the peer
// may send (for the producer a release message, for the consumer a record
// and the largest header).
func newLink(w *wire.Conn, entry int) *link {
	l := &link{c: w}
	l.mmOp = l.recvmmsg
	l.sbOp = l.streamRead
	l.flushFn = l.relAny.Load
	if w.Stream() {
		l.sb = make([]byte, max(2*(wire.FrameLen+entry), 4096))
		return l
	}
	l.mmEntry = entry
	l.mmBuf = make([]byte, poolDrain*entry)
	for i := range l.mm {
		l.mmIov[i].Base = &l.mmBuf[i*entry]
		l.mmIov[i].SetLen(entry)
		l.mm[i].Hdr.Iov = &l.mmIov[i]
		l.mm[i].Hdr.SetIovlen(1)
		l.mm[i].Hdr.Control = &l.mmOOB[i][0]
	}
	return l
}

// sendHello sends the hello with the descriptors of files, each borrowed
// through its owner for the call.
func sendHello(w *wire.Conn, hello []byte, files []*memfd.File) error {
	w.SendMu.Lock()
	defer w.SendMu.Unlock()
	var borrow func(oob []byte, i int) error
	borrow = func(oob []byte, i int) error {
		if i == len(files) {
			return w.Send(context.Background(), nil, hello, oob, len(files), false)
		}
		return files[i].Control(func(fd int) error {
			return borrow(wire.AppendRights(oob, []int{fd}), i+1)
		})
	}
	return borrow(nil, 0)
}

// close closes the Conn, waits until no receive is running, and stops the
// context watcher.
//
// The Conn is closed first, with no lock held: that ends a send blocked on
// a full socket (a peer that stopped reading), which holds the locks the
// rest of close takes.
func (l *link) close() error {
	if l.ring != nil {
		l.ringClosing.Store(true)
		l.ringWakeAll()
	}
	err := l.c.Close()
	l.stopHoldBack()
	if l.ring != nil {
		l.c.SendMu.Lock()
		l.ringClosed = true
		l.c.SendMu.Unlock()
		l.c.RecvMu.Lock()
		if uerr := l.ring.unmap(); err == nil {
			err = uerr
		}
		l.c.RecvMu.Unlock()
	}
	return err
}

// --- sending ---

// sendRecord sends one record and header as one message; ctx (nil: none)
// bounds a wait for room on the socket.
func (l *link) sendRecord(ctx context.Context, r poolRecord, header []byte) error {
	if err := l.c.SendMu.LockContext(ctx); err != nil {
		return err // waiting behind another send (a Release blocked on a full socket)
	}
	defer l.c.SendMu.Unlock()
	r.put(l.sRec[:])
	return ioError("send", l.c.Send(ctx, l.sRec[:], header, nil, 0, false))
}

// poolHoldBack bounds how long a release is held back: a consumer that
// stops calling Receive with messages still waiting cannot keep slots
// from the producer for longer.
var poolHoldBack = 250 * time.Microsecond

// poolHoldBackRetry is how soon the hold-back timer tries again when the
// socket had no room (a producer that does not read its socket).
const poolHoldBackRetry = 10 * time.Millisecond

// release sends a release record, or holds it back while messages that
// the consumer has read already wait for Receive: it then goes with the
// next ones, in one message (at most poolMaxBatch records), at the latest
// when Receive finds nothing more to hand out, or after poolHoldBack.
func (l *link) release(r poolRecord) error {
	if l.ring != nil {
		return l.releaseNow(context.Background(), r)
	}
	l.relMu.Lock()
	defer l.relMu.Unlock()
	if err := l.relErr; err != nil {
		l.relErr = nil
		return err
	}
	r.put(l.relBuf[l.relN*poolRecordLen:])
	l.relN++
	l.relAny.Store(true) // before queued is read: see recvMessage
	if l.relN < poolMaxBatch && l.queued.Load() > 0 && !l.relClosed {
		if !l.relArmed {
			l.relArmed = true
			if l.relTimer == nil {
				l.relTimer = time.AfterFunc(poolHoldBack, l.timedFlush)
			} else {
				l.relTimer.Reset(poolHoldBack)
			}
		}
		return nil
	}
	return l.flushLocked(context.Background(), false)
}

// timedFlush sends what is held back when poolHoldBack has passed.
//
// It never waits for room on the socket: against a producer that does not
// read it, it would wait for ever holding relMu, and with it every
// Receive, whose flush before it waits takes relMu (its ctx would not
// help). A full socket keeps the records held, and the timer tries again.
func (l *link) timedFlush() {
	l.relMu.Lock()
	defer l.relMu.Unlock()
	l.relArmed = false
	if l.relClosed {
		return
	}
	switch err := l.flushLocked(context.Background(), true); {
	case errors.Is(err, wire.ErrWouldBlock):
		l.relArmed = true
		l.relTimer.Reset(poolHoldBackRetry)
	case err != nil && l.relErr == nil && !errors.Is(err, io.EOF):
		l.relErr = err
	}
}

// stopHoldBack stops the flush timer for good (Close).
func (l *link) stopHoldBack() {
	l.relMu.Lock()
	defer l.relMu.Unlock()
	l.relClosed = true
	if l.relTimer != nil {
		l.relTimer.Stop()
	}
}

// flushReleases sends the queued release records, if any; ctx (nil: none)
// bounds a wait for room on the socket.
func (l *link) flushReleases(ctx context.Context) error {
	if !l.relAny.Load() {
		return nil
	}
	l.relMu.Lock()
	defer l.relMu.Unlock()
	return l.flushLocked(ctx, false)
}

// flushBeforeWait sends the releases held back before a read waits, under
// ctx. It reports busy when another goroutine holds them (a Release or the
// hold-back timer sending them, maybe blocked on a full socket): the read
// then waits without flushing, rather than wait for that send past ctx.
func (l *link) flushBeforeWait(ctx context.Context) (busy bool, err error) {
	if !l.relMu.TryLock() {
		return true, nil
	}
	defer l.relMu.Unlock()
	return false, l.flushLocked(ctx, false)
}

// flushLocked sends the queued release records; with noWait, a socket
// with no room (or another send in progress) keeps them queued and returns
// wire.ErrWouldBlock. The caller holds relMu.
func (l *link) flushLocked(ctx context.Context, noWait bool) error {
	if l.relN == 0 {
		return nil
	}
	if noWait {
		if !l.c.SendMu.TryLock() {
			return wire.ErrWouldBlock // another send holds the Conn: try again later
		}
	} else if err := l.c.SendMu.LockContext(ctx); err != nil {
		return err
	}
	err := ioError("send releases", l.c.Send(ctx, l.relBuf[:l.relN*poolRecordLen], nil, nil, 0, noWait))
	l.c.SendMu.Unlock()
	if err == nil || errors.Is(err, io.EOF) { // a producer that is gone needs none
		l.relN = 0
		l.relAny.Store(false)
		if l.relArmed {
			l.relArmed = false
			l.relTimer.Stop()
		}
	}
	return err
}

// --- receiving one message (consumer) ---

// recvMessage reads the next message: its record into rec and its header
// into header. hn is the header's length. recOK reports that rec holds an
// intact record even though err is set (a header too long for the buffer,
// descriptors attached), so the caller can hand the slot back.
//
// Over packets it reads every message queued on the socket at once (up to
// poolDrain) and hands them out one per call. Before it waits for more it
// sends the releases held back: the consumer never waits while it keeps
// slots from the producer. (release stores relAny before it loads queued,
// recvMessage stores queued before it loads relAny: one of them sees the
// other, so a held-back release is never forgotten.)
func (l *link) recvMessage(ctx context.Context, header []byte) (rec poolRecord, hn int, recOK bool, err error) {
	if err := l.c.RecvMu.LockContext(ctx); err != nil {
		return rec, 0, false, err // waiting behind another Receive
	}
	defer l.c.RecvMu.Unlock()
	if l.ring != nil {
		return l.ringRecv(ctx, header)
	}
	if l.c.Stream() {
		return l.recvFrame(ctx, header)
	}
	if l.mmNext >= l.mmN {
		l.mmN, l.mmNext = 0, 0
		if err = l.readBatch(ctx, wire.ReadWait); err != nil {
			return rec, 0, false, ioError("receive", err)
		}
	}
	i := l.mmNext
	l.mmNext++
	l.queued.Store(int32(l.mmN - l.mmNext))
	h := &l.mm[i]
	n, oobn, flags := int(h.Len), int(h.Hdr.Controllen), int(h.Hdr.Flags)
	buf := l.mmBuf[i*l.mmEntry:][:n]
	if n == 0 && oobn == 0 && flags&unix.MSG_CTRUNC == 0 {
		return rec, 0, false, fmt.Errorf("pool: the producer hung up: %w", io.EOF)
	}
	rec, err = parsePoolRecord(buf[:min(n, poolRecordLen)], poolKindMessage)
	recOK = err == nil
	if ferr := l.mmAtt[i]; ferr != nil {
		l.mmAtt[i] = nil
		return rec, 0, recOK, ferr
	}
	if err != nil {
		return rec, 0, false, err
	}
	if flags&unix.MSG_TRUNC != 0 {
		return rec, 0, true, poolProtoError(nil, "a header longer than the %d bytes the producer announced (message dropped, slot handed back)", l.mmEntry-poolRecordLen)
	}
	hn = n - poolRecordLen
	if hn > len(header) {
		return rec, len(header), true, fmt.Errorf("pool: receive: %d-byte header, larger than the %d-byte buffer (message dropped, slot handed back): %w", hn, len(header), io.ErrShortBuffer)
	}
	copy(header, buf[poolRecordLen:])
	return rec, hn, true, nil
}

// readBatch fills the batch with one recvmmsg, waiting as mode says. A
// wait first sends the releases held back (under ctx). The caller holds
// c.RecvMu.
func (l *link) readBatch(ctx context.Context, mode wire.ReadMode) error {
	flush := l.flushFn
	for {
		l.mmN = 0
		err := l.c.Read(ctx, "recvmmsg", l.mmOp, mode, flush)
		for i := range l.mmN {
			h := &l.mm[i]
			l.mmAtt[i] = closeAttached(l.mmOOB[i][:h.Hdr.Controllen], int(h.Hdr.Flags))
		}
		if err != wire.ErrFlush {
			return err
		}
		busy, err := l.flushBeforeWait(ctx)
		if err != nil {
			return err
		}
		if busy {
			flush = nil
		}
	}
}

func (l *link) recvmmsg(fd int) error {
	for i := range l.mm {
		l.mm[i].Hdr.SetControllen(poolOOBLen)
		l.mm[i].Hdr.Flags = 0
		l.mm[i].Len = 0
	}
	n, err := wire.Recvmmsg(fd, l.mm[:])
	l.mmN = n
	return err
}

// closeAttached closes every descriptor a peer attached to a pool message
// (only the hello may carry one), and those the receiver's own socket
// options added, and reports the peer's.
func closeAttached(oob []byte, flags int) error {
	if len(oob) == 0 && flags&unix.MSG_CTRUNC == 0 {
		return nil
	}
	var buf, other [poolOOBLen / 4]int
	fds, others, err := wire.ParseControl(oob, buf[:0], other[:0])
	wire.CloseFds(fds)
	wire.CloseFds(others)
	if len(fds) == 0 && err == nil && flags&unix.MSG_CTRUNC == 0 {
		return nil // only what our own socket options added
	}
	return poolProtoError(nil, "the peer attached descriptors to a pool message (%d received, all closed)", len(fds))
}

// --- draining releases (producer) ---

// drain reads release messages: with wait, it blocks (under ctx) until at
// least one message or an error arrives; without, it takes only what is
// queued. It calls fn for every message payload (or per-message error) and
// returns the error that stopped reading, if any. The caller must not hold
// c.RecvMu.
func (l *link) drain(ctx context.Context, wait bool, fn func(payload []byte, err error)) error {
	l.c.RecvMu.Lock()
	defer l.c.RecvMu.Unlock()
	if l.ring != nil {
		return l.ringDrain(ctx, wait, fn)
	}
	mode := wire.ReadNow
	if wait {
		mode = wire.ReadWait
	}
	return l.drainLocked(ctx, mode, fn)
}

// drainQueued is drain without waiting, as cheap as it can be: a futex
// pool takes what its ring holds and makes no system call (the socket,
// which carries only wake-ups and the hang-up, is left for the wait).
func (l *link) drainQueued(fn func(payload []byte, err error)) error {
	if l.ring == nil {
		return l.drain(context.Background(), false, fn)
	}
	l.c.RecvMu.Lock()
	defer l.c.RecvMu.Unlock()
	if l.ring.mem == nil { // Close unmapped it, under RecvMu
		return fmt.Errorf("pool: %w", os.ErrClosed)
	}
	l.ringTake(fn)
	return nil
}

// drainLocked is drain on the socket; the caller holds c.RecvMu.
func (l *link) drainLocked(ctx context.Context, mode wire.ReadMode, fn func(payload []byte, err error)) error {
	if l.c.Stream() {
		return l.drainStream(ctx, mode, fn)
	}
	l.mmN = 0
	err := l.c.Read(ctx, "recvmmsg", l.mmOp, mode, nil)
	if err == wire.ErrWouldBlock {
		err = nil
	}
	for i := range l.mmN {
		h := &l.mm[i]
		n, oobn, flags := int(h.Len), int(h.Hdr.Controllen), int(h.Hdr.Flags)
		switch {
		case n == 0 && oobn == 0 && flags&unix.MSG_CTRUNC == 0:
			fn(nil, fmt.Errorf("the consumer hung up: %w", io.EOF))
		case oobn > 0 || flags&unix.MSG_CTRUNC != 0:
			if err := closeAttached(l.mmOOB[i][:oobn], flags); err != nil {
				fn(nil, err)
			} else if n == 0 {
				fn(nil, fmt.Errorf("the consumer hung up: %w", io.EOF))
			} else if flags&unix.MSG_TRUNC != 0 {
				fn(nil, poolProtoError(nil, "a release message longer than %d records", poolMaxBatch))
			} else {
				fn(l.mmBuf[i*l.mmEntry:][:n], nil)
			}
		case flags&unix.MSG_TRUNC != 0:
			fn(nil, poolProtoError(nil, "a release message longer than %d records", poolMaxBatch))
		default:
			fn(l.mmBuf[i*l.mmEntry:][:n], nil)
		}
	}
	return ioError("receive releases", err)
}

// --- streams ---

// recvFrame is recvMessage on a stream socket.
func (l *link) recvFrame(ctx context.Context, header []byte) (rec poolRecord, hn int, recOK bool, err error) {
	if l.broken != nil && l.brokenTold {
		// The framing broke and Receive said so once: no message can be
		// found any more, only the hang-up. Wait for it (under ctx).
		for {
			if err := l.drainBroken(ctx, wire.ReadWait, l.onBrokenEOF); err != nil {
				return rec, 0, false, err
			}
			if l.brokenEOF != nil {
				return rec, 0, false, l.brokenEOF
			}
		}
	}
	for {
		payload, ok, ferr := l.nextFrame()
		if ferr != nil && payload == nil {
			l.brokenTold = l.broken != nil
			return rec, 0, false, ferr
		}
		if ok {
			l.queued.Store(l.framesBuffered())
			rec, err = parsePoolRecord(payload, poolKindMessage)
			if err != nil {
				return rec, 0, false, err
			}
			if ferr != nil {
				return rec, 0, true, ferr
			}
			hn = copy(header, payload[poolRecordLen:])
			if hn < len(payload)-poolRecordLen {
				return rec, hn, true, fmt.Errorf("pool: receive: %d-byte header, larger than the %d-byte buffer (message dropped, slot handed back): %w", len(payload)-poolRecordLen, len(header), io.ErrShortBuffer)
			}
			return rec, hn, true, nil
		}
		if _, err := l.fillStream(ctx, wire.ReadWait, true); err != nil {
			return rec, 0, false, err
		}
	}
}

// drainStream is drain on a stream socket.
func (l *link) drainStream(ctx context.Context, mode wire.ReadMode, fn func([]byte, error)) error {
	if l.broken != nil {
		return l.drainBroken(ctx, mode, fn)
	}
	delivered := l.deliverFrames(fn)
	for l.broken == nil {
		m := mode
		if delivered {
			m = wire.ReadNow
		}
		n, err := l.fillStream(ctx, m, false)
		switch {
		case errors.Is(err, io.EOF):
			fn(nil, err)
			return nil
		case errors.Is(err, ErrProtocol):
			fn(nil, err)
			delivered = true
		case err != nil:
			return err
		case n == 0:
			return nil // nothing more queued
		}
		if l.deliverFrames(fn) {
			delivered = true
		}
	}
	return nil
}

// drainBroken reads a stream after its framing broke (a peer that broke
// the protocol). No message can be found any more, but the hang-up must
// still be seen: read and discard, and pass on the end of file. A futex
// pool still carries its messages in the ring; a socket pool has nothing
// left but the hang-up.
func (l *link) drainBroken(ctx context.Context, mode wire.ReadMode, fn func([]byte, error)) error {
	l.sbR, l.sbW, l.sbSkip = 0, 0, 0
	_, err := l.fillStream(ctx, mode, false)
	l.sbR, l.sbW = 0, 0
	if errors.Is(err, io.EOF) {
		fn(nil, err)
		return nil
	}
	return err
}

// onBrokenEOF keeps the hang-up drainBroken found.
func (l *link) onBrokenEOF(_ []byte, err error) {
	if err != nil && l.brokenEOF == nil {
		l.brokenEOF = fmt.Errorf("pool: the producer hung up: %w", io.EOF)
	}
}

// deliverFrames passes every whole buffered frame to fn.
func (l *link) deliverFrames(fn func([]byte, error)) bool {
	delivered := false
	for l.broken == nil {
		payload, ok, err := l.nextFrame()
		if !ok && err == nil {
			break
		}
		fn(payload, err)
		delivered = true
	}
	return delivered
}

// framesBuffered returns 1 if a whole frame is buffered, else 0.
func (l *link) framesBuffered() int32 {
	avail := l.sb[l.sbR:l.sbW]
	if l.sbSkip > 0 || len(avail) < wire.FrameLen || avail[6] != 'S' || avail[7] != 'B' {
		return 0
	}
	if size := int64(binary.LittleEndian.Uint32(avail)); size <= int64(len(avail)-wire.FrameLen) {
		return 1
	}
	return 0
}

// nextFrame takes the next whole frame out of the buffer. ok reports that
// a frame was consumed (err may still be set: a frame this pool refuses);
// neither means more input is needed.
func (l *link) nextFrame() (payload []byte, ok bool, err error) {
	if l.broken != nil {
		return nil, false, l.broken
	}
	if l.sbSkip > 0 {
		k := min(l.sbSkip, l.sbW-l.sbR)
		l.sbR += k
		l.sbSkip -= k
		if l.sbSkip > 0 {
			return nil, false, nil
		}
	}
	avail := l.sb[l.sbR:l.sbW]
	if len(avail) < wire.FrameLen {
		return nil, false, nil
	}
	f, err := wire.ParseFrame(avail[:wire.FrameLen])
	if err != nil {
		l.broken = poolProtoError(nil, "stream out of sync, no message boundary can be found (%v)", err)
		return nil, false, l.broken
	}
	total := wire.FrameLen + f.HeaderLen
	if total > len(l.sb) {
		l.sbR += wire.FrameLen
		l.sbSkip = f.HeaderLen
		return nil, true, poolProtoError(nil, "a %d-byte message, more than this pool's messages can be (skipped)", f.HeaderLen)
	}
	if len(avail) < total {
		return nil, false, nil
	}
	l.sbR += total
	payload = avail[wire.FrameLen:total]
	if f.Files != 0 || l.sbStray > 0 {
		err = poolProtoError(nil, "the peer attached descriptors to a pool message (%d received, all closed)", l.sbStray)
		l.sbStray = 0
		return payload, true, err
	}
	return payload, true, nil
}

// fillStream reads what the socket has into the buffer, waiting (under
// ctx) as mode says; flush: a wait first sends the releases held back. It
// returns how many bytes it read: 0 means nothing was queued (ReadNow).
func (l *link) fillStream(ctx context.Context, mode wire.ReadMode, flush bool) (int, error) {
	if l.sbR > 0 {
		l.sbW = copy(l.sb, l.sb[l.sbR:l.sbW])
		l.sbR = 0
	}
	if l.sbW == len(l.sb) {
		return 0, nil
	}
	var fl func() bool
	if flush {
		fl = l.flushFn
	}
	var err error
	for {
		l.sbN, l.sbOOBN, l.sbFlags = -1, 0, 0
		err = l.c.Read(ctx, "recvmsg", l.sbOp, mode, fl)
		if err != wire.ErrFlush {
			break
		}
		var busy bool
		if busy, err = l.flushBeforeWait(ctx); err != nil {
			break
		}
		if busy {
			fl = nil
		}
	}
	if err == wire.ErrWouldBlock {
		return 0, nil // nothing queued
	}
	if err != nil {
		return 0, ioError("receive", err)
	}
	if l.sbOOBN > 0 || l.sbFlags&unix.MSG_CTRUNC != 0 {
		// Descriptors come with a frame's first byte: the frame they
		// came with reports them once it is whole.
		var buf, other [poolOOBLen / 4]int
		fds, others, perr := wire.ParseControl(l.rOOB[:l.sbOOBN], buf[:0], other[:0])
		wire.CloseFds(fds)
		wire.CloseFds(others)
		if len(fds) > 0 || perr != nil || l.sbFlags&unix.MSG_CTRUNC != 0 {
			l.sbStray += max(len(fds), 1)
		}
	}
	if l.sbN == 0 {
		return 0, fmt.Errorf("pool: the peer hung up: %w", io.EOF)
	}
	l.sbW += l.sbN
	return l.sbN, nil
}

func (l *link) streamRead(fd int) error {
	n, oobn, flags, err := wire.Recvmsg(fd, l.sb[l.sbW:], l.rOOB[:], 0)
	if err == nil {
		l.sbN, l.sbOOBN, l.sbFlags = n, oobn, flags
	}
	return err
}

// ioError translates a transport error for the pool's callers: a peer that
// hung up matches io.EOF, a closed Conn os.ErrClosed; context errors, the
// pool's own and wire's sentinels, and errors translated already pass
// unchanged.
func ioError(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, wire.ErrKicked), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, ErrProtocol), errors.Is(err, wire.ErrWouldBlock), err == io.EOF:
		return err
	case strings.HasPrefix(err.Error(), "pool: "): // translated already (a futex pool's wait)
		return err
	case errors.Is(err, os.ErrClosed):
		return fmt.Errorf("pool: %s: %w", op, os.ErrClosed)
	}
	return fmt.Errorf("pool: %s: %w", op, err)
}
