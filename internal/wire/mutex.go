//go:build linux

package wire

import "context"

// Mutex serialises the senders (or the readers) of a Conn. Unlike
// sync.Mutex, a call waiting its turn can give up when its context ends
// (LockContext): a ReceiveContext behind a Receive that waits for ever, a
// SendContext behind a Send blocked on a full socket, still end with their
// ctx. It is a channel of one token; it allocates nothing. The zero Mutex
// is not usable: New makes the Conn's.
type Mutex struct{ ch chan struct{} }

func (m *Mutex) init() { m.ch = make(chan struct{}, 1) }

// Lock waits for the lock.
func (m *Mutex) Lock() { m.ch <- struct{}{} }

// TryLock takes the lock if it is free.
func (m *Mutex) TryLock() bool {
	select {
	case m.ch <- struct{}{}:
		return true
	default:
		return false
	}
}

// LockContext waits for the lock until ctx ends (nil: no context), and
// then returns ctx's error without it.
func (m *Mutex) LockContext(ctx context.Context) error {
	if ctx == nil || ctx.Done() == nil {
		m.Lock()
		return nil
	}
	select {
	case m.ch <- struct{}{}:
		return nil
	default:
	}
	select {
	case m.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Unlock releases the lock; unlocking a Mutex not locked is a bug.
func (m *Mutex) Unlock() {
	select {
	case <-m.ch:
	default:
		panic("wire: unlock of an unlocked Mutex")
	}
}
