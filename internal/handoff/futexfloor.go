//go:build linux

package handoff

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pool-futex-floor answers the pool issue's question whether a futex beside
// the shared slots beats the socket as the notification. It is pool-floor
// with no socket on the message path: one memfd, mapped writable by both
// processes (no seals: a measurement of the wake-up alone, not of a
// trust model), holds a control page and one slot. The producer fills the
// slot, stores the message number in the control page's first word and
// wakes it (FUTEX_WAKE, shared); the consumer waits on that word
// (FUTEX_WAIT), checks the slot, stores the number in the second word and
// wakes it; the producer waits on that one. The socket carries only the
// memfd, once. A diagnostic mode: sealbuf bench -modes pool-floor,pool-futex-floor.

func init() {
	Register(Mode{
		Name:     "pool-futex-floor",
		Socket:   unix.SOCK_SEQPACKET,
		Supports: poolFits,
		Producer: newFutexFloorProducer,
		Consume:  consumeFutexFloor,
	})
}

// futexDone in the message word tells the consumer to stop.
const futexDone = ^uint32(0)

// futex(2) operations on a shared (not process-private) word; x/sys/unix
// does not name them.
const (
	futexWaitOp = 0 // FUTEX_WAIT
	futexWakeOp = 1 // FUTEX_WAKE
)

// futexTimeout bounds each wait, so that a peer that died is noticed.
const futexTimeout = 100 * time.Millisecond

type futexFloor struct {
	mem  []byte
	seq  *atomic.Uint32 // producer → consumer: last message number + 1
	ack  *atomic.Uint32 // consumer → producer: last message checked + 1
	slot []byte
}

func newFutexFloor(mem []byte, size int) *futexFloor {
	page := os.Getpagesize()
	return &futexFloor{
		mem:  mem,
		seq:  (*atomic.Uint32)(unsafe.Pointer(&mem[0])),
		ack:  (*atomic.Uint32)(unsafe.Pointer(&mem[64])),
		slot: mem[page : page+size],
	}
}

// wait blocks while *w == old (or until the timeout).
func futexWait(w *atomic.Uint32, old uint32) error {
	ts := unix.NsecToTimespec(int64(futexTimeout))
	_, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWaitOp, uintptr(old), uintptr(unsafe.Pointer(&ts)), 0, 0)
	switch e {
	case 0, unix.EAGAIN, unix.EINTR, unix.ETIMEDOUT:
		return nil
	}
	return os.NewSyscallError("futex wait", e)
}

func futexWake(w *atomic.Uint32) error {
	_, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWakeOp, 1, 0, 0, 0)
	if e != 0 {
		return os.NewSyscallError("futex wake", e)
	}
	return nil
}

type futexFloorProducer struct {
	f *futexFloor
}

func newFutexFloorProducer(sock *os.File, size int) (Producer, error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	total := os.Getpagesize() + size
	var mem []byte
	mem, err = newPoolFloorMemfd(total, 0, sendRights(rc, []byte("F")))
	if err != nil {
		return nil, err
	}
	return &futexFloorProducer{f: newFutexFloor(mem, size)}, nil
}

func (p *futexFloorProducer) Note() string {
	return "1 slot, a futex in the shared memfd each way, raw calls"
}

func (p *futexFloorProducer) Send(k uint64) error {
	f := p.f
	Fill(f.slot, k)
	want := uint32(k + 1)
	f.seq.Store(want)
	if err := futexWake(f.seq); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := f.ack.Load()
		if a == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no ack for message %d in 10 s", k)
		}
		if err := futexWait(f.ack, a); err != nil {
			return err
		}
	}
}

func (p *futexFloorProducer) Close() error {
	p.f.seq.Store(futexDone)
	futexWake(p.f.seq)
	return unix.Munmap(p.f.mem)
}

func consumeFutexFloor(sock *os.File, size int) error {
	oob, err := recvFloorControl(sock)
	if err != nil {
		return err
	}
	mfd, err := floorRights(oob, 0)
	if err != nil {
		return err
	}
	total := os.Getpagesize() + size
	mem, err := unix.Mmap(mfd, 0, total, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	unix.Close(mfd)
	if err != nil {
		return os.NewSyscallError("mmap", err)
	}
	defer unix.Munmap(mem)
	f := newFutexFloor(mem, size)
	for k := uint64(0); ; {
		s := f.seq.Load()
		switch {
		case s == futexDone:
			return nil
		case s == uint32(k+1):
			if err := Check(f.slot, k); err != nil {
				return err
			}
			f.ack.Store(s)
			if err := futexWake(f.ack); err != nil {
				return err
			}
			k++
		default:
			if err := futexWait(f.seq, s); err != nil {
				return err
			}
		}
	}
}
