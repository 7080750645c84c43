//go:build linux

package sealbuf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/sealbuf/sealbuf/internal/scm"
	"golang.org/x/sys/unix"
)

// poolLink is a pool's side of its Conn once the hello has gone: it sends
// and receives records with no heap allocation per message. Its buffers and
// the callbacks handed to the RawConn are made once; every call fills
// fields and passes a cached method value, so nothing escapes per call.
// Sending holds the Conn's sendMu, receiving its recvMu, so a pool never
// interleaves with another user of the Conn.
type poolLink struct {
	c      *Conn
	rc     syscall.RawConn
	stream bool
	w      poolWaiter

	// Sending, under c.sendMu.
	sFrame [scm.FrameLen]byte
	sRec   [poolRecordLen]byte
	sParts [3][]byte
	sErr   error
	// sNoWait: a send that finds the socket full gives up (wake-up
	// records), unless sPartial: part of the message went out.
	sNoWait  bool
	sPartial bool
	sFn      func(uintptr) bool

	// Release records held back (consumer), under relMu; relAny is
	// relN > 0, readable without the lock.
	relMu     sync.Mutex
	relBuf    [poolMaxBatch * poolRecordLen]byte
	relN      int
	relAny    atomic.Bool
	relTimer  *time.Timer // flushes what is held back after poolHoldBack
	relArmed  bool
	relClosed bool

	// queued is how many messages the consumer has read from the socket
	// and not handed out yet (packets: ring entries; streams: whole frames
	// buffered, 0 or 1).
	queued atomic.Int32

	// Reading up to poolDrain packets with one recvmmsg, under c.recvMu:
	// release messages on the producer side; on the consumer side a ring
	// of messages that Receive hands out one by one. Entry i's bytes are
	// mmBuf[i*mmEntry:][:mmEntry].
	mm      [poolDrain]unix.Mmsghdr
	mmIov   [poolDrain]unix.Iovec
	mmOOB   [poolDrain][poolOOBLen]byte
	mmBuf   []byte
	mmEntry int
	mmN     int // entries filled by the last recvmmsg
	mmNext  int // next entry Receive hands out
	mmErr   error
	mmWait  bool
	mmFlush bool // the read found nothing while releases were held back
	mmFn    func(uintptr) bool
	rOOB    [poolOOBLen]byte // stream reads' control data

	// Stream input, buffered, under c.recvMu: only the hello carries
	// descriptors, so reading past a frame's end is harmless.
	sb      []byte
	sbR     int
	sbW     int
	sbSkip  int
	sbStray int // descriptors received (and closed) since the last frame
	sbWait  bool
	sbN     int
	sbOOBN  int
	sbFlags int
	sbErr   error
	sbFlush bool
	sbFn    func(uintptr) bool
	broken  error // a stream out of sync: every later read fails with it

	// polled: this blocking read already waited in ppoll (WithBlockingWait).
	polled bool

	// A futex pool's ring (WithPoolFutex; nil otherwise), pool_ring_link.go.
	ring        *poolRing
	ringDeliver func([]byte, error) // what the socket brings: hang-up, violations
	ringSockFn  func([]byte, error) // onRingSocket
	ringBuf     []byte              // release records taken (producer), under recvMu
	ringKick    atomic.Bool         // interrupt this side's futex wait
	ringClosing atomic.Bool
	ringClosed  bool  // under c.sendMu: publish no more
	ringEOF     error // the producer hung up (consumer), under recvMu
	ringNews    error // a violation on the socket, for the next Receive
}

const (
	poolDrain  = 16 // release packets read by one recvmmsg
	poolOOBLen = 64 // room for a few descriptors, to close what a peer attaches
)

// newPoolLink prepares the link; entry is the largest message the peer
// may send (for the producer a release message, for the consumer a record
// and the largest header).
func newPoolLink(c *Conn, entry int) (*poolLink, error) {
	rc, err := c.c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("sealbuf: pool: %w", err)
	}
	l := &poolLink{c: c, rc: rc, stream: c.stream}
	l.w.conn = c.c
	l.sFn = l.doSend
	l.mmFn = l.doRecvmmsg
	l.sbFn = l.doStreamRead
	if l.stream {
		l.sb = make([]byte, max(2*(scm.FrameLen+entry), 4096))
		return l, nil
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
	return l, nil
}

