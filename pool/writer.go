//go:build linux

package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/mmap"
	"github.com/sealbuf/sealbuf/internal/wire"
	"github.com/sealbuf/sealbuf/memfd"
)

// Writer is the producer side of a pool: it owns the slots' memfd and its
// writable mapping, hands out free slots, and takes each back once the
// consumer (Accept, Reader) has released it. A message is a copy into a
// slot and a 16-byte record:
//
//	slot, err := w.Acquire(ctx) // waits while every slot is in use
//	if err != nil {
//		return err
//	}
//	n := copy(slot.Bytes(), frame)
//	err = slot.Send(n, header) // the consumer gets a read-only View
//
// The releases travel back over the same Conn, and Acquire reads them
// itself (no background goroutine). If the consumer hangs up or dies,
// every slot comes back: Acquire, TryAcquire and Send then fail with an
// error matching io.EOF. To finish cleanly, WaitIdle waits until the
// consumer has released every slot, then Close. Stats returns counters to
// export. The package documentation says what the consumer can rely on,
// and how the pool waits.
//
// The Writer owns its Conn (Close closes it; do not Send or Receive on it
// directly). It is safe for concurrent use: any number of goroutines may
// Acquire and Send. Steady state (Acquire, Send, the reading of releases)
// allocates nothing.
type Writer struct {
	link  *link
	file  *memfd.File
	mem   []byte
	hello poolHello
	seals memfd.Seals

	mu      sync.Mutex
	slot    []poolSlot
	free    []uint32 // free slot indices, a stack: the most recently released first
	peerErr error    // set once the consumer is gone
	closed  bool
	// isClosed is closed, readable without mu (Slot.Bytes). mem itself
	// is never changed after New, so a Bytes racing with Close reads no
	// field Close writes.
	isClosed atomic.Bool
	drainFn  func([]byte, error)
	fillErr  error // first error seen while draining, under mu
	// idleSeq counts the moments every slot came back (under mu), so
	// that WaitIdle sees a moment it did not run at.
	idleSeq uint64

	stats counters

	readTok chan struct{} // capacity 1: held by the goroutine reading releases
	freed   chan struct{} // capacity 1: a slot came back without a read
	done    chan struct{} // closed by Close
}

type poolSlot struct {
	gen   uint32
	state uint8
}

const (
	slotFree uint8 = iota
	slotAcquired
	slotSent
)

// poolSeals are the seals every pool carries, and that Accept requires:
// a fixed size, and no new writable mapping or write.
const poolSeals = memfd.SealShrink | memfd.SealGrow | memfd.SealFutureWrite

