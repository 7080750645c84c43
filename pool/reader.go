//go:build linux

package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/mmap"
	"github.com/sealbuf/sealbuf/memfd"
)

// Reader is the consumer side of a pool (see Writer): it maps the producer's slots
// read-only once, then Receive returns each message as a View of a slot,
// with no copy. Release every View: the producer reuses a slot only after
// its release, and blocks when all are held.
//
// The Reader owns its Conn (Close closes it, and the producer takes
// every slot back). It is safe for concurrent use; Receive calls are
// serialised. Steady state (Receive, Release) allocates nothing. Stats
// returns counters to export.
type Reader struct {
	link  *link
	file  *memfd.File
	mem   []byte // read-only shared mapping of the whole pool
	hello poolHello
	seals memfd.Seals

	held []atomic.Uint64 // per slot: generation<<1 | 1 while a View holds it

	mu       sync.Mutex
	last     []uint32 // per slot: the newest generation received
	closed   bool
	peerGone bool

	memMu    sync.RWMutex // held for reading while copying out of mem
	unmapped bool         // under memMu: Close unmapped mem

	stats counters
}

// Accept receives a pool's hello from c (sent by New) and maps the
// pool. Before mapping anything it checks that the descriptor is a memfd
// (or fails matching memfd.ErrNotMemfd), that it is sealed at least
// shrink|grow|future_write (or fails matching sealbuf.ErrNotSealed, naming each
// missing seal: without them the producer could resize the pool under us
// or we could map it writable), that its size is exactly what the hello
// announces, and that it fits WithMaxSize and the Conn's MaxSize
// policy (or fails matching sealbuf.ErrTooLarge). It then maps the pool read-only
// and shared.
//
// It maps the pool without populating it: memory is used as the producer
// fills slots (its cost) and as the consumer reads them. A limit on the
// pool's size (WithMaxSize, the Conn's MaxSize) is therefore a bound on
// address space and on the shared memory the consumer's reads can make the
// kernel allocate: a producer that never wrote its slots makes each page
// the consumer reads a fresh zeroed page, up to slots × slot size.
//
// A malformed hello fails matching ErrProtocol. On every error the
// received descriptors are closed. On success the Reader owns c; on
// error c stays the caller's. The Conn's deadlines apply.
func Accept(c *sealbuf.Conn, opts ...Option) (*Reader, error) {
	w, cp, err := transport(c)
	if err != nil {
		return nil, fmt.Errorf("pool: accept: %w", err)
	}
	o := newOptions(opts)
	maxSize := min(o.maxSize, cp)
	var hb [poolHelloLen + 1]byte
	n, files, err := c.ReceiveFiles(hb[:])
	if err != nil {
		if errors.Is(err, io.ErrShortBuffer) {
			err = fmt.Errorf("%w (%w)", err, ErrProtocol)
		}
		return nil, fmt.Errorf("pool: accept: %w", err)
	}
	h, file, mem, seals, ring, err := openPool(hb[:n], files, maxSize)
	if err != nil {
		return nil, withOp("accept", err)
	}
	link := newLink(w, poolRecordLen+h.maxHeader)
	r := &Reader{
		link: link, file: file, mem: mem, hello: h, seals: seals,
		held: make([]atomic.Uint64, h.slots),
		last: make([]uint32, h.slots),
	}
	r.stats.mapped.Store(uint64(len(mem)))
	if ring != nil {
		link.ringSetup(ring, link.onConsumerNews)
		r.stats.mapped.Add(uint64(len(ring.mem)))
	}
	return r, nil
}

