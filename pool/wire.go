//go:build linux

package pool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/sealbuf/sealbuf/internal/mmap"
)

// The pool's wire format. Every pool message is an ordinary Conn message
// (one packet over unixpacket, one frame over a unix stream socket) with no
// descriptors except the hello, so any language's standard library can
// speak it. All integers are little-endian.
//
// Hello, producer → consumer, once (payload 32 bytes + SCM_RIGHTS with
// exactly one descriptor: the pool's memfd, sealed at least
// shrink|grow|future_write, exactly Slots×Stride bytes long):
//
//	bytes  0-7   magic "sbpool\x00\x01" (format version 1)
//	bytes  8-11  slot count (uint32, 1..MaxSlots)
//	bytes 12-15  largest caller header the producer sends (uint32)
//	bytes 16-23  slot size in bytes (uint64, 1..MaxSlotSize)
//	bytes 24-31  stride: slot i starts at byte i×stride (uint64, from the
//	             slot size to the slot size rounded up to a page)
//
// Record, 16 bytes, the start of every later message:
//
//	byte   0     kind: 'M' (message, producer → consumer) or 'R' (release,
//	             consumer → producer)
//	bytes  1-3   zero
//	bytes  4-7   slot index (uint32, < slot count)
//	bytes  8-11  generation (uint32): how many times the producer has
//	             acquired this slot, counting this time; it only grows
//	             (modulo 2³²), so a stale record is recognised
//	bytes 12-15  length (uint32): for 'M' the bytes of the slot in use
//	             (≤ slot size); for 'R' zero
//
// Message: one 'M' record followed by the caller's header bytes (0 to the
// hello's header limit). Release: 1 to poolMaxBatch 'R' records, nothing
// else; a record returns the slot it names, with the generation the
// consumer received it under.
//
// A futex pool (WithFutex) announces itself with magic
// "sbpool\x00\x02" and a second descriptor: the ring memfd, sealed
// shrink|grow and not against writes, of the size ringLayout gives.
// Messages and releases then travel through the ring (ring.go), and
// the socket carries only wake-up records — kind 'W', everything else
// zero — one message each, and the hang-up.
const (
	poolHelloLen  = 32
	poolRecordLen = 16
	poolMagic     = "sbpool\x00\x01"
	poolMagicRing = "sbpool\x00\x02" // a futex pool: records travel in a ring

	poolKindMessage = 'M'
	poolKindRelease = 'R'
	poolKindWake    = 'W' // futex pool: wake up, the ring has news

	// poolMaxBatch is the most release records one release message may
	// carry.
	poolMaxBatch = 16
)

// Pool limits.
const (
	// MaxSlots is the most slots a pool may have. It keeps every
	// release in flight inside a socket's default send buffer, so neither
	// side can block the other with its acknowledgements.
	MaxSlots = 128

	// MaxSlotSize is the largest slot (2 GiB): lengths travel as
	// uint32.
	MaxSlotSize = 1 << 31

	// MaxHeader is the largest caller header a pool message may carry.
	MaxHeader = 64 << 10

	// poolDefaultHeader is the header limit when none is set.
	poolDefaultHeader = 4 << 10
)

// Pool errors. Every error a Writer, Reader, Slot or View returns because
// of a message from the peer matches ErrProtocol and one of the more
// precise sentinels below; local misuse (releasing a View twice, sending a
// Slot that was already sent) matches the precise sentinel alone.
var (
	// ErrFull is returned by TryAcquire when every slot is in use.
	ErrFull = errors.New("every slot of the pool is in use")

	// ErrProtocol is matched by every error caused by a peer message
	// that breaks the pool's wire format or its rules.
	ErrProtocol = errors.New("pool protocol violation")

	// ErrBadSlot: a slot index outside the pool.
	ErrBadSlot = errors.New("slot index out of range")

	// ErrBadLength: a length past the end of the slot.
	ErrBadLength = errors.New("length past the end of the slot")

	// ErrStaleGeneration: a record about an earlier use of the slot (a
	// release for a generation that is not the one in flight, a message
	// whose generation does not move forward), or a Slot or View handle
	// kept after its slot was reused.
	ErrStaleGeneration = errors.New("stale slot generation")

	// ErrDoubleRelease: a release of a slot that is not in flight to the
	// consumer (released already, or never sent), or a View released twice.
	ErrDoubleRelease = errors.New("slot released twice")

	// ErrSlotBusy: the producer sent a slot that the consumer still holds
	// (it was never released).
	ErrSlotBusy = errors.New("slot sent again while the consumer holds it")
)

// poolHello is the decoded hello.
type poolHello struct {
	slots     int
	maxHeader int
	slotSize  int
	stride    int
	ring      bool // a futex pool: the hello's second descriptor is the ring
}

func (h poolHello) append(b []byte) []byte {
	if h.ring {
		b = append(b, poolMagicRing...)
	} else {
		b = append(b, poolMagic...)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(h.slots))
	b = binary.LittleEndian.AppendUint32(b, uint32(h.maxHeader))
	b = binary.LittleEndian.AppendUint64(b, uint64(h.slotSize))
	return binary.LittleEndian.AppendUint64(b, uint64(h.stride))
}