// New creates a pool of slots slots of slotSize bytes each (each slot
// starts on a page boundary), and sends its descriptor over c: the peer
// must call Accept. The memfd is sized once, sealed shrink|grow, mapped
// writable (and populated), then sealed future_write|seal, so the consumer
// can only map it read-only and nobody can resize it.
//
// On success the Writer owns c: Close the Writer, not c. On error c stays
// the caller's (it may have carried the hello already).
func New(c *sealbuf.Conn, slots, slotSize int, opts ...Option) (*Writer, error) {
	o := newOptions(opts)
	w, _, err := transport(c)
	switch {
	case err != nil:
		return nil, fmt.Errorf("pool: new: %w", err)
	case slots < 1 || slots > MaxSlots:
		return nil, fmt.Errorf("pool: new: %d slots, want 1 to %d", slots, MaxSlots)
	case slotSize < 1 || int64(slotSize) > MaxSlotSize:
		return nil, fmt.Errorf("pool: new: %d-byte slots, want 1 to %d", slotSize, int64(MaxSlotSize))
	case slotSize > math.MaxInt-mmap.PageSize: // 32-bit ports: the stride would overflow
		return nil, fmt.Errorf("pool: new: %d-byte slots, more than can be mapped: %w", slotSize, sealbuf.ErrTooLarge)
	case o.maxHeader < 0 || o.maxHeader > MaxHeader:
		return nil, fmt.Errorf("pool: new: %d-byte header limit, want 0 to %d", o.maxHeader, MaxHeader)
	}
	h := poolHello{slots: slots, slotSize: slotSize, stride: mmap.PageUp(slotSize), maxHeader: o.maxHeader, ring: o.futex}
	total := int64(h.slots) * int64(h.stride)
	if total > mmap.MaxMappable || total > math.MaxInt {
		return nil, fmt.Errorf("pool: new: %d bytes in all, more than can be mapped: %w", total, sealbuf.ErrTooLarge)
	}
	size := int(total)
	file, mem, seals, err := newPoolMemfd(o.name, size)
	if err != nil {
		return nil, err
	}
	p := &Writer{
		file: file, mem: mem, hello: h, seals: seals,
		slot:    make([]poolSlot, slots),
		free:    make([]uint32, 0, slots),
		readTok: make(chan struct{}, 1),
		freed:   make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	p.drainFn = p.applyReleases
	p.stats.mapped.Store(uint64(len(mem)))
	for i := slots - 1; i >= 0; i-- {
		p.free = append(p.free, uint32(i))
	}
	files := []*memfd.File{file}
	var ring *poolRing
	if o.futex {
		var rfile *memfd.File
		if rfile, ring, err = newRingMemfd(o.name, slots, o.maxHeader); err != nil {
			mmap.Unmap(mem)
			file.Close()
			return nil, err
		}
		defer rfile.Close() // the consumer gets its own; our mapping stays
		files = append(files, rfile)
	}
	p.link = newLink(w, poolMaxBatch*poolRecordLen)
	if ring != nil {
		p.link.ringSetup(ring, p.drainFn)
		p.stats.mapped.Add(uint64(len(ring.mem)))
	}
	var hb [poolHelloLen]byte
	if err = sendHello(w, h.append(hb[:0]), files); err != nil {
		mmap.Unmap(mem)
		file.Close()
		if ring != nil {
			ring.unmap()
		}
		return nil, fmt.Errorf("pool: new: sending its descriptor: %w", err)
	}
	return p, nil
}

// newPoolMemfd makes the pool's memfd: size it, seal the size, map it
// writable, then seal future writes (and the seal set).
func newPoolMemfd(name string, size int) (*memfd.File, []byte, memfd.Seals, error) {
	file, err := memfd.Create(name)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("pool: new: %w", err)
	}
	var mem []byte
	seals, err := func() (memfd.Seals, error) {
		if err := file.Truncate(int64(size)); err != nil {
			return 0, err
		}
		if err := file.AddSeals(memfd.SealShrink | memfd.SealGrow); err != nil {
			return 0, err
		}
		var err error
		if mem, err = mmap.File(file, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
			return 0, err
		}
		if err := file.AddSeals(memfd.SealFutureWrite | memfd.SealSeal); err != nil {
			return 0, err
		}
		seals, err := file.Seals()
		if err == nil && !seals.Has(poolSeals) {
			err = notSealed(file.Name(), seals.Missing(poolSeals), seals)
		}
		return seals, err
	}()
	if err != nil {
		mmap.Unmap(mem)
		file.Close()
		if errors.Is(err, unix.ENOMEM) {
			err = fmt.Errorf("%w (%w)", err, sealbuf.ErrTooLarge)
		}
		return nil, nil, 0, fmt.Errorf("pool: new of %d bytes: %w", size, err)
	}
	return file, mem, seals, nil
}

// Slots returns the number of slots.
func (p *Writer) Slots() int { return p.hello.slots }

// SlotSize returns the size of every slot in bytes.
func (p *Writer) SlotSize() int { return p.hello.slotSize }

// MaxHeader returns the largest header Send accepts.
func (p *Writer) MaxHeader() int { return p.hello.maxHeader }

// Futex reports whether this is a futex pool (WithFutex).
func (p *Writer) Futex() bool { return p.hello.ring }

// Seals returns the seals of the pool's memfd (at least
// shrink|grow|future_write|seal).
func (p *Writer) Seals() memfd.Seals { return p.seals }