// openPool checks a received hello and its descriptors, maps the pool
// read-only and, for a futex pool, the ring writable. It closes every
// descriptor in files on error, and every one but the pool's on success.
func openPool(hello []byte, files []*os.File, maxSize int64) (h poolHello, file *memfd.File, mem []byte, seals memfd.Seals, ring *poolRing, err error) {
	defer func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}()
	h, err = parsePoolHello(hello)
	if err != nil {
		return h, nil, nil, 0, nil, err
	}
	want := 1
	if h.ring {
		want = 2
	}
	if len(files) != want {
		return h, nil, nil, 0, nil, poolProtoError(nil, "the hello carries %d descriptors, want exactly %d (all closed)", len(files), want)
	}
	if h.ring {
		rfile, info, err := memfd.Adopt(files[1])
		if err != nil {
			return h, nil, nil, 0, nil, withOp("the ring", err)
		}
		files[1] = nil
		if ring, err = openRing(rfile, info, h); err != nil {
			return h, nil, nil, 0, nil, withOp("the ring", err)
		}
	}
	h, file, mem, seals, err = openSlots(h, files[0], maxSize)
	files[0] = nil
	if err != nil && ring != nil {
		ring.unmap()
		ring = nil
	}
	return h, file, mem, seals, ring, err
}

// openSlots checks the pool's memfd and maps it read-only. It owns f.
func openSlots(h poolHello, f *os.File, maxSize int64) (poolHello, *memfd.File, []byte, memfd.Seals, error) {
	file, info, err := memfd.Adopt(f)
	if err != nil {
		f.Close()
		return h, nil, nil, 0, err
	}
	seals := info.Seals
	size, err := verify(file.Name(), info, poolSeals, maxSize)
	if err == nil && size != h.slots*h.stride {
		err = poolProtoError(nil, "memfd %q has %d bytes, but the hello announces %d slots × %d", file.Name(), size, h.slots, h.stride)
	}
	var mem []byte
	if err == nil {
		// Not populated: see Accept.
		mem, err = mmap.File(file, size, unix.PROT_READ, unix.MAP_SHARED)
	}
	if err != nil {
		file.Close()
		return h, nil, nil, 0, err
	}
	return h, file, mem, seals, nil
}

// Flush sends the releases held back, if any (see Release), at once.
func (r *Reader) Flush() error {
	if r.isClosed() {
		return fmt.Errorf("pool: flush: %w", os.ErrClosed)
	}
	return r.link.flushReleases(context.Background())
}

// Slots returns the number of slots.
func (r *Reader) Slots() int { return r.hello.slots }

// SlotSize returns the size of every slot in bytes.
func (r *Reader) SlotSize() int { return r.hello.slotSize }

// MaxHeader returns the largest header the producer announced it sends: a
// header buffer of this size never fails with io.ErrShortBuffer.
func (r *Reader) MaxHeader() int { return r.hello.maxHeader }

// Futex reports whether the producer built a futex pool (WithFutex):
// records travel through a shared ring, and waits are futex(2) waits.
func (r *Reader) Futex() bool { return r.hello.ring }

// Seals returns the seals of the pool's memfd, read when it was accepted.
func (r *Reader) Seals() memfd.Seals { return r.seals }

// Receive waits for the next message: it returns a View of the slot the
// producer filled and the length n of the header copied into header. ctx
// bounds the wait (its error is returned unchanged); the Conn's read
// deadline applies too.
//
// The producer hung up: an error matching io.EOF (held Views stay valid
// until Close). A message that breaks the protocol — a slot index outside
// the pool (ErrBadSlot), a length past the slot (ErrBadLength), a
// generation that does not move forward (ErrStaleGeneration), a slot we
// still hold (ErrSlotBusy), descriptors attached — fails matching
// ErrProtocol and the precise sentinel; the message is dropped and the
// next Receive goes on. A header longer than header fails matching
// io.ErrShortBuffer; that message's slot is released at once. When that
// release (or the one of a length past the slot) cannot be sent before
// ctx ends — a producer that does not read its socket — the error
// matches ctx's error too.
func (r *Reader) Receive(ctx context.Context, header []byte) (View, int, error) {
	v, hn, err := r.receive(ctx, header)
	if err != nil {
		r.stats.refused(err)
		return v, hn, err
	}
	r.stats.message(int(v.n), hn)
	return v, hn, nil
}

