//go:build linux

package pool

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/internal/mmap"
	"github.com/sealbuf/sealbuf/memfd"
)

// A futex pool (WithFutex) moves its records through shared memory
// instead of the socket: a second memfd, the ring, which both sides map
// writable. Its layout follows from the slot count N and the header limit
// H alone (ringLayout), so the hello need not describe it:
//
//	bytes   0-3    message head (uint32): messages the producer published
//	bytes  64-67   producer state (uint32): ringRunning, ringFutex, ringSocket
//	bytes 128-131  release head (uint32): releases the consumer published
//	bytes 192-195  consumer state (uint32)
//	bytes 256-     release ring: N entries of one 16-byte 'R' record
//	then           message ring, at a multiple of 64: N entries of E bytes,
//	               E = 20+H rounded up to 64: the 16-byte 'M' record, the
//	               header's length (uint32), the header
//
// Entry k of a ring is entry k mod N. A side writes an entry, then stores
// its head (an atomic release); the other loads the head (an atomic
// acquire), copies the entries up to it, validates the copies like socket
// records, and never reads them again. Every message holds a slot until
// its release, so neither ring can hold more than N unread entries; a head
// that moves further is a protocol violation.
//
// Each side writes only its own words and ring and reads only the peer's,
// so a peer scribbling over ours hurts only what it reads itself. The ring
// is sealed shrink|grow|seal, so neither side can make the other fault.
//
// Wake-ups: a side with nothing to read sets its state to ringFutex,
// looks at the peer's head once more, and waits on its own state word with
// futex(2) (after spinning for the Conn's Wait.Spin, for its Wait.Kernel,
// else poolFutexWait). When
// the wait runs out it moves its state from ringFutex to ringSocket
// (compare-and-swap) and parks on the socket in Go's netpoller. The
// publisher stores its head, then looks at the peer's state: ringFutex, it
// moves it to ringRunning (compare-and-swap) and wakes the word; ringSocket,
// it sends a wake-up record ('W') over the socket. Only one of the two
// swaps can win, and the stores come before the loads (sequentially
// consistent), so no wake-up is lost: a wake that comes before the waiter
// sleeps makes futex(2) return at once. A local kick (Discard, Close) does
// what the publisher does. The socket also carries the hang-up: a peer
// that is gone is noticed when the wait moves on to the socket, at most
// one futex wait late; a peer that closes wakes us first.

// Ring states.
const (
	ringRunning uint32 = iota
	ringFutex
	ringSocket
)

const (
	ringMsgHead   = 0
	ringProdState = 64
	ringRelHead   = 128
	ringConsState = 192
	ringRelOff    = 256
	ringHeaderLen = 4 // the header length after a message entry's record
)

// ringLayout returns the ring memfd's size, the size of one message entry
// and the offset of the message ring, for slots slots and headers of up
// to maxHeader bytes.
func ringLayout(slots, maxHeader int) (size, entry, msgOff int) {
	entry = (poolRecordLen + ringHeaderLen + maxHeader + 63) &^ 63
	msgOff = (ringRelOff + slots*poolRecordLen + 63) &^ 63
	return mmap.PageUp(msgOff + slots*entry), entry, msgOff
}

// poolRing is one side's mapping of the ring.
type poolRing struct {
	mem       []byte
	slots     uint32
	maxHeader int
	entry     int
	rel       []byte // release ring
	msg       []byte // message ring
	// Of this side: the state the peer reads (and swaps to wake it), and
	// the head it publishes.
	myState *atomic.Uint32
	myHead  *atomic.Uint32
	// Of the peer: its state and head.
	peerState *atomic.Uint32
	peerHead  *atomic.Uint32

	published uint32 // entries this side published (under the Conn's sendMu)
	taken     uint32 // entries of the peer's ring this side took (under recvMu)
}