// Free returns how many slots Acquire can hand out now without waiting.
// It first takes the releases already queued on the socket (or in a futex
// pool's ring), as TryAcquire does: one non-blocking system call, skipped
// when another goroutine is reading releases at that moment (it counts
// them as soon as it has read them). Slots acquired and not yet sent or
// discarded are not free. A release that breaks the protocol is reported
// by the next Acquire, TryAcquire or WaitIdle that reads releases, as if
// it were still queued.
func (p *Writer) Free() int {
	p.takeQueued()
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}

// takeQueued applies the releases already queued, without waiting, unless
// another goroutine is reading them (or Close holds the token). A
// protocol violation stays in fillErr for the next fill to report.
func (p *Writer) takeQueued() {
	select {
	case p.readTok <- struct{}{}:
	default:
		return
	}
	defer func() { <-p.readTok }()
	p.mu.Lock()
	skip := p.closed || p.peerErr != nil
	p.mu.Unlock()
	if skip {
		return
	}
	if err := p.link.drain(context.Background(), false, p.drainFn); err != nil && errors.Is(err, io.EOF) {
		p.mu.Lock()
		p.peerGoneLocked(err)
		p.mu.Unlock()
	}
}

// WaitIdle waits until every slot is free: every slot sent has been
// released by the consumer, and none is acquired. It returns nil at once,
// reading nothing, when the pool is idle already; otherwise it reads the
// consumer's releases as Acquire does. ctx bounds the wait (its error is
// returned unchanged, matching context.Canceled or
// context.DeadlineExceeded). Use it before Close to let the consumer
// finish with every message, or to learn that it keeps a slot.
//
// It is safe while other goroutines Acquire and Send: it returns nil once
// the pool was idle at some moment after it was called, even if a slot
// was acquired again before it returned.
//
// When the consumer is known to be gone (it hung up or died, now or while
// WaitIdle waits), WaitIdle fails with an error matching io.EOF rather
// than report an idle pool: the slots the consumer held are back, but the
// messages in them may never have been read. A release that breaks the
// protocol fails it with an error matching ErrProtocol, as it fails
// Acquire; the pool stays usable and WaitIdle may be called again. After
// Close it fails with os.ErrClosed.
func (p *Writer) WaitIdle(ctx context.Context) error {
	p.mu.Lock()
	seq := p.idleSeq
	p.mu.Unlock()
	for {
		if done, err := p.idle(seq); done {
			return err
		}
		select {
		case p.readTok <- struct{}{}:
			done, err := p.idle(seq)
			if !done {
				err = p.fill(ctx, true)
				if errors.Is(err, wire.ErrKicked) {
					err = nil
				}
			}
			<-p.readTok
			if done || err != nil {
				return err
			}
		// Not p.freed: that wake-up is an Acquire's. A slot given back
		// locally also kicks the goroutine reading releases, which then
		// hands readTok on.
		case <-p.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// idle reports whether WaitIdle is done: closed, the consumer gone, or
// every slot free now or at some moment since idleSeq was seq.
func (p *Writer) idle(seq uint64) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return true, fmt.Errorf("pool: wait idle: %w", os.ErrClosed)
	case p.peerErr != nil:
		return true, p.peerErr
	case len(p.free) == len(p.slot) || p.idleSeq != seq:
		return true, nil
	}
	return false, nil
}

// Slot is a slot the producer has acquired: fill Bytes, then Send it (or
// Discard it). It is a small value; copies refer to the same acquisition,
// and a copy kept after Send or Discard is stale: using it again fails
// with ErrStaleGeneration.
type Slot struct {
	p   *Writer
	idx uint32
	gen uint32
}

// Acquire returns a free slot, waiting for the consumer to release one when
// every slot is in use (back-pressure). While it waits it reads the
// consumer's releases from the Conn itself; ctx bounds the wait (its error
// is returned unchanged, matching context.Canceled or
// context.DeadlineExceeded).
//
// When the consumer has hung up or died, every slot is back in the pool
// and Acquire fails with an error matching io.EOF. A release that breaks
// the protocol (a forged slot, a stale generation, a double release) fails
// Acquire with an error matching ErrProtocol; the pool stays usable
// and the next Acquire goes on. After Close it fails with os.ErrClosed.
//
// It allocates nothing, also when it waits (a cancellable ctx is watched by
// one helper goroutine of the Conn, started on first need).
func (p *Writer) Acquire(ctx context.Context) (Slot, error) {
	waited := false // counted in Stats.Full
	for {
		if s, ok, err := p.pop(); ok || err != nil {
			return s, err
		}
		reader := false
		select {
		case p.readTok <- struct{}{}:
			reader = true
		default:
			// Another goroutine is reading releases: wait for it.
			p.countWait(&waited)
			select {
			case p.readTok <- struct{}{}:
				reader = true
			case <-p.freed:
			case <-p.done:
			case <-ctx.Done():
				return Slot{}, ctx.Err()
			}
		}
		if reader {
			s, ok, err := p.readReleases(ctx, &waited)
			<-p.readTok
			if ok || err != nil {
				return s, err
			}
		}
	}
}

// readReleases is Acquire's turn at reading releases (the caller holds
// readTok): those already queued first; when they free no slot, it
// waits for more (until at least one message, a kick or ctx's end) and
// returns with none, for Acquire to look again.
func (p *Writer) readReleases(ctx context.Context, waited *bool) (Slot, bool, error) {
	if s, ok, err := p.pop(); ok || err != nil {
		return s, ok, err
	}
	if err := p.settle(p.link.drainQueued(p.drainFn)); err != nil {
		return Slot{}, false, err
	}
	if s, ok, err := p.pop(); ok || err != nil {
		return s, ok, err
	}
	p.countWait(waited)
	err := p.fill(ctx, true)
	if errors.Is(err, wire.ErrKicked) {
		err = nil
	}
	return Slot{}, false, err
}

// countWait counts an Acquire call that waits for the consumer, once.
func (p *Writer) countWait(waited *bool) {
	if !*waited {
		*waited = true
		p.stats.full.Add(1)
	}
}

// TryAcquire returns a free slot without waiting: it takes the releases
// already queued on the socket, and fails with ErrFull when every slot
// is still in use. Its other errors are Acquire's.
func (p *Writer) TryAcquire() (Slot, error) {
	if s, ok, err := p.pop(); ok || err != nil {
		return s, err
	}
	select {
	case p.readTok <- struct{}{}:
		err := p.fill(context.Background(), false)
		<-p.readTok
		if err != nil {
			return Slot{}, err
		}
	default: // another goroutine is reading releases
	}
	if s, ok, err := p.pop(); ok || err != nil {
		return s, err
	}
	p.stats.full.Add(1)
	return Slot{}, fmt.Errorf("pool: all %d slots in use: %w", p.hello.slots, ErrFull)
}

// pop takes a free slot, if any.
func (p *Writer) pop() (Slot, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return Slot{}, false, fmt.Errorf("pool: acquire: %w", os.ErrClosed)
	case p.peerErr != nil:
		return Slot{}, false, p.peerErr
	case len(p.free) == 0:
		return Slot{}, false, nil
	}
	i := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	st := &p.slot[i]
	st.gen++
	st.state = slotAcquired
	return Slot{p: p, idx: i, gen: st.gen}, true, nil
}