// close closes the Conn, waits until no receive is running, and stops the
// context watcher.
//
// The Conn is closed first, with no lock held: that ends a send blocked on
// a full socket (a peer that stopped reading), which holds the locks the
// rest of close takes.
func (l *poolLink) close() error {
	if l.ring != nil {
		l.ringClosing.Store(true)
		l.ringWakeAll()
	}
	err := l.c.Close()
	l.stopHoldBack()
	if l.ring != nil {
		l.c.sendMu.Lock()
		l.ringClosed = true
		l.c.sendMu.Unlock()
	}
	l.c.recvMu.Lock()
	l.w.stop()
	if l.ring != nil {
		if uerr := l.ring.unmap(); err == nil {
			err = uerr
		}
	}
	l.c.recvMu.Unlock()
	return err
}

// --- sending ---

// send sends one message of the bytes of a then b. The caller holds
// c.sendMu.
func (l *poolLink) send(a, b []byte) error {
	l.sParts = [3][]byte{nil, a, b}
	if l.stream {
		l.sParts[0] = scm.Frame{HeaderLen: len(a) + len(b)}.Append(l.sFrame[:0])
	}
	l.sErr, l.sPartial = nil, false
	err := l.rc.Write(l.sFn)
	l.sParts = [3][]byte{}
	if err == nil {
		err = l.sErr
	}
	if err != nil {
		return poolIOError("send", err)
	}
	return nil
}

// sendRecord sends one record and header as one message.
func (l *poolLink) sendRecord(r poolRecord, header []byte) error {
	l.c.sendMu.Lock()
	defer l.c.sendMu.Unlock()
	r.put(l.sRec[:])
	return l.send(l.sRec[:], header)
}

// poolHoldBack bounds how long a release is held back: a consumer that
// stops calling Receive with messages still waiting cannot keep slots
// from the producer for longer.
var poolHoldBack = 250 * time.Microsecond

// release sends a release record, or holds it back while messages that
// the consumer has read already wait for Receive: it then goes with the
// next ones, in one message (at most poolMaxBatch records), at the latest
// when Receive finds nothing more to hand out, or after poolHoldBack.
func (l *poolLink) release(r poolRecord) error {
	if l.ring != nil {
		return l.releaseNow(r)
	}
	l.relMu.Lock()
	defer l.relMu.Unlock()
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
	return l.flushLocked()
}

// timedFlush sends what is held back when poolHoldBack has passed.
func (l *poolLink) timedFlush() {
	l.relMu.Lock()
	defer l.relMu.Unlock()
	l.relArmed = false
	if !l.relClosed {
		l.flushLocked() // an error stays for the next Release or Receive to meet
	}
}

// stopHoldBack stops the flush timer for good (Close).
func (l *poolLink) stopHoldBack() {
	l.relMu.Lock()
	defer l.relMu.Unlock()
	l.relClosed = true
	if l.relTimer != nil {
		l.relTimer.Stop()
	}
}

// flushReleases sends the queued release records, if any.
func (l *poolLink) flushReleases() error {
	if !l.relAny.Load() {
		return nil
	}
	l.relMu.Lock()
	defer l.relMu.Unlock()
	return l.flushLocked()
}