func (r *Reader) receive(ctx context.Context, header []byte) (View, int, error) {
	if r.isClosed() {
		return View{}, 0, fmt.Errorf("pool: receive: %w", os.ErrClosed)
	}
	rec, hn, recOK, err := r.link.recvMessage(ctx, header)
	if err != nil && !recOK {
		if errors.Is(err, io.EOF) {
			r.mu.Lock()
			r.peerGone = true
			r.mu.Unlock()
		}
		return View{}, 0, err
	}
	r.mu.Lock()
	verr := r.acceptLocked(rec)
	if verr == nil && err == nil {
		r.mu.Unlock()
		return View{r: r, slot: rec.slot, gen: rec.gen, n: rec.length}, hn, nil
	}
	// Refused: hand a slot we could have taken straight back, so a
	// message we drop does not cost the producer its slot.
	handBack := verr == nil || errors.Is(verr, ErrBadLength)
	if handBack {
		r.held[rec.slot].Store(0)
	}
	r.mu.Unlock()
	if handBack {
		if rerr := r.link.releaseNow(ctx, poolRecord{kind: poolKindRelease, slot: rec.slot, gen: rec.gen}); rerr != nil && !errors.Is(rerr, io.EOF) {
			// The hand-back did not go (ctx ended, the write deadline
			// passed, Close): say so with the refusal, so that a caller
			// whose ctx ended sees ctx's error.
			if verr != nil {
				verr = fmt.Errorf("%w (the slot could not be handed back: %w)", verr, rerr)
			} else {
				err = fmt.Errorf("%w (the slot could not be handed back: %w)", err, rerr)
			}
		}
	}
	if verr != nil {
		return View{}, 0, verr
	}
	return View{}, hn, err
}

// acceptLocked validates a message record and marks its slot held.
func (r *Reader) acceptLocked(rec poolRecord) error {
	if rec.slot >= uint32(r.hello.slots) {
		return poolProtoError(ErrBadSlot, "the producer sent slot %d of a %d-slot pool", rec.slot, r.hello.slots)
	}
	if h := r.held[rec.slot].Load(); h&1 != 0 {
		return poolProtoError(ErrSlotBusy, "the producer sent slot %d (generation %d) while we still hold it (generation %d)", rec.slot, rec.gen, uint32(h>>1))
	}
	if int32(rec.gen-r.last[rec.slot]) <= 0 {
		return poolProtoError(ErrStaleGeneration, "the producer sent slot %d generation %d, not newer than generation %d received before", rec.slot, rec.gen, r.last[rec.slot])
	}
	r.last[rec.slot] = rec.gen
	r.held[rec.slot].Store(uint64(rec.gen)<<1 | 1)
	if rec.length > uint32(r.hello.slotSize) {
		return poolProtoError(ErrBadLength, "the producer sent %d bytes of a %d-byte slot (slot %d generation %d, handed back)", rec.length, r.hello.slotSize, rec.slot, rec.gen)
	}
	return nil
}

func (r *Reader) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Close closes the Conn (the producer gets every slot back), unmaps the
// pool and closes its memfd. Every View is invalid from here on, and
// slices from View.Bytes must not be used any more. A second Close returns
// an error wrapping os.ErrClosed.
func (r *Reader) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return fmt.Errorf("pool: reader: close: %w", os.ErrClosed)
	}
	r.closed = true
	for i := range r.held {
		r.held[i].Store(0)
	}
	r.mu.Unlock()
	err := r.link.close()
	r.stats.mapped.Store(0)
	r.memMu.Lock()
	if uerr := mmap.Unmap(r.mem); err == nil {
		err = uerr
	}
	r.unmapped = true // mem itself stays as it was: View.Bytes reads it without a lock
	r.memMu.Unlock()
	if cerr := r.file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pool: reader: close: %w", err)
	}
	return nil
}

