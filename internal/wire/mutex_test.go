//go:build linux

package wire

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMutexExcludes: many goroutines, some giving up on their context, never
// hold the lock at once, and every Lock eventually gets it.
func TestMutexExcludes(t *testing.T) {
	var m Mutex
	m.init()
	var held, total int
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				if g%2 == 1 && i%3 == 0 {
					ctx, cancel := context.WithTimeout(context.Background(), time.Microsecond)
					err := m.LockContext(ctx)
					cancel()
					if err != nil {
						continue
					}
				} else {
					m.Lock()
				}
				held++
				if held != 1 {
					panic("two holders")
				}
				total++
				held--
				m.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Positive(t, total)
	require.True(t, m.TryLock(), "free at the end")
	m.Unlock()
}

// TestMutexLockContext: a waiter gives up when its context ends, and the
// lock still passes to the next one.
func TestMutexLockContext(t *testing.T) {
	var m Mutex
	m.init()
	m.Lock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, m.LockContext(ctx), context.DeadlineExceeded)
	got := make(chan struct{})
	go func() { m.Lock(); close(got) }()
	for m.waiters.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	m.Unlock()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter was never woken")
	}
	m.Unlock()
	require.Panics(t, m.Unlock)
}
