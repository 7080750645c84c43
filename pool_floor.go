//go:build linux

package sealbuf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/sealbuf/sealbuf/memfd"
	"golang.org/x/sys/unix"
)

// PoolFloor is the floor that Pool is measured against: the least a
// reusable shared slot can cost. One memfd mapped on both sides, one
// notification per message and one release back, with plain read(2) and
// write(2) on the socket (blocking, no runtime poller), no checks, no
// locks, no contexts. It speaks the pool's wire format over unixpacket.
//
// It exists for benchmarks (BenchmarkPool, `sealbuf bench -modes
// pool-floor`). Beyond the seals at AcceptPoolFloor and the bounds of each
// record it trusts its peer: no generations, no double-release checks, no
// protection of a slot in flight. Do not use it with a peer you do not
// control; use Pool.
//
// Producer: NewPoolFloor, then Send per message, Drain to wait for every
// release, Close. Consumer: AcceptPoolFloor, then Next and Release per
// message until Next returns io.EOF, Close. The socket (a connected
// unixpacket socket, blocking or not) is borrowed: close it after Close.
type PoolFloor struct {
	sock     *os.File
	rc       syscall.RawConn
	file     *memfd.File
	mem      []byte
	slotSize int
	stride   int
	free     []uint32
	gen      []uint32
	inFlight int

	rec [poolRecordLen]byte
	io  func(fd uintptr)
	op  int // floorRead or floorWrite
	n   int
	err error
}

const (
	floorRead = iota
	floorWrite
)

// NewPoolFloor creates the floor's memfd of slots slots of slotSize bytes,
// maps it writable and sends it over sock.
func NewPoolFloor(sock *os.File, slots, slotSize int) (*PoolFloor, error) {
	if slots < 1 || slots > PoolMaxSlots || slotSize < 1 || slotSize > PoolMaxSlotSize {
		return nil, fmt.Errorf("sealbuf: pool floor: %d slots of %d bytes: out of range", slots, slotSize)
	}
	h := poolHello{slots: slots, slotSize: slotSize, stride: pageUp(slotSize)}
	file, mem, _, err := newPoolMemfd("sealbuf-pool-floor", slots*h.stride)
	if err != nil {
		return nil, err
	}
	f := &PoolFloor{sock: sock, file: file, mem: mem, slotSize: slotSize, stride: h.stride, gen: make([]uint32, slots)}
	f.io = f.doIO
	for i := slots - 1; i >= 0; i-- {
		f.free = append(f.free, uint32(i))
	}
	if f.rc, err = sock.SyscallConn(); err == nil {
		var hb [poolHelloLen]byte
		hello := h.append(hb[:0])
		err = file.Control(func(mfd int) error {
			var serr error
			if cerr := f.rc.Control(func(fd uintptr) {
				serr = unix.Sendmsg(int(fd), hello, unix.UnixRights(mfd), nil, unix.MSG_NOSIGNAL)
			}); cerr != nil {
				return cerr
			}
			return serr
		})
	}
	if err != nil {
		unmap(mem)
		file.Close()
		return nil, fmt.Errorf("sealbuf: pool floor: %w", err)
	}
	return f, nil
}

// Send copies src (at most the slot size) into a free slot and notifies
// the consumer, first waiting for a release when every slot is in flight.
func (f *PoolFloor) Send(src []byte) error {
	if len(f.free) == 0 {
		if err := f.readRelease(); err != nil {
			return err
		}
	}
	i := f.free[len(f.free)-1]
	f.free = f.free[:len(f.free)-1]
	f.gen[i]++
	off := int(i) * f.stride
	n := copy(f.mem[off:off+f.slotSize], src)
	poolRecord{kind: poolKindMessage, slot: i, gen: f.gen[i], length: uint32(n)}.put(f.rec[:])
	f.inFlight++
	return f.call(floorWrite)
}

// Drain waits until the consumer has released every slot.
func (f *PoolFloor) Drain() error {
	for f.inFlight > 0 {
		if err := f.readRelease(); err != nil {
			return err
		}
	}
	return nil
}

