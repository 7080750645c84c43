//go:build linux

package handoff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/pool"
)

// The pool modes hand every message through one reused shared slot: a pool
// of one slot of the message size, mapped once on each side, over
// unixpacket. The producer fills the slot in place and sends a 16-byte
// record; the consumer reads the slot in place, checks it and releases it.
// With one slot the release is the ack: the producer waits for it by
// acquiring the slot again, at the end of each Send, so that one message
// is in flight at a time and its whole cost falls inside Send.
//
// pool is the library (pool.New, Acquire, Send; pool.Accept,
// Receive, Release) in its latency configuration: pool.WithFutex (records
// in a shared ring, futex wake-ups) and WithWait. pool-floor is
// the same steps in raw x/sys/unix calls on a blocking socket
// (PoolFloor): the floor the issue measures the pool against;
// pool-futex-floor (futexfloor.go) is the futex's own floor.

func init() {
	Register(Mode{
		Name:     "pool",
		Socket:   unix.SOCK_SEQPACKET,
		Supports: poolFits,
		Producer: func(sock *os.File, size int) (Producer, error) { return newPoolProducer(sock, size, poolFast) },
		Consume:  func(sock *os.File, size int) error { return consumePool(sock, size, poolFast) },
	})
	Register(Mode{
		Name:     "pool-spin",
		Socket:   unix.SOCK_SEQPACKET,
		Supports: poolFits,
		Producer: func(sock *os.File, size int) (Producer, error) { return newPoolProducer(sock, size, poolSpin) },
		Consume:  func(sock *os.File, size int) error { return consumePool(sock, size, poolSpin) },
	})
	Register(Mode{
		Name:     "pool-floor",
		Socket:   unix.SOCK_SEQPACKET,
		Supports: poolFits,
		Producer: newPoolFloorProducer,
		Consume:  consumePoolFloor,
	})
}

// poolFits reports whether a pool can have one slot of size bytes.
func poolFits(size int) error {
	if size < 1 || int64(size) > pool.MaxSlotSize {
		return fmt.Errorf("a pool slot holds 1 to %d bytes, not %d", int64(pool.MaxSlotSize), size)
	}
	return nil
}

type poolProducer struct {
	pool *pool.Writer
	slot pool.Slot // acquired: the next message goes into it
	held bool
	size int
	cfg  poolConfig
}

// poolConfig is how a pool mode configures the library.
type poolConfig struct {
	wait  time.Duration // WithWait's Kernel
	spin  time.Duration // WithWait's Spin
	futex bool          // WithFutex
}

func (c poolConfig) connOption() sealbuf.ConnOption {
	return sealbuf.WithWait(sealbuf.Wait{Spin: c.spin, Kernel: c.wait})
}

// poolWait is how long the pool mode's Conns wait in the kernel before the
// netpoller (WithWait): the ping-pong latency configuration.
const poolWait = time.Millisecond

// The pool modes' configurations: pool, and the diagnostic modes
// pool-socket (records over the socket) and pool-netpoll (that, and no
// WithWait).
// poolSpinBudget is pool-spin's Spin: long enough to cover the peer's
// fill or check of a message up to 64 KiB on this kind of machine.
const poolSpinBudget = 200 * time.Microsecond

var (
	poolFast    = poolConfig{wait: poolWait, futex: true}
	poolSpin    = poolConfig{wait: poolWait, spin: poolSpinBudget, futex: true}
	poolSocket  = poolConfig{wait: poolWait}
	poolNetpoll = poolConfig{}
)

func (c poolConfig) poolOptions() []pool.Option {
	if c.futex {
		return []pool.Option{pool.WithFutex()}
	}
	return nil
}

func newPoolProducer(sock *os.File, size int, cfg poolConfig) (Producer, error) {
	conn, err := newConn(sock, cfg.connOption())
	if err != nil {
		return nil, err
	}
	p, err := pool.New(conn, 1, size, cfg.poolOptions()...)
	if err != nil {
		conn.Close()
		return nil, err
	}
	s, err := p.Acquire(context.Background())
	if err != nil {
		p.Close()
		return nil, err
	}
	return &poolProducer{pool: p, slot: s, held: true, size: size, cfg: cfg}, nil
}

func (p *poolProducer) Note() string {
	note := "1 slot: Acquire, fill, Send; Receive, Release"
	if p.cfg.futex {
		note += "; pool.WithFutex"
	}
	if p.cfg.wait > 0 || p.cfg.spin > 0 {
		return note + fmt.Sprintf("; WithWait(Spin %v, Kernel %v)", p.cfg.spin, p.cfg.wait)
	}
	return note + "; netpoller"
}

func (p *poolProducer) Send(k uint64) error {
	if !p.held {
		return errors.New("no slot acquired (an earlier message failed)")
	}
	Fill(p.slot.Bytes(), k)
	if err := p.slot.Send(p.size, nil); err != nil {
		return err
	}
	p.held = false
	// The consumer's release is the ack: wait for it now.
	s, err := p.pool.Acquire(context.Background())
	if err != nil {
		return fmt.Errorf("wait for the release: %w", err)
	}
	p.slot, p.held = s, true
	return nil
}

func (p *poolProducer) Close() error {
	if p.held {
		p.slot.Discard()
		p.held = false
	}
	return p.pool.Close()
}

func consumePool(sock *os.File, size int, cfg poolConfig) error {
	conn, err := newConn(sock, cfg.connOption())
	if err != nil {
		return err
	}
	r, err := pool.Accept(conn)
	if err != nil {
		conn.Close()
		return err
	}
	defer r.Close()
	if r.SlotSize() != size {
		return fmt.Errorf("pool of %d-byte slots, want %d", r.SlotSize(), size)
	}
	ctx := context.Background()
	for k := uint64(0); ; k++ {
		v, _, err := r.Receive(ctx, nil)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if v.Len() != size {
			v.Release()
			return fmt.Errorf("message %d: %d bytes, want %d", k, v.Len(), size)
		}
		if err := Check(v.Bytes(), k); err != nil {
			v.Release()
			return err
		}
		if err := v.Release(); err != nil {
			return err
		}
	}
}

type poolFloorProducer struct {
	floor *PoolFloor
	slot  []byte // acquired: the next message goes into it
	size  int
}

func newPoolFloorProducer(sock *os.File, size int) (Producer, error) {
	f, err := NewPoolFloor(sock, 1, size)
	if err != nil {
		return nil, err
	}
	slot, err := f.Acquire()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &poolFloorProducer{floor: f, slot: slot, size: size}, nil
}

func (p *poolFloorProducer) Note() string {
	return "1 slot, raw x/sys/unix calls, blocking socket"
}

func (p *poolFloorProducer) Send(k uint64) error {
	if p.slot == nil {
		return errors.New("no slot acquired (an earlier message failed)")
	}
	Fill(p.slot, k)
	if err := p.floor.Send(p.size); err != nil {
		return err
	}
	p.slot = nil
	slot, err := p.floor.Acquire() // waits for the release: the ack
	if err != nil {
		return fmt.Errorf("wait for the release: %w", err)
	}
	p.slot = slot
	return nil
}

func (p *poolFloorProducer) Close() error { return p.floor.Close() }

func consumePoolFloor(sock *os.File, size int) error {
	r, err := AcceptPoolFloor(sock)
	if err != nil {
		return err
	}
	defer r.Close()
	for k := uint64(0); ; k++ {
		b, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if len(b) != size {
			return fmt.Errorf("message %d: %d bytes, want %d", k, len(b), size)
		}
		if err := Check(b, k); err != nil {
			return err
		}
		if err := r.Release(); err != nil {
			return err
		}
	}
}
