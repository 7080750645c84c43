//go:build linux

package handoff

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
)

// PoolFloor is the floor that pool.Writer is measured against: the least
// a reusable shared slot can cost. One memfd mapped on both sides, one
// notification per message and one release back, with plain read(2) and
// write(2) on the socket (blocking, no runtime poller), no checks, no
// locks, no contexts. It is written in raw x/sys/unix calls, not with the
// library, and speaks the pool's wire format (docs/pool.md, "Wire
// format") over unixpacket: a pool.Reader can read it, and
// PoolFloorReader can read a pool.Writer.
//
// It exists for benchmarks (the pool-floor mode, BenchmarkPool). Beyond the
// seals at AcceptPoolFloor and the bounds of each record it trusts its
// peer: no generation checks, no double-release checks, no protection of a
// slot in flight. Never use it with a peer you do not control.
//
// Producer: NewPoolFloor, then per message Acquire, fill the slot, Send;
// Drain to wait for every release; Close. Consumer: AcceptPoolFloor, then
// Next and Release per message until Next returns io.EOF; Close. The
// socket (a connected unixpacket socket, blocking or not) is borrowed:
// close it after Close.
type PoolFloor struct {
	rc       syscall.RawConn
	mem      []byte
	slotSize int
	stride   int
	free     []uint32
	gen      []uint32
	cur      int // the acquired slot, or -1
	inFlight int

	rec [poolFloorRecordLen]byte
	io  func(fd uintptr)
	op  int // pfRead or pfWrite
	n   int
	err error
}

// The pool's wire format (sealbuf's pool_wire.go), the parts the floor
// uses.
const (
	poolFloorHelloLen  = 32
	poolFloorRecordLen = 16
	poolFloorMagic     = "sbpool\x00\x01"
	poolFloorMaxSlots  = 128
	poolFloorMaxSize   = 1 << 31

	// poolFloorSeals are the seals every pool carries, and the consumer
	// requires: a fixed size, no new writable mapping or write.
	poolFloorSeals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_FUTURE_WRITE
)

const (
	pfRead = iota
	pfWrite
)

// NewPoolFloor creates a memfd of slots slots of slotSize bytes (each slot
// starting on a page), sized and sealed shrink|grow, mapped writable and
// populated, then sealed future_write|seal, and sends it over sock with
// the hello.
func NewPoolFloor(sock *os.File, slots, slotSize int) (*PoolFloor, error) {
	if slots < 1 || slots > poolFloorMaxSlots || slotSize < 1 || int64(slotSize) > poolFloorMaxSize {
		return nil, fmt.Errorf("pool floor: %d slots of %d bytes: out of range", slots, slotSize)
	}
	page := os.Getpagesize()
	stride := (slotSize + page - 1) &^ (page - 1)
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("pool floor: %w", err)
	}
	var hello [poolFloorHelloLen]byte
	copy(hello[:], poolFloorMagic)
	binary.LittleEndian.PutUint32(hello[8:], uint32(slots))
	binary.LittleEndian.PutUint32(hello[12:], 0) // no headers
	binary.LittleEndian.PutUint64(hello[16:], uint64(slotSize))
	binary.LittleEndian.PutUint64(hello[24:], uint64(stride))
	mem, err := newPoolFloorMemfd(slots*stride, unix.F_SEAL_FUTURE_WRITE|unix.F_SEAL_SEAL, sendRights(rc, hello[:]))
	if err != nil {
		return nil, fmt.Errorf("pool floor: %w", err)
	}
	f := &PoolFloor{rc: rc, mem: mem, slotSize: slotSize, stride: stride, gen: make([]uint32, slots), cur: -1}
	f.io = f.doIO
	for i := slots - 1; i >= 0; i-- {
		f.free = append(f.free, uint32(i))
	}
	return f, nil
}

// sendRights returns a send for newPoolFloorMemfd: one sendmsg of
// payload with the memfd attached, on the socket rc borrows.
func sendRights(rc syscall.RawConn, payload []byte) func(mfd int) error {
	return func(mfd int) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.Sendmsg(int(fd), payload, unix.UnixRights(mfd), nil, unix.MSG_NOSIGNAL)
		}); err != nil {
			return err
		}
		return os.NewSyscallError("sendmsg", serr)
	}
}