func (l *poolLink) flushLocked() error {
	if l.relN == 0 {
		return nil
	}
	l.c.sendMu.Lock()
	err := l.send(l.relBuf[:l.relN*poolRecordLen], nil)
	l.c.sendMu.Unlock()
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

func (l *poolLink) doSend(fd uintptr) bool {
	for {
		n, err := scm.Sendmsg(int(fd), l.sParts[:], nil)
		if err == unix.EAGAIN {
			// A wake-up record that finds the socket full is not needed:
			// the records queued there wake the peer. Unless part of its
			// frame went out already.
			return l.sNoWait && !l.sPartial
		}
		if err != nil {
			l.sErr = os.NewSyscallError("sendmsg", err)
			return true
		}
		l.sPartial = true
		for i := range l.sParts {
			k := min(n, len(l.sParts[i]))
			l.sParts[i] = l.sParts[i][k:]
			n -= k
		}
		if len(l.sParts[0])+len(l.sParts[1])+len(l.sParts[2]) == 0 {
			return true
		}
		if !l.stream {
			l.sErr = errors.New("sendmsg sent part of a packet")
			return true
		}
	}
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
func (l *poolLink) recvMessage(ctx context.Context, header []byte) (rec poolRecord, hn int, recOK bool, err error) {
	l.c.recvMu.Lock()
	defer l.c.recvMu.Unlock()
	if l.ring != nil {
		return l.ringRecv(ctx, header)
	}
	if l.stream {
		return l.recvFrame(ctx, header)
	}
	if l.mmNext >= l.mmN {
		l.mmN, l.mmNext = 0, 0
		for {
			l.mmWait, l.mmErr, l.mmFlush = true, nil, false
			err = l.read(ctx, l.mmFn)
			if err == nil {
				err = l.mmErr
			}
			if err != nil || !l.mmFlush {
				break
			}
			if err = l.flushReleases(); err != nil {
				break
			}
		}
		if err != nil {
			return rec, 0, false, poolIOError("receive", err)
		}
	}
	i := l.mmNext
	l.mmNext++
	l.queued.Store(int32(l.mmN - l.mmNext))
	h := &l.mm[i]
	n, oobn, flags := int(h.Len), int(h.Hdr.Controllen), int(h.Hdr.Flags)
	buf := l.mmBuf[i*l.mmEntry:][:n]
	if n == 0 && oobn == 0 && flags&unix.MSG_CTRUNC == 0 {
		return rec, 0, false, fmt.Errorf("sealbuf: pool: the producer hung up: %w", io.EOF)
	}
	rec, err = parsePoolRecord(buf[:min(n, poolRecordLen)], poolKindMessage)
	recOK = err == nil
	if ferr := closeAttached(l.mmOOB[i][:oobn], flags); ferr != nil {
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
		return rec, len(header), true, fmt.Errorf("sealbuf: pool: receive: %d-byte header, larger than the %d-byte buffer (message dropped, slot handed back): %w", hn, len(header), io.ErrShortBuffer)
	}
	copy(header, buf[poolRecordLen:])
	return rec, hn, true, nil
}

// closeAttached closes every descriptor a peer attached to a pool message
// (only the hello may carry one) and reports them.
func closeAttached(oob []byte, flags int) error {
	if len(oob) == 0 && flags&unix.MSG_CTRUNC == 0 {
		return nil
	}
	var buf [poolOOBLen / 4]int
	fds, _ := scm.ParseRights(oob, buf[:0])
	closeFds(fds)
	return poolProtoError(nil, "the peer attached descriptors to a pool message (%d received, all closed)", len(fds))
}

// --- draining releases (producer) ---

// drain reads release messages: with wait, it blocks (under ctx) until at
// least one message or an error arrives; without, it takes only what is
// queued. It calls fn for every message payload (or per-message error) and
// returns the error that stopped reading, if any. The caller must not hold
// c.recvMu.
func (l *poolLink) drain(ctx context.Context, wait bool, fn func(payload []byte, err error)) error {
	l.c.recvMu.Lock()
	defer l.c.recvMu.Unlock()
	if l.ring != nil {
		return l.ringDrain(ctx, wait, fn)
	}
	return l.drainLocked(ctx, wait, fn)
}

// drainLocked is drain on the socket; the caller holds c.recvMu.
func (l *poolLink) drainLocked(ctx context.Context, wait bool, fn func(payload []byte, err error)) error {
	if l.stream {
		return l.drainStream(ctx, wait, fn)
	}
	var err error
	l.mmWait, l.mmN, l.mmErr, l.mmFlush = wait, 0, nil, false
	if wait {
		err = l.read(ctx, l.mmFn)
	} else {
		err = l.rc.Read(l.mmFn)
	}
	if err == nil {
		err = l.mmErr
	}
	for i := range l.mmN {
		h := &l.mm[i]
		n, oobn, flags := int(h.Len), int(h.Hdr.Controllen), int(h.Hdr.Flags)
		switch {
		case n == 0 && oobn == 0 && flags&unix.MSG_CTRUNC == 0:
			fn(nil, fmt.Errorf("sealbuf: pool: the consumer hung up: %w", io.EOF))
		case oobn > 0 || flags&unix.MSG_CTRUNC != 0:
			fn(nil, closeAttached(l.mmOOB[i][:oobn], flags))
		case flags&unix.MSG_TRUNC != 0:
			fn(nil, poolProtoError(nil, "a release message longer than %d records", poolMaxBatch))
		default:
			fn(l.mmBuf[i*l.mmEntry:][:n], nil)
		}
	}
	if err != nil {
		return poolIOError("receive releases", err)
	}
	return nil
}

func (l *poolLink) doRecvmmsg(fd uintptr) bool {
	if l.mmWait && !l.relAny.Load() {
		l.waitInKernel(fd)
	}
	for i := range l.mm {
		l.mm[i].Hdr.SetControllen(poolOOBLen)
		l.mm[i].Hdr.Flags = 0
		l.mm[i].Len = 0
	}
	// A reset is reported once, before what the peer sent and we have not
	// read (see Conn.recv): then read again.
	var r uintptr
	var e unix.Errno
	for try := 0; try < 2; try++ {
		r, _, e = unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&l.mm[0])), poolDrain,
			unix.MSG_CMSG_CLOEXEC|unix.MSG_DONTWAIT, 0, 0)
		if e != unix.ECONNRESET {
			break
		}
	}
	switch {
	case e == unix.EAGAIN:
		if l.mmWait && l.relAny.Load() {
			l.mmFlush = true
			return true
		}
		if l.mmWait && l.waitInKernel(fd) {
			return l.doRecvmmsg(fd)
		}
		return !l.mmWait
	case e != 0:
		l.mmErr = os.NewSyscallError("recvmmsg", e)
	default:
		l.mmN = int(r)
	}
	return true
}

