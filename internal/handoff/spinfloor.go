//go:build linux

package handoff

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// spin-floor is the floor of any handoff through shared memory: one memfd,
// mapped writable by both processes once (no seals: it measures the
// handoff alone, not a trust model), holds a control page and one slot.
// The producer fills the slot and stores the message number in a word of
// the control page; the consumer, spinning on that word, checks the slot
// and stores the number in a second word, on which the producer spins. No
// system call on the message path but sched_yield: each side spins on the
// word for a while, then yields between looks, so that with both
// processes on one CPU (-pin same) the peer gets to run; on two CPUs it
// is a pure busy-wait (a yield with nothing else to run returns at once).
// The socket carries only the memfd, once.
//
// So that an idle consumer does not take CPU from the modes measured
// between its turns, the producer says when it goes idle (Idler): the
// consumer then parks on a futex, and the next message wakes it. The
// consumer also parks by itself after spinSelfPark without a message (a
// driver that never calls Idle).

func init() {
	Register(Mode{
		Name:     "spin-floor",
		Socket:   unix.SOCK_SEQPACKET,
		Supports: poolFits,
		Producer: newSpinFloorProducer,
		Consume:  consumeSpinFloor,
	})
}

const (
	// spinPure is how many looks at the word each wait takes before it
	// starts yielding between looks.
	spinPure = 1000
	// spinCheckEvery is how many yielding looks pass between checks of
	// the clock (the deadline, the consumer's self-park) and the park word.
	spinCheckEvery = 256
	// spinTimeout bounds a producer's wait for an ack: a consumer that
	// died is noticed.
	spinTimeout = 10 * time.Second
	// spinSelfPark is how long a consumer spins with no message before it
	// parks by itself.
	spinSelfPark = 100 * time.Millisecond
	// spinParkWait bounds each futex wait of a parked consumer, which then
	// looks whether the producer hung up.
	spinParkWait = 100 * time.Millisecond
	// spinDone in the message word tells the consumer to stop.
	spinDone = ^uint32(0)
)

// spinFloor is the shared control page and slot.
type spinFloor struct {
	mem  []byte
	seq  *atomic.Uint32 // producer → consumer: last message number + 1, or spinDone
	ack  *atomic.Uint32 // consumer → producer: last message checked + 1
	park *atomic.Uint32 // producer → consumer: 1 = no message for a while, park
	slot []byte
}

func newSpinFloor(mem []byte, size int) *spinFloor {
	page := os.Getpagesize()
	// Each word on a cache line pair of its own, so that spinning on one
	// does not pull the other's line back and forth.
	return &spinFloor{
		mem:  mem,
		seq:  (*atomic.Uint32)(unsafe.Pointer(&mem[0])),
		ack:  (*atomic.Uint32)(unsafe.Pointer(&mem[128])),
		park: (*atomic.Uint32)(unsafe.Pointer(&mem[256])),
		slot: mem[page : page+size],
	}
}

func schedYield() { unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }

// spinFutexWait blocks while *w == old, for at most d (shared futex: the
// word is in a MAP_SHARED mapping).
func spinFutexWait(w *atomic.Uint32, old uint32, d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), 0 /* FUTEX_WAIT */, uintptr(old), uintptr(unsafe.Pointer(&ts)), 0, 0)
}

func spinFutexWake(w *atomic.Uint32) {
	unix.RawSyscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), 1 /* FUTEX_WAKE */, 1, 0, 0, 0)
}

type spinFloorProducer struct {
	f *spinFloor
}

func newSpinFloorProducer(sock *os.File, size int) (Producer, error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	mem, err := newSharedMemfd(os.Getpagesize()+size, rc)
	if err != nil {
		return nil, err
	}
	return &spinFloorProducer{f: newSpinFloor(mem, size)}, nil
}