// newPoolFloorMemfd makes the pool's memfd and mapping, adds seals (after
// shrink|grow and the writable mapping: future_write|seal for a pool, 0
// when both sides map it writable) and hands the descriptor to send; the
// memfd is closed when it returns (the mapping keeps the memory, and the
// consumer has its own descriptor).
func newPoolFloorMemfd(size, seals int, send func(mfd int) error) (mem []byte, err error) {
	flags := unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING | unix.MFD_NOEXEC_SEAL
	mfd, err := unix.MemfdCreate("sealbuf-pool-floor", flags)
	if err == unix.EINVAL { // kernels before 6.3
		mfd, err = unix.MemfdCreate("sealbuf-pool-floor", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	defer unix.Close(mfd)
	defer func() {
		if err != nil && mem != nil {
			unix.Munmap(mem)
			mem = nil
		}
	}()
	if err := unix.Ftruncate(mfd, int64(size)); err != nil {
		return nil, os.NewSyscallError("ftruncate", err)
	}
	if _, err := unix.FcntlInt(uintptr(mfd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW); err != nil {
		return nil, os.NewSyscallError("fcntl F_ADD_SEALS", err)
	}
	if mem, err = unix.Mmap(mfd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	if seals != 0 {
		if _, err = unix.FcntlInt(uintptr(mfd), unix.F_ADD_SEALS, seals); err != nil {
			return mem, os.NewSyscallError("fcntl F_ADD_SEALS", err)
		}
	}
	return mem, send(mfd)
}

// Acquire returns a free slot's memory (slot size bytes, writable, shared
// with the consumer), first waiting for a release when every slot is in
// flight. Fill it, then Send. A slot acquired and not sent yet is returned
// again.
func (f *PoolFloor) Acquire() ([]byte, error) {
	if f.cur < 0 {
		if len(f.free) == 0 {
			if err := f.readRelease(); err != nil {
				return nil, err
			}
		}
		f.cur = int(f.free[len(f.free)-1])
		f.free = f.free[:len(f.free)-1]
		f.gen[f.cur]++
	}
	off := f.cur * f.stride
	return f.mem[off : off+f.slotSize : off+f.slotSize], nil
}

// Send hands the first n bytes of the acquired slot to the consumer.
func (f *PoolFloor) Send(n int) error {
	if f.cur < 0 || n < 0 || n > f.slotSize {
		return fmt.Errorf("pool floor: send of %d bytes with slot %d acquired", n, f.cur)
	}
	i := uint32(f.cur)
	f.rec = [poolFloorRecordLen]byte{0: 'M'}
	binary.LittleEndian.PutUint32(f.rec[4:], i)
	binary.LittleEndian.PutUint32(f.rec[8:], f.gen[i])
	binary.LittleEndian.PutUint32(f.rec[12:], uint32(n))
	if err := f.call(pfWrite); err != nil {
		return err
	}
	f.cur = -1
	f.inFlight++
	return nil
}

// Drain waits until the consumer has released every slot sent.
func (f *PoolFloor) Drain() error {
	for f.inFlight > 0 {
		if err := f.readRelease(); err != nil {
			return err
		}
	}
	return nil
}

// readRelease reads one release message of one record, as PoolFloorReader
// sends them (a pool.Reader may batch several records in one
// message when it falls behind; the floor does not handle that).
func (f *PoolFloor) readRelease() error {
	if err := f.call(pfRead); err != nil {
		return err
	}
	if f.n == 0 {
		return fmt.Errorf("pool floor: the consumer hung up: %w", io.EOF)
	}
	i := binary.LittleEndian.Uint32(f.rec[4:])
	if f.n != poolFloorRecordLen || f.rec[0] != 'R' || int(i) >= len(f.gen) {
		return errors.New("pool floor: bad release")
	}
	f.free = append(f.free, i)
	f.inFlight--
	return nil
}

// Close unmaps the pool (not the socket: close it afterwards, so the
// consumer sees end of file).
func (f *PoolFloor) Close() error {
	if f.mem == nil {
		return nil
	}
	err := unix.Munmap(f.mem)
	f.mem = nil
	return os.NewSyscallError("munmap", err)
}

// call runs one read or write of f.rec on the socket.
func (f *PoolFloor) call(op int) error {
	f.op, f.err = op, nil
	if err := f.rc.Control(f.io); err != nil {
		return err
	}
	return f.err
}

func (f *PoolFloor) doIO(fd uintptr) {
	f.n, f.err = poolFloorIO(int(fd), f.op, f.rec[:])
}

// poolFloorIO is one read(2) or write(2), retried after poll(2) on EAGAIN
// (a non-blocking socket). A peer that hung up reads as 0 bytes.
func poolFloorIO(fd, op int, b []byte) (int, error) {
	for {
		var n int
		var err error
		ev := int16(unix.POLLIN)
		if op == pfRead {
			n, err = unix.Read(fd, b)
		} else {
			n, err = unix.Write(fd, b)
			ev = unix.POLLOUT
		}
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
		case unix.EAGAIN:
			pfd := [1]unix.PollFd{{Fd: int32(fd), Events: ev}}
			if _, err := unix.Poll(pfd[:], -1); err != nil && err != unix.EINTR {
				return 0, os.NewSyscallError("poll", err)
			}
		case unix.ECONNRESET, unix.EPIPE:
			return 0, nil
		default:
			return 0, os.NewSyscallError("socket", err)
		}
	}
}

// PoolFloorReader is the consumer side of PoolFloor.
type PoolFloorReader struct {
	rc       syscall.RawConn
	mem      []byte
	slotSize int
	stride   int
	slots    int

	rec [poolFloorRecordLen]byte
	io  func(fd uintptr)
	op  int
	n   int
	err error
}

// AcceptPoolFloor receives a pool's hello and memfd from sock (from
// NewPoolFloor or pool.New), checks the hello's bounds, that the
// memfd is sealed at least shrink|grow|future_write (or fails matching
// sealbuf.ErrNotSealed) and has the size the hello announces, and maps it
// read-only. It checks nothing later.
func AcceptPoolFloor(sock *os.File) (*PoolFloorReader, error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	var hb [poolFloorHelloLen + 1]byte
	oob := make([]byte, unix.CmsgSpace(4*4))
	var n, oobn, flags int
	var rerr error
	if err := rc.Control(func(fd uintptr) {
		for {
			n, oobn, flags, _, rerr = unix.Recvmsg(int(fd), hb[:], oob, unix.MSG_CMSG_CLOEXEC)
			if rerr != unix.EAGAIN && rerr != unix.EINTR {
				return
			}
			pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			unix.Poll(pfd[:], -1)
		}
	}); err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, fmt.Errorf("accept pool floor: %w", os.NewSyscallError("recvmsg", rerr))
	}
	var fds []int
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			if got, err := unix.ParseUnixRights(&m); err == nil {
				fds = append(fds, got...)
			}
		}
	}
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	if flags&unix.MSG_CTRUNC != 0 || len(fds) != 1 {
		return nil, fmt.Errorf("accept pool floor: %d descriptors with the hello, want 1", len(fds))
	}
	b := hb[:n]
	if len(b) != poolFloorHelloLen || string(b[:8]) != poolFloorMagic {
		return nil, fmt.Errorf("accept pool floor: a %d-byte first message, not a pool hello", len(b))
	}
	slots := binary.LittleEndian.Uint32(b[8:])
	slotSize := binary.LittleEndian.Uint64(b[16:])
	stride := binary.LittleEndian.Uint64(b[24:])
	if slots < 1 || slots > poolFloorMaxSlots || slotSize < 1 || slotSize > poolFloorMaxSize || stride < slotSize || stride > 1<<40 {
		return nil, fmt.Errorf("accept pool floor: hello announces %d slots of %d bytes, stride %d: out of range", slots, slotSize, stride)
	}
	size := int(slots) * int(stride)
	mem, err := mapPoolFloor(fds[0], size)
	if err != nil {
		return nil, fmt.Errorf("accept pool floor: %w", err)
	}
	r := &PoolFloorReader{rc: rc, mem: mem, slotSize: int(slotSize), stride: int(stride), slots: int(slots)}
	r.io = r.doIO
	return r, nil
}