// --- streams ---

// recvFrame is recvMessage on a stream socket.
func (l *poolLink) recvFrame(ctx context.Context, header []byte) (rec poolRecord, hn int, recOK bool, err error) {
	for {
		payload, ok, ferr := l.nextFrame()
		if ferr != nil && payload == nil {
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
				return rec, hn, true, fmt.Errorf("sealbuf: pool: receive: %d-byte header, larger than the %d-byte buffer (message dropped, slot handed back): %w", len(payload)-poolRecordLen, len(header), io.ErrShortBuffer)
			}
			return rec, hn, true, nil
		}
		if _, err := l.fillStream(ctx, true); err != nil {
			return rec, 0, false, err
		}
	}
}

// drainStream is drain on a stream socket.
func (l *poolLink) drainStream(ctx context.Context, wait bool, fn func([]byte, error)) error {
	if l.broken != nil && l.ring != nil {
		return l.drainBroken(ctx, wait, fn)
	}
	delivered := l.deliverFrames(fn)
	for l.broken == nil {
		n, err := l.fillStream(ctx, wait && !delivered)
		switch {
		case errors.Is(err, io.EOF):
			fn(nil, err)
			return nil
		case errors.Is(err, ErrPoolProtocol):
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

// drainBroken reads a futex pool's stream after its framing broke. The
// ring still carries the messages; the socket only wake-up records, which
// may be thrown away, and the hang-up, which must still be seen: read and
// discard, and pass on the end of file.
func (l *poolLink) drainBroken(ctx context.Context, wait bool, fn func([]byte, error)) error {
	l.sbR, l.sbW, l.sbSkip = 0, 0, 0
	_, err := l.fillStream(ctx, wait)
	l.sbR, l.sbW = 0, 0
	if errors.Is(err, io.EOF) {
		fn(nil, err)
		return nil
	}
	return err
}

// deliverFrames passes every whole buffered frame to fn.
func (l *poolLink) deliverFrames(fn func([]byte, error)) bool {
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
func (l *poolLink) framesBuffered() int32 {
	avail := l.sb[l.sbR:l.sbW]
	if l.sbSkip > 0 || len(avail) < scm.FrameLen || avail[6] != 'S' || avail[7] != 'B' {
		return 0
	}
	if size := int64(binary.LittleEndian.Uint32(avail)); size <= int64(len(avail)-scm.FrameLen) {
		return 1
	}
	return 0
}

// nextFrame takes the next whole frame out of the buffer. ok reports that
// a frame was consumed (err may still be set: a frame this pool refuses);
// neither means more input is needed.
func (l *poolLink) nextFrame() (payload []byte, ok bool, err error) {
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
	if len(avail) < scm.FrameLen {
		return nil, false, nil
	}
	f, err := scm.ParseFrame(avail[:scm.FrameLen])
	if err != nil {
		l.broken = poolProtoError(nil, "stream out of sync, no message boundary can be found (%v)", err)
		return nil, false, l.broken
	}
	total := scm.FrameLen + f.HeaderLen
	if total > len(l.sb) {
		l.sbR += scm.FrameLen
		l.sbSkip = f.HeaderLen
		return nil, true, poolProtoError(nil, "a %d-byte message, more than this pool's messages can be (skipped)", f.HeaderLen)
	}
	if len(avail) < total {
		return nil, false, nil
	}
	l.sbR += total
	payload = avail[scm.FrameLen:total]
	if f.Files != 0 || l.sbStray > 0 {
		err = poolProtoError(nil, "the peer attached descriptors to a pool message (%d received, all closed)", l.sbStray)
		l.sbStray = 0
		return payload, true, err
	}
	return payload, true, nil
}

// fillStream reads what the socket has into the buffer, blocking (under
// ctx) for at least one byte when wait is set. It returns how many bytes
// it read: 0 without wait means nothing was queued.
func (l *poolLink) fillStream(ctx context.Context, wait bool) (int, error) {
	if l.sbR > 0 {
		l.sbW = copy(l.sb, l.sb[l.sbR:l.sbW])
		l.sbR = 0
	}
	if l.sbW == len(l.sb) {
		return 0, nil
	}
	var err error
	for {
		l.sbWait, l.sbN, l.sbOOBN, l.sbFlags, l.sbErr, l.sbFlush = wait, -1, 0, 0, nil, false
		if wait {
			err = l.read(ctx, l.sbFn)
		} else {
			err = l.rc.Read(l.sbFn)
		}
		if err != nil || !l.sbFlush {
			break
		}
		if err = l.flushReleases(); err != nil {
			break
		}
	}
	if err == nil {
		err = l.sbErr
	}
	if err != nil {
		return 0, poolIOError("receive", err)
	}
	if l.sbN < 0 {
		return 0, nil // nothing queued
	}
	if l.sbOOBN > 0 || l.sbFlags&unix.MSG_CTRUNC != 0 {
		// Descriptors come with a frame's first byte: the frame they
		// came with reports them once it is whole.
		var buf [poolOOBLen / 4]int
		fds, _ := scm.ParseRights(l.rOOB[:l.sbOOBN], buf[:0])
		closeFds(fds)
		l.sbStray += max(len(fds), 1)
	}
	if l.sbN == 0 {
		return 0, fmt.Errorf("sealbuf: pool: the peer hung up: %w", io.EOF)
	}
	l.sbW += l.sbN
	return l.sbN, nil
}

func (l *poolLink) doStreamRead(fd uintptr) bool {
	n, oobn, flags, err := scm.Recvmsg(int(fd), l.sb[l.sbW:], l.rOOB[:], 0)
	if err == unix.ECONNRESET { // reported once (after the data on streams, before it on packets): read on
		n, oobn, flags, err = scm.Recvmsg(int(fd), l.sb[l.sbW:], l.rOOB[:], 0)
	}
	if err == unix.EAGAIN {
		if l.sbWait && l.relAny.Load() {
			l.sbFlush = true
			return true
		}
		if l.sbWait && l.waitInKernel(fd) {
			return l.doStreamRead(fd)
		}
		return !l.sbWait
	}
	if err != nil {
		l.sbErr = os.NewSyscallError("recvmsg", err)
		return true
	}
	l.sbN, l.sbOOBN, l.sbFlags = n, oobn, flags
	return true
}

// read runs one blocking rc.Read under ctx.
func (l *poolLink) read(ctx context.Context, fn func(uintptr) bool) error {
	tok, err := l.w.begin(ctx)
	if err != nil {
		return err
	}
	l.polled = false
	err = l.rc.Read(fn)
	return l.w.end(ctx, tok, err)
}

// waitInKernel waits for fd in a blocking ppoll, once per blocking read,
// when the Conn asks for it (WithBlockingWait), and reports whether fd
// became readable.
func (l *poolLink) waitInKernel(fd uintptr) bool {
	if l.polled || l.c.blockingWait <= 0 || l.ring != nil { // a futex pool waited in futex(2) already
		return false
	}
	l.polled = true
	return waitReadable(int(fd), l.c.blockingWait)
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }

// poolIOError translates a socket error: a peer that hung up matches
// io.EOF, a closed Conn os.ErrClosed; context errors pass unchanged.
func poolIOError(op string, err error) error {
	switch {
	case errors.Is(err, errPoolKicked), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.EOF), errors.Is(err, ErrPoolProtocol):
		return err
	case errors.Is(err, unix.EPIPE), errors.Is(err, unix.ECONNRESET):
		return fmt.Errorf("sealbuf: pool: %s: the peer hung up: %w (%w)", op, io.EOF, err)
	case errors.Is(err, net.ErrClosed):
		return fmt.Errorf("sealbuf: pool: %s: %w", op, os.ErrClosed)
	}
	return fmt.Errorf("sealbuf: pool: %s: %w", op, err)
}

// --- waiting under a context ---

// errPoolKicked reports a blocking read interrupted on purpose (a slot was
// freed locally): the reader should look again.
var errPoolKicked = errors.New("sealbuf: pool: wait interrupted")

// poolWaiter makes blocking reads obey a context without allocating: the
// read waits in the runtime poller, and is interrupted by moving the
// connection's read deadline into the past. A context's deadline becomes
// the read deadline; its cancellation is watched by one helper goroutine,
// started on first need and stopped by stop. Only one read blocks at a
// time (the caller holds the Conn's recvMu).
type poolWaiter struct {
	conn *net.UnixConn

	mu      sync.Mutex
	blocked bool // a read is between begin and end
	kicked  bool // and its deadline was moved into the past
	pending bool // a kick came while no read was blocked: the next begin returns errPoolKicked

	started bool
	stopped bool
	watch   chan context.Context
	unwatch chan struct{}
	quit    chan struct{}
	exited  chan struct{}
}

var poolLongAgo = time.Unix(1, 0)

// waitToken records what begin set up, for end to undo.
type waitToken struct {
	deadline bool // the read deadline was set from the context
	watched  bool // the helper watches the context
}

// begin prepares a blocking read.
func (w *poolWaiter) begin(ctx context.Context) (waitToken, error) {
	var tok waitToken
	if err := ctx.Err(); err != nil {
		return tok, err
	}
	w.mu.Lock()
	if w.pending {
		// A slot came back while this reader was on its way here (after
		// it looked for one): look again instead of waiting.
		w.pending = false
		w.mu.Unlock()
		return tok, errPoolKicked
	}
	w.blocked = true
	var dl time.Time
	if dl, tok.deadline = ctx.Deadline(); tok.deadline {
		w.conn.SetReadDeadline(dl)
	}
	tok.watched = ctx.Done() != nil && w.startLocked()
	w.mu.Unlock()
	if tok.watched {
		w.watch <- ctx
	}
	return tok, nil
}

// end finishes a blocking read that returned err, and translates an
// interruption into the context's error or errPoolKicked.
func (w *poolWaiter) end(ctx context.Context, tok waitToken, err error) error {
	if tok.watched {
		w.unwatch <- struct{}{}
	}
	w.mu.Lock()
	w.blocked = false
	kicked := w.kicked
	w.kicked = false
	if kicked || tok.deadline {
		w.conn.SetReadDeadline(time.Time{})
	}
	w.mu.Unlock()
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	if kicked {
		return errPoolKicked
	}
	return err
}

// kick interrupts the blocked read, or, when none is blocked, the next
// one before it blocks.
func (w *poolWaiter) kick() {
	w.mu.Lock()
	switch {
	case !w.blocked:
		w.pending = true
	case !w.kicked:
		w.kicked = true
		w.conn.SetReadDeadline(poolLongAgo)
	}
	w.mu.Unlock()
}

// startLocked starts the helper goroutine once; false once stopped.
func (w *poolWaiter) startLocked() bool {
	if w.stopped {
		return false
	}
	if w.started {
		return true
	}
	w.started = true
	w.watch = make(chan context.Context)
	w.unwatch = make(chan struct{})
	w.quit = make(chan struct{})
	w.exited = make(chan struct{})
	go w.run()
	return true
}

func (w *poolWaiter) run() {
	defer close(w.exited)
	for {
		select {
		case ctx := <-w.watch:
			select {
			case <-ctx.Done():
				w.kick()
				<-w.unwatch
			case <-w.unwatch:
			}
		case <-w.quit:
			return
		}
	}
}

// stop ends the helper goroutine; no read may be blocked.
func (w *poolWaiter) stop() {
	w.mu.Lock()
	started, quit, exited := w.started, w.quit, w.exited
	w.stopped = true
	w.mu.Unlock()
	if started {
		close(quit)
		<-exited
	}
}