// fill reads releases from the Conn (the caller holds readTok): with wait,
// until at least one message arrived. It returns the first protocol error
// seen, or the peer's hang-up (after freeing every slot).
func (p *Writer) fill(ctx context.Context, wait bool) error {
	return p.settle(p.link.drain(ctx, wait, p.drainFn))
}

// settle finishes a reading of releases that returned err: the consumer's
// hang-up frees every slot, and the first protocol violation applyReleases
// saw is the result.
func (p *Writer) settle(err error) error {
	p.mu.Lock()
	ferr := p.fillErr
	p.fillErr = nil
	if err != nil && errors.Is(err, io.EOF) {
		p.peerGoneLocked(err)
		err = nil
	}
	p.mu.Unlock()
	if ferr != nil {
		return ferr
	}
	return err
}

// applyReleases handles one release message (or the error in its place).
// A record that breaks the protocol is reported, and the valid records
// after it in the same message are still applied.
func (p *Writer) applyReleases(payload []byte, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil && (len(payload) == 0 || len(payload)%poolRecordLen != 0) {
		err = poolProtoError(nil, "a %d-byte release message, not a whole number of %d-byte records", len(payload), poolRecordLen)
		payload = payload[:len(payload)-len(payload)%poolRecordLen]
	}
	if err != nil && errors.Is(err, io.EOF) {
		p.peerGoneLocked(err)
		return
	}
	p.noteLocked(err)
	for ; len(payload) >= poolRecordLen; payload = payload[poolRecordLen:] {
		r, rerr := parsePoolRecord(payload, poolKindRelease)
		if rerr == nil {
			rerr = p.releaseLocked(r)
		}
		p.noteLocked(rerr)
	}
}

