//go:build linux

package wire

import (
	"context"
	"sync/atomic"
)

// Mutex serialises the senders (or the readers) of a Conn. Unlike
// sync.Mutex, a call waiting its turn can give up when its context ends
// (LockContext): a ReceiveContext behind a Receive that waits for ever, a
// SendContext behind a Send blocked on a full socket, still end with their
// ctx. The lock itself is an atomic word (one compare-and-swap to take it
// when it is free, as cheap as sync.Mutex); a waiter sleeps on a channel
// of one token that Unlock posts when anybody waits. It allocates nothing.
// The zero Mutex is not usable: New makes the Conn's.
type Mutex struct {
	locked  atomic.Int32 // 1 while held
	waiters atomic.Int32 // goroutines in the slow path
	wake    chan struct{}
}

func (m *Mutex) init() { m.wake = make(chan struct{}, 1) }

// Lock waits for the lock.
func (m *Mutex) Lock() {
	if m.locked.CompareAndSwap(0, 1) {
		return
	}
	m.lockSlow(noContext)
}

// noContext is the nil context lockSlow takes for "wait without one".
var noContext context.Context

// TryLock takes the lock if it is free.
func (m *Mutex) TryLock() bool { return m.locked.CompareAndSwap(0, 1) }

// LockContext waits for the lock until ctx ends (nil: no context), and
// then returns ctx's error without it.
func (m *Mutex) LockContext(ctx context.Context) error {
	if m.locked.CompareAndSwap(0, 1) {
		return nil
	}
	if ctx != nil && ctx.Done() == nil {
		ctx = nil
	}
	return m.lockSlow(ctx)
}

// lockSlow waits for the lock. A waiter counts itself before it looks
// again; Unlock frees the word before it looks at the count: either the
// waiter's look finds the word free, or Unlock sees the waiter and posts a
// token (a token nobody takes waits in the channel for the next waiter,
// which then just looks again).
func (m *Mutex) lockSlow(ctx context.Context) error {
	m.waiters.Add(1)
	defer m.waiters.Add(-1)
	for {
		if m.locked.CompareAndSwap(0, 1) {
			return nil
		}
		if ctx == nil {
			<-m.wake
			continue
		}
		select {
		case <-m.wake:
		case <-ctx.Done():
			return ctx.Err() // a token meant for us stays in the channel for the next waiter
		}
	}
}

// post leaves a token for a waiter, if none is waiting in the channel.
func (m *Mutex) post() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Unlock releases the lock; unlocking a Mutex not locked is a bug.
func (m *Mutex) Unlock() {
	if !m.locked.CompareAndSwap(1, 0) {
		panic("wire: unlock of an unlocked Mutex")
	}
	if m.waiters.Load() > 0 {
		m.post()
	}
}