// View is one received message: a read-only, zero-copy window on the slot
// the producer filled. Release it when done; the producer cannot reuse the
// slot before. It is a small value; copies refer to the same message, and
// after Release (or Close) Bytes returns nil and Release fails.
//
// What a View guarantees, and what it does not: the pool's size is sealed,
// so reading Bytes never faults and needs no guard, whatever the producer
// does; and this process cannot write the slot (the mapping is read-only,
// the memfd sealed future_write). But the producer keeps its writable
// mapping: a producer that breaks the protocol can change the bytes while
// you read them. Read Bytes in place when you trust the producer, or when
// a change under you is harmless (you checksum, forward or display the
// bytes). When you parse or validate and then act on what you validated —
// lengths, offsets, anything whose change between check and use would
// hurt — copy first with CopyTo or Snapshot and work on the copy.
type View struct {
	r    *Reader
	slot uint32
	gen  uint32
	n    uint32
}

func (v View) valid() bool {
	return v.r != nil && v.r.held[v.slot].Load() == uint64(v.gen)<<1|1
}

// Bytes returns the message: Len bytes of the slot, read-only (writing
// them crashes the process), valid until Release or Close. It returns nil
// for a released View and the zero View.
func (v View) Bytes() []byte {
	if !v.valid() {
		return nil
	}
	off := int(v.slot) * v.r.hello.stride
	end := off + int(v.n)
	return v.r.mem[off:end:end]
}

// Len returns the message length in bytes.
func (v View) Len() int { return int(v.n) }

// Slot returns the index of the slot.
func (v View) Slot() int { return int(v.slot) }

// Generation returns the slot's generation for this message.
func (v View) Generation() uint32 { return v.gen }

// CopyTo copies the message into dst, as much as fits, and returns the
// number of bytes copied (0 for a released View). Use it to get bytes the
// producer can no longer change; it is safe against a concurrent Close.
func (v View) CopyTo(dst []byte) int {
	if v.r == nil {
		return 0
	}
	v.r.memMu.RLock()
	defer v.r.memMu.RUnlock()
	if v.r.unmapped {
		return 0
	}
	return copy(dst, v.Bytes())
}

// Snapshot returns a private copy of the message (it allocates), or nil
// for a released View.
func (v View) Snapshot() []byte {
	if !v.valid() {
		return nil
	}
	b := make([]byte, v.n)
	return b[:v.CopyTo(b)]
}

// Release hands the slot back to the producer, with a 16-byte release
// record. Bytes returns nil from here on. When more messages have already
// arrived and wait for Receive, the record is held back and goes with the
// next ones in one message (at most 16 records): when Receive has handed
// out everything that had arrived and is about to wait for more, on
// Flush, and at the latest after a quarter of a millisecond. A consumer
// that falls behind thus pays for one release message per batch instead
// of one per message, and never keeps a slot from the producer for long. Releasing a View twice fails
// with ErrDoubleRelease (a stale copy of an older message of the slot:
// ErrStaleGeneration), after Close with os.ErrClosed. When the producer is
// gone the release is only local and Release returns nil. A producer that
// never reads its releases (a well-behaved one reads them whenever it runs
// out of slots) can make Release wait for room on the socket; the Conn's
// write deadline bounds that wait.
func (v View) Release() error {
	r := v.r
	if r == nil {
		return errors.New("pool: release of the zero View")
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return fmt.Errorf("pool: release: %w", os.ErrClosed)
	}
	if !v.valid() {
		last := r.last[v.slot]
		r.mu.Unlock()
		if last == v.gen {
			return fmt.Errorf("pool: release of slot %d generation %d: released already: %w", v.slot, v.gen, ErrDoubleRelease)
		}
		return fmt.Errorf("pool: release of slot %d generation %d: the slot has moved on to generation %d: %w", v.slot, v.gen, last, ErrStaleGeneration)
	}
	r.held[v.slot].Store(0)
	gone := r.peerGone
	r.mu.Unlock()
	r.stats.releases.Add(1)
	if gone {
		return nil
	}
	err := r.link.release(poolRecord{kind: poolKindRelease, slot: v.slot, gen: v.gen})
	if err != nil && errors.Is(err, io.EOF) {
		r.mu.Lock()
		r.peerGone = true
		r.mu.Unlock()
		return nil
	}
	return err
}