// parsePoolHello decodes and bounds-checks a hello.
func parsePoolHello(b []byte) (poolHello, error) {
	if len(b) >= 8 && string(b[:7]) == poolMagic[:7] && string(b[:8]) != poolMagic && string(b[:8]) != poolMagicRing {
		return poolHello{}, poolProtoError(nil, "a pool hello of format version %d; this sealbuf speaks versions 1 and 2 (a futex pool): upgrade it", b[7])
	}
	if len(b) != poolHelloLen || (string(b[:8]) != poolMagic && string(b[:8]) != poolMagicRing) {
		return poolHello{}, poolProtoError(nil, "the first message is not a pool hello (%d bytes, want %d starting %q or %q): is the peer a sealbuf pool.Writer?", len(b), poolHelloLen, poolMagic, poolMagicRing)
	}
	slots := binary.LittleEndian.Uint32(b[8:])
	maxHeader := binary.LittleEndian.Uint32(b[12:])
	slotSize := binary.LittleEndian.Uint64(b[16:])
	stride := binary.LittleEndian.Uint64(b[24:])
	switch {
	case slots == 0 || slots > MaxSlots:
		return poolHello{}, poolProtoError(nil, "hello announces %d slots, want 1 to %d", slots, MaxSlots)
	case maxHeader > MaxHeader:
		return poolHello{}, poolProtoError(nil, "hello announces %d-byte headers, more than %d", maxHeader, MaxHeader)
	case slotSize == 0 || slotSize > MaxSlotSize:
		return poolHello{}, poolProtoError(nil, "hello announces %d-byte slots, want 1 to %d", slotSize, uint64(MaxSlotSize))
	case stride < slotSize || stride > pageUp64(slotSize) ||
		stride > uint64(mmap.MaxMappable)/uint64(slots) || stride > math.MaxInt/uint64(slots):
		// At most the slot size rounded up to a page: a wider stride
		// would map (and let the producer make the consumer's reads
		// allocate) memory no slot uses.
		return poolHello{}, poolProtoError(nil, "hello announces a stride of %d bytes for %d-byte slots: want %d to %d", stride, slotSize, slotSize, pageUp64(slotSize))
	}
	return poolHello{slots: int(slots), maxHeader: int(maxHeader), slotSize: int(slotSize), stride: int(stride), ring: string(b[:8]) == poolMagicRing}, nil
}

// pageUp64 rounds n up to a whole number of pages (on 32-bit ports too).
func pageUp64(n uint64) uint64 {
	ps := uint64(mmap.PageSize)
	return (n + ps - 1) &^ (ps - 1)
}

// poolRecord is one decoded record.
type poolRecord struct {
	kind   byte
	slot   uint32
	gen    uint32
	length uint32
}

func (r poolRecord) put(b []byte) {
	_ = b[poolRecordLen-1]
	b[0], b[1], b[2], b[3] = r.kind, 0, 0, 0
	binary.LittleEndian.PutUint32(b[4:], r.slot)
	binary.LittleEndian.PutUint32(b[8:], r.gen)
	binary.LittleEndian.PutUint32(b[12:], r.length)
}

// parsePoolRecord decodes a record of the expected kind. It allocates only
// on error.
func parsePoolRecord(b []byte, kind byte) (poolRecord, error) {
	if len(b) < poolRecordLen {
		return poolRecord{}, poolProtoError(nil, "a %d-byte pool message, shorter than its %d-byte record", len(b), poolRecordLen)
	}
	r := poolRecord{
		kind:   b[0],
		slot:   binary.LittleEndian.Uint32(b[4:]),
		gen:    binary.LittleEndian.Uint32(b[8:]),
		length: binary.LittleEndian.Uint32(b[12:]),
	}
	if r.kind != kind || b[1]|b[2]|b[3] != 0 {
		return r, poolProtoError(nil, "record of kind %q (reserved bytes % x), want %q", r.kind, b[1:4], kind)
	}
	return r, nil
}

// prefixed is err under "pool: op: ", which says "pool:" once however
// deep the op nests: err's own "pool: " prefix is dropped from the text
// (errors.Is and errors.As still reach err).
type prefixed struct {
	op  string
	err error
}

func withOp(op string, err error) error { return &prefixed{op, err} }

func (e *prefixed) Error() string {
	return "pool: " + e.op + ": " + strings.TrimPrefix(e.err.Error(), "pool: ")
}

func (e *prefixed) Unwrap() error { return e.err }

// poolProtoError formats a peer's protocol violation: it matches
// ErrProtocol and, when not nil, the precise sentinel.
func poolProtoError(sentinel error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if sentinel == nil {
		return fmt.Errorf("pool: %s: %w", msg, ErrProtocol)
	}
	return fmt.Errorf("pool: %s: %w: %w", msg, ErrProtocol, sentinel)
}
