//go:build linux

package fuzz

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/memfd"
	"github.com/sealbuf/sealbuf/pool"
	"github.com/sealbuf/sealbuf/sealtest"
)

// The futex pool's ring as docs/pool.md lays it out, for a peer that
// writes it by hand.
const (
	ringMsgHead = 0
	ringRelHead = 128
	ringRelOff  = 256
	fuzzHeader  = 24 // the fuzzed pools' header limit
)

func ringLayout(slots int) (size, entry, msgOff int) {
	pg := os.Getpagesize()
	entry = (16 + 4 + fuzzHeader + 63) &^ 63
	msgOff = (ringRelOff + slots*16 + 63) &^ 63
	return (msgOff + slots*entry + pg - 1) &^ (pg - 1), entry, msgOff
}

// FuzzPoolRing is a hostile peer of a futex pool (pool.WithFutex) that
// writes whatever ops says into the shared ring — entry bytes anywhere,
// any head value — and onto the socket, and calls the library side in
// between: with side even the library is the consumer (a raw producer
// writes the message ring; Reader.Receive and View.Release run), with
// side odd the producer (a raw consumer writes the release ring;
// Pool.TryAcquire and Slot.Send run). The library must not panic, hang or
// leak a descriptor or a mapping, must fail only with documented errors,
// and must hand out only views inside their slot. The pool has 1 + side>>1
// % 4 slots.
//
// ops is read 8 bytes at a time: o[0]%8 is the op — 0-2 write o[3:8] into
// entry o[1] at byte o[2] of the peer's ring; 3 sets the peer's head to
// its old value + o[1] (a wrap-around is fine); 4 sets it to o[1:5]; 5
// calls the library side; 6 sends o[1:8] on the socket; 7 sends a wake-up
// record.
func FuzzPoolRing(f *testing.F) {
	msg := func(entry, slot, gen, length, hlen byte) []byte {
		// Writes record bytes 0-4 (kind, reserved) and 4-8 (slot), 8-12
		// (generation), 12-16 (length), 16-20 (header length).
		return []byte{
			0, entry, 0, 'M', 0, 0, 0, slot,
			1, entry, 5, 0, 0, 0, gen, 0,
			2, entry, 10, 0, 0, length, 0, 0,
			2, entry, 15, 0, hlen, 0, 0, 0,
		}
	}
	call, publish := []byte{5, 0, 0, 0, 0, 0, 0, 0}, []byte{3, 1, 0, 0, 0, 0, 0, 0}
	seed(f, "consumer-good", byte(0), concat(msg(0, 0, 1, 10, 3), publish, call, call))
	seed(f, "consumer-bad-slot", byte(2), concat(msg(0, 9, 1, 10, 0), publish, call))
	seed(f, "consumer-long-header", byte(0), concat(msg(0, 0, 1, 10, 200), publish, call))
	seed(f, "consumer-overrun", byte(6), []byte{3, 200, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0})
	seed(f, "consumer-garbage", byte(0), []byte{6, 'x', 'y', 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0})
	seed(f, "consumer-wake", byte(2), concat(msg(1, 1, 4, 1, 0), []byte{3, 2, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0}, call))
	rel := func(entry, slot, gen byte) []byte {
		return []byte{
			0, entry, 0, 'R', 0, 0, 0, slot,
			1, entry, 5, 0, 0, 0, gen, 0,
		}
	}
	seed(f, "producer-good", byte(1), concat(call, call, rel(0, 0, 1), publish, call))
	seed(f, "producer-stale", byte(3), concat(call, rel(0, 1, 7), publish, call))
	seed(f, "producer-overrun", byte(5), concat(call, []byte{4, 0xff, 0xff, 0xff, 0xff, 0, 0, 0}, call))
	seed(f, "producer-garbage", byte(1), concat(call, []byte{6, 'R', 0, 0, 0, 0, 0, 0}, call))

	f.Fuzz(func(t *testing.T, side byte, ops []byte) {
		if len(ops) > 256 {
			return
		}
		defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no finalizer may hide a leak
		fds, maps := openFDs(), sealtest.CountMaps()
		slots := 1 + int(side>>1%4)
		if side&1 == 0 {
			fuzzRingConsumer(t, slots, ops)
		} else {
			fuzzRingProducer(t, slots, ops)
		}
		if leak := leakedSince(fds); leak != "" {
			t.Fatal(leak)
		}
		if now := sealtest.CountMaps(); now != maps {
			t.Fatalf("%d memfd mappings, %d before", now, maps)
		}
	})
}

