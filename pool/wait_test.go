//go:build linux

package pool_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/pool"
)

// waitPair returns two Conns that wait in the kernel before they park.
func waitPair(t *testing.T, typ int) (*sealbuf.Conn, *sealbuf.Conn) {
	t.Helper()
	a, b := poolSocketpair(t, typ)
	w := sealbuf.WithWait(sealbuf.Wait{Kernel: sealbuf.MaxWait})
	ca, cb := sealbuf.NewConn(a, w), sealbuf.NewConn(b, w)
	t.Cleanup(func() { ca.Close(); cb.Close() })
	return ca, cb
}

// TestKernelWaitPool: a Pool and PoolReader over Conns with the option
// exchange messages, and a cancelled context or a Discard still wakes
// their waits.
func TestKernelWaitPool(t *testing.T) {
	for _, st := range poolSockTypes {
		t.Run(st.name, func(t *testing.T) {
			pc, cc := waitPair(t, st.typ)
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
			time.Sleep(2 * time.Millisecond)
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
