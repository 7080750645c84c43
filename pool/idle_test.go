//go:build linux

package pool_test

import (
	"context"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf/pool"
)

// idleWait runs WaitIdle(ctx) on another goroutine; its result arrives
// on the channel.
func idleWait(ctx context.Context, p *pool.Writer) <-chan error {
	done := make(chan error, 1)
	go func() { done <- p.WaitIdle(ctx) }()
	return done
}

// idleSend acquires and sends n one-byte messages.
func idleSend(t *testing.T, p *pool.Writer, n int) {
	t.Helper()
	for range n {
		s, err := p.Acquire(context.Background())
		require.NoError(t, err)
		require.NoError(t, s.Send(1, nil))
	}
}

// idleReceive receives n messages and returns their views, held.
func idleReceive(t *testing.T, r *pool.Reader, n int) []pool.View {
	t.Helper()
	views := make([]pool.View, n)
	for i := range views {
		v, _, err := r.Receive(context.Background(), nil)
		require.NoError(t, err)
		views[i] = v
	}
	return views
}

// requireWaiting checks that WaitIdle has not returned, once the Writer
// is blocked on its socket with free slots free: it has read the releases
// sent so far (Free does not read while WaitIdle does), and with a slot
// still out it must not have returned.
func requireWaiting(t *testing.T, p *pool.Writer, done <-chan error, free int) {
	t.Helper()
	require.Eventually(t, func() bool {
		return pool.Blocked(p) && p.Free() == free
	}, 10*time.Second, time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("WaitIdle returned with a slot out: %v", err)
	default:
	}
}

// TestPoolWaitIdle: WaitIdle returns at once on an idle pool, waits while
// the consumer holds a view, and returns once the last one is released.
func TestPoolWaitIdle(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			const slots = 3
			p, r := newPoolPair(t, st.Type, slots, 64)
			ctx := context.Background()
			require.NoError(t, p.WaitIdle(ctx), "a fresh pool is idle")

			idleSend(t, p, 2)
			views := idleReceive(t, r, 2)
			done := idleWait(ctx, p)
			requireWaiting(t, p, done, slots-2)
			require.NoError(t, views[0].Release())
			requireWaiting(t, p, done, slots-1)
			require.NoError(t, views[1].Release())
			require.NoError(t, <-done)
			require.Equal(t, slots, p.Free())

			// Idle again: at once, with no read.
			require.NoError(t, p.WaitIdle(ctx))

			// A slot acquired and not sent is not free: discarding it
			// ends the wait.
			s, err := p.Acquire(ctx)
			require.NoError(t, err)
			done = idleWait(ctx, p)
			requireWaiting(t, p, done, slots-1)
			require.NoError(t, s.Discard())
			require.NoError(t, <-done)
		})
	}
}

// TestPoolWaitIdleContext: a view held past the context's end fails
// WaitIdle with the context's error, and the pool stays usable.
func TestPoolWaitIdleContext(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			p, r := newPoolPair(t, st.Type, 2, 64)
			idleSend(t, p, 1)
			v := idleReceive(t, r, 1)[0]

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			require.ErrorIs(t, p.WaitIdle(ctx), context.DeadlineExceeded)
			ctx, cancel = context.WithCancel(context.Background())
			cancel()
			require.ErrorIs(t, p.WaitIdle(ctx), context.Canceled)

			require.NoError(t, v.Release())
			require.NoError(t, p.WaitIdle(context.Background()))
			idleSend(t, p, 2) // still usable
			for _, v := range idleReceive(t, r, 2) {
				require.NoError(t, v.Release())
			}
			require.NoError(t, p.WaitIdle(context.Background()))
		})
	}
}