// noteLocked counts a protocol error seen while draining, and keeps the
// first for the Acquire, TryAcquire or WaitIdle that drained.
func (p *Writer) noteLocked(err error) {
	if err == nil {
		return
	}
	p.stats.refused(err)
	if p.fillErr == nil {
		p.fillErr = err
	}
}

// releaseLocked applies one release record from the consumer.
func (p *Writer) releaseLocked(r poolRecord) error {
	if r.slot >= uint32(len(p.slot)) {
		return poolProtoError(ErrBadSlot, "the consumer released slot %d of a %d-slot pool", r.slot, len(p.slot))
	}
	if r.length != 0 {
		return poolProtoError(nil, "release of slot %d carries a length (%d)", r.slot, r.length)
	}
	st := &p.slot[r.slot]
	if r.gen != st.gen {
		return poolProtoError(ErrStaleGeneration, "the consumer released slot %d generation %d, but its current generation is %d", r.slot, r.gen, st.gen)
	}
	if st.state != slotSent {
		return poolProtoError(ErrDoubleRelease, "the consumer released slot %d generation %d, which is not in flight (released already, or never sent)", r.slot, r.gen)
	}
	st.state = slotFree
	p.free = append(p.free, r.slot)
	p.stats.releases.Add(1)
	p.noteIdleLocked()
	return nil
}

// noteIdleLocked counts an idle moment for WaitIdle, after a slot came
// back.
func (p *Writer) noteIdleLocked() {
	if len(p.free) == len(p.slot) {
		p.idleSeq++
	}
}

// peerGoneLocked returns every slot in flight: the consumer is gone.
func (p *Writer) peerGoneLocked(err error) {
	if p.peerErr == nil {
		p.peerErr = goneError{err}
	}
	for i := range p.slot {
		if p.slot[i].state == slotSent {
			p.slot[i].state = slotFree
			p.free = append(p.free, uint32(i))
		}
	}
	p.signalFreed()
}

// goneError is the error once the consumer is gone: it matches io.EOF (and
// whatever the cause matches) and says the cause once, without repeating
// its "pool: " prefix.
type goneError struct{ cause error }

func (e goneError) Error() string {
	return "pool: the consumer is gone (every slot is back): " + strings.TrimPrefix(e.cause.Error(), "pool: ")
}

func (e goneError) Unwrap() error { return e.cause }

// signalFreed wakes a waiting Acquire after a slot came back without a
// read (Discard, a failed Send, the consumer gone). The caller holds p.mu;
// after Close there is nobody to wake (and the ring may be unmapped).
func (p *Writer) signalFreed() {
	if p.closed {
		return
	}
	select {
	case p.freed <- struct{}{}:
	default:
	}
	p.link.kick()
}

// Index returns the slot's index in the pool.
func (s Slot) Index() int { return int(s.idx) }

// Generation returns how many times the slot has been acquired, this time
// included (modulo 2³²).
func (s Slot) Generation() uint32 { return s.gen }

// Bytes returns the slot's memory: SlotSize bytes, writable, shared with
// the consumer. Write it between Acquire and Send only: after Send the
// consumer is reading it, and after Close it is unmapped. The zero Slot
// returns nil.
func (s Slot) Bytes() []byte {
	if s.p == nil || s.p.isClosed.Load() {
		return nil
	}
	off := int(s.idx) * s.p.hello.stride
	end := off + s.p.hello.slotSize
	return s.p.mem[off:end:end]
}