// rawRing is the hostile peer's mapping of the ring.
type rawRing struct {
	mem   []byte
	entry int // the size of one entry of the peer's ring
	off   int // where the peer's ring starts
	slots int
	head  *atomic.Uint32 // the hostile side's head
}

func (r *rawRing) apply(o []byte, peer *sealbuf.Conn) {
	switch o[0] % 8 {
	case 0, 1, 2:
		e := r.off + int(o[1])%r.slots*r.entry
		copy(r.mem[e+int(o[2])%r.entry:e+r.entry], o[3:8])
	case 3:
		r.head.Add(uint32(o[1]))
	case 4:
		r.head.Store(binary.LittleEndian.Uint32(o[1:5]))
	case 6:
		peer.Send(o[1:8]) // may fail once the library side closed: fine
	case 7:
		peer.Send([]byte{'W', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	}
}

// ringPeer makes a packet socketpair: the hostile peer's end and the
// library's, both as Conns.
func ringPeer(t *testing.T) (peer, lib *sealbuf.Conn) {
	s, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *sealbuf.Conn {
		f := os.NewFile(uintptr(fd), "fuzz-ring-socket")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		return sealbuf.NewConn(c.(*net.UnixConn))
	}
	return conn(s[0]), conn(s[1])
}

// zeroedRing makes a ring memfd as a producer would: zeroed (sealtest's
// memfds carry a pattern), sealed shrink|grow.
func zeroedRing(t *testing.T, size int) *os.File {
	fd, err := unix.MemfdCreate("fuzz-ring", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "fuzz-ring")
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		t.Fatal(err)
	}
	rc, err := f.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) {
			_, err = unix.FcntlInt(fd, unix.F_ADD_SEALS, int(memfd.SealShrink|memfd.SealGrow))
		})
		if err == nil {
			err = cerr
		}
	}
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	return f
}