// TestPoolWaitIdleConsumerGone: a consumer that closes while it holds
// views fails WaitIdle with io.EOF (every slot is back, but not because it
// read them), and so does every later WaitIdle.
func TestPoolWaitIdleConsumerGone(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			const slots = 3
			p, r := newPoolPair(t, st.Type, slots, 64)
			idleSend(t, p, 2)
			idleReceive(t, r, 1)
			done := idleWait(context.Background(), p)
			requireWaiting(t, p, done, slots-2)
			require.NoError(t, r.Close())
			require.ErrorIs(t, <-done, io.EOF)
			require.Equal(t, slots, p.Free(), "every slot is back")
			require.ErrorIs(t, p.WaitIdle(context.Background()), io.EOF)
		})
	}
}

// TestPoolWaitIdleConsumerDies: a consumer process killed while it holds
// views fails WaitIdle with io.EOF.
func TestPoolWaitIdleConsumerDies(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			const slots, held = 4, 2
			sock, child := startPoolChild(t, "die-holding", strconv.Itoa(held), st.Type)
			p, err := pool.New(poolConnOf(t, sock), slots, 4096, poolOpts(st.Type)...)
			require.NoError(t, err)
			defer p.Close()
			idleSend(t, p, held)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			require.ErrorIs(t, p.WaitIdle(ctx), io.EOF) // until the child dies
			require.Equal(t, slots, p.Free())
			require.ErrorContains(t, child.Wait(), "killed")
		})
	}
}

// TestPoolWaitIdleClosed: WaitIdle fails with os.ErrClosed after Close,
// and a WaitIdle blocked when Close comes returns.
func TestPoolWaitIdleClosed(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			p, r := newPoolPair(t, st.Type, 2, 64)
			idleSend(t, p, 1)
			idleReceive(t, r, 1)
			done := idleWait(context.Background(), p)
			requireWaiting(t, p, done, 1)
			require.NoError(t, p.Close())
			requirePoolClosed(t, <-done)
			requirePoolClosed(t, p.WaitIdle(context.Background()))
		})
	}
}

// TestPoolWaitIdleWhileAcquiring: WaitIdle runs beside producers that
// Acquire and Send under back-pressure (more goroutines than slots) and
// a consumer that releases: it returns nil each time the pool was idle
// at some moment, starves no Acquire, and once the producers stop, the
// pool is idle with every slot free.
func TestPoolWaitIdleWhileAcquiring(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			const slots, producers, each = 2, 3, 300
			p, r := newPoolPair(t, st.Type, slots, 64)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			consumed := make(chan int, 1)
			go func() {
				n := 0
				defer func() { consumed <- n }()
				for {
					v, _, err := r.Receive(ctx, nil)
					if err != nil {
						return
					}
					n++
					if v.Release() != nil {
						return
					}
				}
			}()
			var wg sync.WaitGroup
			for range producers {
				wg.Go(func() {
					for range each {
						s, err := p.Acquire(ctx)
						if !assertNoError(t, err) {
							return
						}
						if !assertNoError(t, s.Send(1, nil)) {
							return
						}
					}
				})
			}
			stopped := make(chan struct{})
			go func() { wg.Wait(); close(stopped) }()
			waits := 0
			for running := true; running; {
				select {
				case <-stopped:
					running = false
				default:
				}
				require.NoError(t, p.WaitIdle(ctx))
				waits++
			}
			require.Equal(t, slots, p.Free())
			st := p.Stats()
			require.Equal(t, uint64(producers*each), st.Messages)
			require.Equal(t, uint64(producers*each), st.Releases)
			t.Logf("%d WaitIdle calls", waits)
			require.NoError(t, p.Close())
			require.Equal(t, producers*each, <-consumed)
		})
	}
}

// TestPoolFreeCountsQueued: Free takes the releases already sent, without
// an Acquire.
func TestPoolFreeCountsQueued(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			const slots = 3
			p, r := newPoolPair(t, st.Type, slots, 64)
			idleSend(t, p, 2)
			require.Equal(t, slots-2, p.Free())
			views := idleReceive(t, r, 2)
			for _, v := range views {
				require.NoError(t, v.Release())
			}
			require.NoError(t, r.Flush())
			require.Equal(t, slots, p.Free(), "the releases queued are counted")
		})
	}
}
