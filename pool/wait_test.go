//go:build linux

package pool_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/pool"
)

// waitPair returns two Conns that wait in the kernel before they park.
func waitPair(t *testing.T, typ int) (*sealbuf.Conn, *sealbuf.Conn) {
	t.Helper()
	a, b := testutil.UnixPair(t, typ)
	w := sealbuf.WithWait(sealbuf.Wait{Kernel: sealbuf.MaxWait})
	ca, cb := sealbuf.NewConn(a, w), sealbuf.NewConn(b, w)
	t.Cleanup(func() { ca.Close(); cb.Close() })
	return ca, cb
}

// TestKernelWaitPool: a Writer and Reader over Conns with the option
// exchange messages, and a cancelled context or a Discard still wakes
// their waits.
func TestKernelWaitPool(t *testing.T) {
	for _, st := range testutil.SockTypes {
		t.Run(st.Name, func(t *testing.T) {
			pc, cc := waitPair(t, st.Type)
			p, err := pool.New(pc, 2, 4096)
			require.NoError(t, err)
			defer p.Close()
			r, err := pool.Accept(cc)
			require.NoError(t, err)
			defer r.Close()

			ctx := context.Background()
			go func() {
				for {
					v, _, err := r.Receive(ctx, nil)
					if err != nil {
						return
					}
					if v.Len() > 0 && v.Bytes()[0] != byte(v.Len()) {
						panic("wrong slot contents")
					}
					v.Release()
				}
			}()
			for i := range 500 {
				s, err := p.Acquire(ctx)
				require.NoError(t, err)
				n := i%4096 + 1
				s.Bytes()[0] = byte(n)
				require.NoError(t, s.Send(n, nil))
			}

			// Hold both slots: Acquire waits, and its context still ends it.
			var held []pool.Slot
			for len(held) < 2 {
				s, err := p.TryAcquire()
				if errors.Is(err, pool.ErrFull) {
					time.Sleep(time.Millisecond)
					continue
				}
				require.NoError(t, err)
				held = append(held, s)
			}
			cctx, cancel := context.WithTimeout(ctx, 3*time.Millisecond)
			defer cancel()
			_, err = p.Acquire(cctx)
			require.ErrorIs(t, err, context.DeadlineExceeded)

			// A Discard wakes an Acquire waiting on the socket.
			got := make(chan error, 1)
			go func() { _, err := p.Acquire(ctx); got <- err }()
			require.Eventually(t, func() bool { return pool.Blocked(p) }, 10*time.Second, 100*time.Microsecond, "Acquire never blocked")
			require.NoError(t, held[0].Discard())
			select {
			case err := <-got:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("Acquire did not wake after Discard")
			}
		})
	}
}

// TestSpinIdleCostsNoCPU: a side that waits with a spin budget spins for
// that long only; then it waits without using the CPU. Each side of a futex
// pool waits 300 ms for a peer that sends nothing, with a 5 ms spin: the
// process may use a few milliseconds of CPU, not the 300 ms a wait that kept
// spinning would. (CPU time, not wall time, is what is asserted.)
func TestSpinIdleCostsNoCPU(t *testing.T) {
	for _, st := range testutil.SockTypes {
		t.Run(st.Name, func(t *testing.T) {
			a, b := testutil.UnixPair(t, st.Type)
			w := sealbuf.WithWait(sealbuf.Wait{Spin: 5 * time.Millisecond, Kernel: time.Millisecond})
			p, err := pool.New(sealbuf.NewConn(a, w), 1, 4096, pool.WithFutex())
			require.NoError(t, err)
			defer p.Close()
			r, err := pool.Accept(sealbuf.NewConn(b, w))
			require.NoError(t, err)
			defer r.Close()

			const idle = 300 * time.Millisecond
			before := testutil.ProcessCPU()
			ctx, cancel := context.WithTimeout(context.Background(), idle)
			defer cancel()
			_, _, err = r.Receive(ctx, nil)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			used := testutil.ProcessCPU() - before
			require.Less(t, used, idle/3, "the consumer's idle wait used %v of CPU in %v", used, idle)

			s, err := p.Acquire(context.Background())
			require.NoError(t, err)
			require.NoError(t, s.Send(1, nil)) // the consumer never releases it
			before = testutil.ProcessCPU()
			ctx, cancel = context.WithTimeout(context.Background(), idle)
			defer cancel()
			_, err = p.Acquire(ctx)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			used = testutil.ProcessCPU() - before
			require.Less(t, used, idle/3, "the producer's idle wait used %v of CPU in %v", used, idle)
		})
	}
}

// TestConsumerGoneError: the error after the consumer hung up says so
// once, matches io.EOF, and does not repeat its prefix.
func TestConsumerGoneError(t *testing.T) {
	for _, fl := range poolFlavors {
		t.Run(fl.Name, func(t *testing.T) {
			p, r := newPoolPair(t, fl.Type, 1, 64)
			require.NoError(t, r.Close())
			s, err := p.Acquire(context.Background())
			if err == nil {
				err = s.Send(1, nil)
				if err == nil {
					_, err = p.Acquire(context.Background())
				}
			}
			require.ErrorIs(t, err, io.EOF)
			require.Equal(t, 1, strings.Count(err.Error(), "pool:"), "%v", err)
			require.Contains(t, err.Error(), "the consumer is gone")
		})
	}
}