func mapRing(t *testing.T, f *os.File, size int) []byte {
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var mem []byte
	if cerr := rc.Control(func(fd uintptr) {
		mem, err = unix.Mmap(int(fd), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	}); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	return mem
}

func fuzzRingConsumer(t *testing.T, slots int, ops []byte) {
	pg := os.Getpagesize()
	size, entry, msgOff := ringLayout(slots)
	slotsFile := sealtest.Memfd(int64(slots*pg), memfd.SealShrink|memfd.SealGrow|memfd.SealFutureWrite).File(t)
	ringFile := zeroedRing(t, size)
	mem := mapRing(t, ringFile, size)
	defer unix.Munmap(mem)
	raw, conn := ringPeer(t)
	defer raw.Close()

	hello := []byte("sbpool\x00\x02")
	hello = binary.LittleEndian.AppendUint32(hello, uint32(slots))
	hello = binary.LittleEndian.AppendUint32(hello, fuzzHeader)
	hello = binary.LittleEndian.AppendUint64(hello, uint64(pg))
	hello = binary.LittleEndian.AppendUint64(hello, uint64(pg))
	if err := raw.SendFiles(hello, slotsFile, ringFile); err != nil {
		t.Fatal(err)
	}
	slotsFile.Close()
	ringFile.Close()
	r, err := pool.Accept(conn)
	if err != nil {
		t.Fatal(err)
	}
	ring := &rawRing{mem: mem, entry: entry, off: msgOff, slots: slots, head: (*atomic.Uint32)(unsafe.Pointer(&mem[ringMsgHead]))}
	hdr := make([]byte, 8) // shorter than the limit: io.ErrShortBuffer happens
	receive := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Millisecond)
		defer cancel()
		v, n, err := r.Receive(ctx, hdr)
		if n < 0 || n > len(hdr) {
			t.Fatalf("Receive returned n = %d for a %d-byte buffer", n, len(hdr))
		}
		if err != nil {
			if !consumerError(err) {
				t.Fatalf("Receive: error of no documented kind: %v", err)
			}
			return !errors.Is(err, io.EOF) && !errors.Is(err, context.DeadlineExceeded)
		}
		if b := v.Bytes(); len(b) != v.Len() || v.Len() > pg {
			t.Fatalf("a view of %d bytes (Len %d) of a %d-byte slot", len(b), v.Len(), pg)
		}
		_ = v.Bytes()[:v.Len()]
		if err := v.Release(); err != nil {
			t.Fatalf("Release: %v", err)
		}
		return true
	}
	for ; len(ops) >= 8; ops = ops[8:] {
		if ops[0]%8 == 5 {
			receive()
			continue
		}
		ring.apply(ops[:8], raw)
	}
	raw.Close()
	for i := 0; receive(); i++ { // what was published, then io.EOF
		if i > 4*slots+8 {
			t.Fatal("Receive made no progress after the hang-up")
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func consumerError(err error) bool {
	for _, kind := range []error{io.EOF, io.ErrShortBuffer, context.DeadlineExceeded, pool.ErrProtocol} {
		if errors.Is(err, kind) {
			return true
		}
	}
	return false
}

func fuzzRingProducer(t *testing.T, slots int, ops []byte) {
	raw, conn := ringPeer(t)
	defer raw.Close()
	p, err := pool.New(conn, slots, 64, pool.WithFutex(), pool.WithMaxHeader(fuzzHeader))
	if err != nil {
		t.Fatal(err)
	}
	var hb [64]byte
	_, files, err := raw.ReceiveFiles(hb[:])
	if err != nil || len(files) != 2 {
		t.Fatalf("hello: %v, %d descriptors", err, len(files))
	}
	size, _, _ := ringLayout(slots)
	mem := mapRing(t, files[1], size)
	defer unix.Munmap(mem)
	for _, f := range files {
		f.Close()
	}
	ring := &rawRing{mem: mem, entry: 16, off: ringRelOff, slots: slots, head: (*atomic.Uint32)(unsafe.Pointer(&mem[ringRelHead]))}
	call := func() {
		s, err := p.TryAcquire()
		if err != nil {
			if !producerError(err) {
				t.Fatalf("TryAcquire: error of no documented kind: %v", err)
			}
			return
		}
		if len(s.Bytes()) != 64 {
			t.Fatalf("a slot of %d bytes", len(s.Bytes()))
		}
		if err := s.Send(1, []byte("h")); err != nil && !producerError(err) {
			t.Fatalf("Send: error of no documented kind: %v", err)
		}
	}
	for ; len(ops) >= 8; ops = ops[8:] {
		if ops[0]%8 == 5 {
			call()
			continue
		}
		ring.apply(ops[:8], raw)
	}
	raw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; ; i++ { // the hang-up returns every slot
		s, err := p.Acquire(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if i > 4*slots+8 {
			t.Fatal("Acquire made no progress after the hang-up")
		}
		if err == nil {
			err = s.Send(1, nil)
		}
		if err != nil && !producerError(err) {
			t.Fatalf("Acquire: error of no documented kind: %v", err)
		}
	}
	if free := p.Free(); free != slots {
		t.Fatalf("%d of %d slots free after the hang-up", free, slots)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func producerError(err error) bool {
	for _, kind := range []error{io.EOF, pool.ErrFull, pool.ErrProtocol} {
		if errors.Is(err, kind) {
			return true
		}
	}
	return false
}