func (f *PoolFloor) readRelease() error {
	if err := f.call(floorRead); err != nil {
		return err
	}
	if f.n == 0 {
		return fmt.Errorf("sealbuf: pool floor: the consumer hung up: %w", io.EOF)
	}
	i := binary.LittleEndian.Uint32(f.rec[4:])
	if f.n != poolRecordLen || int(i) >= len(f.gen) {
		return errors.New("sealbuf: pool floor: bad release")
	}
	f.free = append(f.free, i)
	f.inFlight--
	return nil
}

// Close unmaps the pool and closes its memfd (not the socket: shut it down
// or close it afterwards, so the consumer sees end of file).
func (f *PoolFloor) Close() error {
	err := unmap(f.mem)
	f.mem = nil
	if cerr := f.file.Close(); err == nil {
		err = cerr
	}
	return err
}

// call runs one read or write of f.rec on the socket, waiting with poll(2)
// if the socket is non-blocking.
func (f *PoolFloor) call(op int) error {
	f.op, f.err = op, nil
	if err := f.rc.Control(f.io); err != nil {
		return err
	}
	return f.err
}

func (f *PoolFloor) doIO(fd uintptr) {
	f.n, f.err = floorIO(int(fd), f.op, f.rec[:])
}

// floorIO is one read(2) or write(2), retried after poll(2) on EAGAIN.
func floorIO(fd, op int, b []byte) (int, error) {
	for {
		var n int
		var err error
		ev := int16(unix.POLLIN)
		if op == floorRead {
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
	sock     *os.File
	rc       syscall.RawConn
	file     *memfd.File
	mem      []byte
	slotSize int
	stride   int
	slots    int

	rec [poolRecordLen]byte
	io  func(fd uintptr)
	op  int
	n   int
	err error
}

// AcceptPoolFloor receives a PoolFloor's memfd from sock and maps it
// read-only. It checks the seals like AcceptPool, and nothing later.
func AcceptPoolFloor(sock *os.File) (*PoolFloorReader, error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	var hb [poolHelloLen]byte
	oob := make([]byte, unix.CmsgSpace(4))
	var n, oobn int
	var rerr error
	if err := rc.Control(func(fd uintptr) {
		for {
			n, oobn, _, _, rerr = unix.Recvmsg(int(fd), hb[:], oob, unix.MSG_CMSG_CLOEXEC)
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
		return nil, fmt.Errorf("sealbuf: accept pool floor: %w", os.NewSyscallError("recvmsg", rerr))
	}
	var files []*os.File
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			if fds, err := unix.ParseUnixRights(&m); err == nil {
				for _, fd := range fds {
					files = append(files, os.NewFile(uintptr(fd), "pool-floor"))
				}
			}
		}
	}
	h, file, mem, _, err := openPool(hb[:n], files, -1)
	if err != nil {
		return nil, fmt.Errorf("sealbuf: accept pool floor: %w", err)
	}
	r := &PoolFloorReader{sock: sock, rc: rc, file: file, mem: mem, slotSize: h.slotSize, stride: h.stride, slots: h.slots}
	r.io = r.doIO
	return r, nil
}

// Next waits for the next message and returns its bytes (read-only, valid
// until Release). The producer hung up: io.EOF.
func (r *PoolFloorReader) Next() ([]byte, error) {
	r.op, r.err = floorRead, nil
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
	if r.n != poolRecordLen || i >= r.slots || n > r.slotSize {
		return nil, errors.New("sealbuf: pool floor: bad message")
	}
	off := i * r.stride
	return r.mem[off : off+n], nil
}

// Release hands the slot of the last Next back.
func (r *PoolFloorReader) Release() error {
	r.rec[0] = poolKindRelease
	binary.LittleEndian.PutUint32(r.rec[12:], 0)
	r.op, r.err = floorWrite, nil
	if err := r.rc.Control(r.io); err != nil {
		return err
	}
	return r.err
}

func (r *PoolFloorReader) doIO(fd uintptr) {
	r.n, r.err = floorIO(int(fd), r.op, r.rec[:])
}

// Close unmaps the pool and closes its memfd (not the socket).
func (r *PoolFloorReader) Close() error {
	err := unmap(r.mem)
	r.mem = nil
	if cerr := r.file.Close(); err == nil {
		err = cerr
	}
	return err
}