func newPoolRingView(mem []byte, slots, maxHeader int, producer bool) *poolRing {
	_, entry, msgOff := ringLayout(slots, maxHeader)
	word := func(off int) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(&mem[off])) }
	r := &poolRing{
		mem: mem, slots: uint32(slots), maxHeader: maxHeader, entry: entry,
		rel: mem[ringRelOff : ringRelOff+slots*poolRecordLen],
		msg: mem[msgOff : msgOff+slots*entry],
	}
	prod, cons := word(ringProdState), word(ringConsState)
	msgHead, relHead := word(ringMsgHead), word(ringRelHead)
	if producer {
		r.myState, r.myHead, r.peerState, r.peerHead = prod, msgHead, cons, relHead
	} else {
		r.myState, r.myHead, r.peerState, r.peerHead = cons, relHead, prod, msgHead
	}
	return r
}

// ringSeals are the seals of a ring memfd: a fixed size, and nothing else
// that could be added later (both sides write it).
const ringSeals = memfd.SealShrink | memfd.SealGrow | memfd.SealSeal

// newRingMemfd makes the producer's ring memfd and maps it.
func newRingMemfd(name string, slots, maxHeader int) (*memfd.File, *poolRing, error) {
	size, _, _ := ringLayout(slots, maxHeader)
	file, err := memfd.Create(name + "-ring")
	if err != nil {
		return nil, nil, fmt.Errorf("pool: new: ring: %w", err)
	}
	var mem []byte
	err = file.Truncate(int64(size))
	if err == nil {
		err = file.AddSeals(ringSeals)
	}
	if err == nil {
		mem, err = mmap.File(file, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	}
	if err != nil {
		file.Close()
		return nil, nil, fmt.Errorf("pool: new: ring of %d bytes: %w", size, err)
	}
	return file, newPoolRingView(mem, slots, maxHeader, true), nil
}

// openRing checks a received ring memfd and maps it writable. It takes
// ownership of f (closed before it returns: the mapping is what stays).
func openRing(f *memfd.File, info memfd.Info, h poolHello) (*poolRing, error) {
	defer f.Close()
	size, _, _ := ringLayout(h.slots, h.maxHeader)
	if info.HugeTLB {
		// Both sides write the ring, so it cannot be sealed against
		// writes, and on hugetlbfs a producer could punch its page out:
		// once the huge page pool is empty, our next read would fault.
		return nil, poolProtoError(nil, "ring memfd %q is on hugetlbfs, where a page can be punched out under the consumer's reads: a sealbuf producer never makes one", f.Name())
	}
	if missing := info.Seals.Missing(memfd.SealShrink | memfd.SealGrow); missing != 0 {
		return nil, notSealed(f.Name(), missing, info.Seals)
	}
	if info.Seals&(memfd.SealWrite|memfd.SealFutureWrite) != 0 {
		return nil, poolProtoError(nil, "ring memfd %q is sealed against writes (%s): the consumer could not publish its releases", f.Name(), info.Seals)
	}
	if info.Size != int64(size) {
		return nil, poolProtoError(nil, "ring memfd %q has %d bytes, want %d for %d slots and %d-byte headers", f.Name(), info.Size, size, h.slots, h.maxHeader)
	}
	mem, err := mmap.File(f, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return newPoolRingView(mem, h.slots, h.maxHeader, false), nil
}

// unmap unmaps the ring; the caller holds the Conn's recvMu and sendMu
// was taken to set ringClosed, so nothing reads or writes it any more.
// Later calls find mem nil.
func (r *poolRing) unmap() error {
	err := mmap.Unmap(r.mem)
	r.mem, r.rel, r.msg = nil, nil, nil
	return err
}

// publishMessage writes a message entry and publishes it. The caller holds
// the Conn's sendMu.
func (r *poolRing) publishMessage(rec poolRecord, header []byte) {
	e := r.msg[int(r.published%r.slots)*r.entry:][:r.entry]
	rec.put(e)
	binary.LittleEndian.PutUint32(e[poolRecordLen:], uint32(len(header)))
	copy(e[poolRecordLen+ringHeaderLen:], header)
	r.published++
	r.myHead.Store(r.published)
}

// claimWake decides, after this side published, how to wake the peer:
// ringFutex when it waits in futex(2) (its state is taken to ringRunning
// here, so that exactly one of us — this publisher, or the waiter whose
// wait ran out and who moves on to ringSocket — wins: a wake-up is never
// lost and never sent twice), ringSocket when it is parked on the socket,
// ringRunning when it needs none. The caller holds the Conn's sendMu (the
// ring is mapped).
func (r *poolRing) claimWake() uint32 {
	switch r.peerState.Load() {
	case ringFutex:
		if r.peerState.CompareAndSwap(ringFutex, ringRunning) {
			return ringFutex
		}
		if r.peerState.Load() == ringSocket {
			return ringSocket
		}
	case ringSocket:
		return ringSocket
	}
	return ringRunning
}

// publishRelease writes a release entry and publishes it. The caller holds
// the Conn's sendMu.
func (r *poolRing) publishRelease(rec poolRecord) {
	rec.put(r.rel[int(r.published%r.slots)*poolRecordLen:])
	r.published++
	r.myHead.Store(r.published)
}

// overrun reports a peer head that moved past what the ring can hold,
// and skips to it.
func (r *poolRing) overrun(head uint32, what string) error {
	err := poolProtoError(nil, "the peer's %s ring head moved %d entries ahead, more than its %d entries (skipped)", what, head-r.taken, r.slots)
	r.taken = head
	return err
}

// pending returns how many entries the peer published that this side has
// not taken, or an error if the peer's head is out of range (the entries
// are then skipped).
func (r *poolRing) pending(what string) (uint32, error) {
	head := r.peerHead.Load()
	n := head - r.taken
	if n > r.slots {
		return 0, r.overrun(head, what)
	}
	return n, nil
}

// takeReleases copies the pending release records into buf (room for
// slots records) and returns their bytes.
func (r *poolRing) takeReleases(buf []byte) ([]byte, error) {
	n, err := r.pending("release")
	if err != nil || n == 0 {
		return nil, err
	}
	out := buf[:0]
	for ; n > 0; n-- {
		out = append(out, r.rel[int(r.taken%r.slots)*poolRecordLen:][:poolRecordLen]...)
		r.taken++
	}
	return out, nil
}

// takeMessage copies the next message entry: its record into rec and its
// header into header. ok reports that an entry was taken; recOK that rec
// is an intact record (so its slot can be handed back on error).
func (r *poolRing) takeMessage(header []byte) (rec poolRecord, hn int, ok, recOK bool, err error) {
	n, err := r.pending("message")
	if err != nil || n == 0 {
		return rec, 0, err != nil, false, err
	}
	e := r.msg[int(r.taken%r.slots)*r.entry:][:r.entry]
	r.taken++
	// parsePoolRecord reads each field once, and the producer may be
	// writing the entry: what is checked below is rec, our copy.
	if rec, err = parsePoolRecord(e[:poolRecordLen], poolKindMessage); err != nil {
		return rec, 0, true, false, err
	}
	hl32 := binary.LittleEndian.Uint32(e[poolRecordLen:])
	if hl32 > uint32(r.maxHeader) {
		return rec, 0, true, true, poolProtoError(nil, "a %d-byte header, longer than the %d bytes the producer announced (message dropped, slot handed back)", hl32, r.maxHeader)
	}
	hl := int(hl32)
	hn = copy(header, e[poolRecordLen+ringHeaderLen:][:hl])
	if hn < hl {
		return rec, hn, true, true, fmt.Errorf("pool: receive: %d-byte header, larger than the %d-byte buffer (message dropped, slot handed back): %w", hl, len(header), io.ErrShortBuffer)
	}
	return rec, hn, true, true, nil
}