// newSharedMemfd makes a memfd of size bytes, maps it writable and
// populated, and sends it over the socket rc borrows (the memfd itself is
// closed: the mapping keeps the memory, the consumer has its descriptor).
func newSharedMemfd(size int, rc syscall.RawConn) (mem []byte, err error) {
	mfd, err := unix.MemfdCreate("sealbuf-spin-floor", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	defer unix.Close(mfd)
	if err := unix.Ftruncate(mfd, int64(size)); err != nil {
		return nil, os.NewSyscallError("ftruncate", err)
	}
	if mem, err = unix.Mmap(mfd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.Sendmsg(int(fd), []byte("S"), unix.UnixRights(mfd), nil, unix.MSG_NOSIGNAL)
	}); err != nil {
		serr = err
	}
	if serr != nil {
		unix.Munmap(mem)
		return nil, os.NewSyscallError("sendmsg", serr)
	}
	return mem, nil
}

func (p *spinFloorProducer) Note() string {
	return "1 slot, a word in the shared memfd each way, spin then sched_yield, raw calls"
}

func (p *spinFloorProducer) Send(k uint64) error {
	f := p.f
	Fill(f.slot, k)
	want := uint32(k + 1)
	if f.park.Swap(0) != 0 {
		f.seq.Store(want)
		spinFutexWake(f.seq) // the consumer may be parked
	} else {
		f.seq.Store(want)
	}
	var deadline time.Time
	for i := 0; ; i++ {
		if f.ack.Load() == want {
			return nil
		}
		if i < spinPure {
			continue
		}
		schedYield()
		if i%spinCheckEvery == 0 {
			now := time.Now()
			if deadline.IsZero() {
				deadline = now.Add(spinTimeout)
			} else if now.After(deadline) {
				return fmt.Errorf("no ack for message %d in %v", k, spinTimeout)
			}
		}
	}
}

// Idle tells the consumer to park until the next message.
func (p *spinFloorProducer) Idle() error {
	p.f.park.Store(1)
	return nil
}

func (p *spinFloorProducer) Close() error {
	p.f.seq.Store(spinDone)
	spinFutexWake(p.f.seq)
	return unix.Munmap(p.f.mem)
}

func consumeSpinFloor(sock *os.File, size int) error {
	oob, err := recvFloorControl(sock)
	if err != nil {
		return err
	}
	if len(oob) == 0 { // the producer hung up before it sent the memfd
		return nil
	}
	mfd, err := floorRights(oob, 0)
	if err != nil {
		return err
	}
	mem, err := unix.Mmap(mfd, 0, os.Getpagesize()+size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	unix.Close(mfd)
	if err != nil {
		return os.NewSyscallError("mmap", err)
	}
	defer unix.Munmap(mem)
	rc, err := sock.SyscallConn()
	if err != nil {
		return err
	}
	f := newSpinFloor(mem, size)
	for k := uint64(0); ; k++ {
		s, err := spinNext(f, uint32(k), rc)
		if err != nil || s == spinDone {
			return err
		}
		if s != uint32(k+1) {
			return fmt.Errorf("message number %d, want %d", s, k+1)
		}
		if err := Check(f.slot, k); err != nil {
			return err
		}
		f.ack.Store(s)
	}
}

// spinNext waits until the message word is no longer last and returns it;
// parked (see spinFloor), it looks every spinParkWait whether the
// producer hung up, which ends the wait with spinDone.
func spinNext(f *spinFloor, last uint32, rc syscall.RawConn) (uint32, error) {
	var since time.Time
	for i := 0; ; i++ {
		if s := f.seq.Load(); s != last {
			return s, nil
		}
		if i < spinPure {
			continue
		}
		schedYield()
		if i%spinCheckEvery != 0 {
			continue
		}
		if since.IsZero() {
			since = time.Now()
		}
		if f.park.Load() == 0 && time.Since(since) < spinSelfPark {
			continue
		}
		spinFutexWait(f.seq, last, spinParkWait)
		if f.seq.Load() == last {
			hup, err := hungUp(rc)
			if err != nil || hup {
				return spinDone, err
			}
		}
	}
}

// hungUp reports whether the peer closed its end of the socket.
func hungUp(rc syscall.RawConn) (bool, error) {
	var hup bool
	var perr error
	err := rc.Control(func(fd uintptr) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		var n int
		n, perr = unix.Poll(pfd, 0)
		hup = n > 0 && pfd[0].Revents&(unix.POLLHUP|unix.POLLIN) != 0
	})
	if err == nil && perr != nil && !errors.Is(perr, unix.EINTR) {
		err = os.NewSyscallError("poll", perr)
	}
	return hup, err
}