// Send hands the first n bytes of the slot to the consumer, with header
// (at most MaxHeader bytes; nil is fine). From here on the slot is the
// consumer's until it releases it; do not write Bytes any more.
//
// A Slot that was already sent or discarded fails with ErrStaleGeneration;
// n outside 0..SlotSize with ErrBadLength. If the message cannot be sent
// the slot stays acquired (Send again or Discard it), unless the consumer
// is gone: then every slot is back and the error matches io.EOF.
func (s Slot) Send(n int, header []byte) error {
	p := s.p
	if p == nil {
		return errors.New("pool: send of the zero Slot")
	}
	if n < 0 || n > p.hello.slotSize {
		return fmt.Errorf("pool: send of %d bytes from a %d-byte slot: %w", n, p.hello.slotSize, ErrBadLength)
	}
	if len(header) > p.hello.maxHeader {
		return fmt.Errorf("pool: send: %d-byte header, more than the pool's %d (WithMaxHeader)", len(header), p.hello.maxHeader)
	}
	p.mu.Lock()
	if err := p.checkLocked(s, "send"); err != nil {
		p.mu.Unlock()
		return err
	}
	if err := p.peerErr; err != nil {
		p.freeLocked(s.idx)
		p.mu.Unlock()
		return err
	}
	p.slot[s.idx].state = slotSent
	p.mu.Unlock()

	published, err := p.link.sendMessage(poolRecord{kind: poolKindMessage, slot: s.idx, gen: s.gen, length: uint32(n)}, header)
	if published {
		p.stats.message(n, len(header))
	}
	if err == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := &p.slot[s.idx]; st.gen == s.gen && st.state == slotSent {
		if !published {
			st.state = slotAcquired
		}
		if errors.Is(err, io.EOF) {
			if !published {
				p.freeLocked(s.idx)
			}
			p.peerGoneLocked(err)
			return p.peerErr
		}
	}
	return err
}

// Discard returns an acquired slot to the pool without sending it.
func (s Slot) Discard() error {
	p := s.p
	if p == nil {
		return errors.New("pool: discard of the zero Slot")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkLocked(s, "discard"); err != nil {
		return err
	}
	p.freeLocked(s.idx)
	return nil
}

// checkLocked verifies that s is acquired, under this generation.
func (p *Writer) checkLocked(s Slot, op string) error {
	if p.closed {
		return fmt.Errorf("pool: %s: %w", op, os.ErrClosed)
	}
	if s.idx >= uint32(len(p.slot)) {
		return fmt.Errorf("pool: %s of slot %d of a %d-slot pool: %w", op, s.idx, len(p.slot), ErrBadSlot)
	}
	if st := p.slot[s.idx]; st.gen != s.gen || st.state != slotAcquired {
		return fmt.Errorf("pool: %s of slot %d generation %d, which is not acquired any more (sent or discarded already): %w", op, s.idx, s.gen, ErrStaleGeneration)
	}
	return nil
}

func (p *Writer) freeLocked(i uint32) {
	p.slot[i].state = slotFree
	p.free = append(p.free, i)
	p.noteIdleLocked()
	p.signalFreed()
}

// Close closes the Conn (the consumer sees end of file), unmaps the pool
// and closes its memfd. Slot memory must not be used after it; the
// consumer's mapping stays valid until the consumer closes its side. A
// second Close returns an error wrapping os.ErrClosed.
func (p *Writer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return fmt.Errorf("pool: close: %w", os.ErrClosed)
	}
	p.closed = true
	p.isClosed.Store(true)
	close(p.done)
	p.mu.Unlock()
	err := p.link.close()
	p.stats.mapped.Store(0)
	p.readTok <- struct{}{} // wait for a reading Acquire to leave; keep it
	if uerr := mmap.Unmap(p.mem); err == nil {
		err = uerr
	}
	if cerr := p.file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pool: close: %w", err)
	}
	return nil
}