// mapPoolFloor checks the received memfd's seals and size and maps it
// read-only.
func mapPoolFloor(mfd, size int) ([]byte, error) {
	seals, err := unix.FcntlInt(uintptr(mfd), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, fmt.Errorf("not a memfd: %w", os.NewSyscallError("fcntl F_GET_SEALS", err))
	}
	if seals&poolFloorSeals != poolFloorSeals {
		return nil, fmt.Errorf("seals %#x lack shrink|grow|future_write (%#x): %w", seals, poolFloorSeals, sealbuf.ErrNotSealed)
	}
	var st unix.Stat_t
	if err := unix.Fstat(mfd, &st); err != nil {
		return nil, os.NewSyscallError("fstat", err)
	}
	if st.Size != int64(size) {
		return nil, fmt.Errorf("memfd has %d bytes, the hello announces %d", st.Size, size)
	}
	mem, err := unix.Mmap(mfd, 0, size, unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	return mem, os.NewSyscallError("mmap", err)
}

// Next waits for the next message and returns its bytes (read-only, valid
// until Release). The producer hung up: io.EOF.
func (r *PoolFloorReader) Next() ([]byte, error) {
	r.op, r.err = pfRead, nil
	if err := r.rc.Control(r.io); err != nil {
		return nil, err
	}
	if r.err != nil {
		return nil, r.err
	}
	if r.n == 0 {
		return nil, io.EOF
	}
	i := int(binary.LittleEndian.Uint32(r.rec[4:]))
	n := int(binary.LittleEndian.Uint32(r.rec[12:]))
	if r.n != poolFloorRecordLen || r.rec[0] != 'M' || i >= r.slots || n > r.slotSize {
		return nil, errors.New("pool floor: bad message")
	}
	off := i * r.stride
	return r.mem[off : off+n : off+n], nil
}

// Release hands the slot of the last Next back: its record, as a release.
func (r *PoolFloorReader) Release() error {
	r.rec[0] = 'R'
	binary.LittleEndian.PutUint32(r.rec[12:], 0)
	r.op, r.err = pfWrite, nil
	if err := r.rc.Control(r.io); err != nil {
		return err
	}
	return r.err
}

func (r *PoolFloorReader) doIO(fd uintptr) {
	r.n, r.err = poolFloorIO(int(fd), r.op, r.rec[:])
}

// Close unmaps the pool (not the socket).
func (r *PoolFloorReader) Close() error {
	if r.mem == nil {
		return nil
	}
	err := unix.Munmap(r.mem)
	r.mem = nil
	return os.NewSyscallError("munmap", err)
}
