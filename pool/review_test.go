//go:build linux

package pool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/pool"
)

// TestPoolReviewBatchedDescriptorsClosed: a consumer over packets reads up
// to 16 queued messages with one recvmmsg and hands them out one per
// Receive. A hostile producer that attaches descriptors to a message the
// consumer has read but not handed out yet must not leak them when the
// consumer closes: every descriptor the kernel installs is closed.
func TestPoolReviewBatchedDescriptorsClosed(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	junk, err := os.Open("/dev/null")
	require.NoError(t, err)
	defer junk.Close()
	fds := testutil.CountFDs(t)
	a, b := testutil.UnixPair(t, unix.SOCK_SEQPACKET)
	pc := sealbuf.NewConn(a)
	require.NoError(t, pc.SendFiles(poolHello(4, 64, 100, page), rawPoolMemfd(t, 4*page, poolSeals)))
	r, err := pool.Accept(sealbuf.NewConn(b))
	require.NoError(t, err)
	require.NoError(t, pc.Send(poolRecord('M', 0, 1, 10)))
	// Three descriptors attached to the second and third messages.
	require.NoError(t, pc.SendFiles(poolRecord('M', 1, 1, 10), junk, junk))
	require.NoError(t, pc.SendFiles(poolRecord('M', 2, 1, 10), junk))
	v, _, err := r.Receive(context.Background(), nil)
	require.NoError(t, err)
	require.Equal(t, 0, v.Slot())
	require.NoError(t, r.Close())
	require.NoError(t, pc.Close())
	require.NoError(t, junk.Close())
	require.Equal(t, fds, testutil.CountFDs(t), "descriptors attached to batched messages leaked")
}

// TestPoolReviewErrorPrefix: errors say "pool:" once.
func TestPoolReviewErrorPrefix(t *testing.T) {
	t.Run("accept", func(t *testing.T) {
		pc, cc := poolConns(t, unix.SOCK_SEQPACKET)
		require.NoError(t, pc.SendFiles([]byte("not a hello"), rawPoolMemfd(t, page, poolSeals)))
		_, err := pool.Accept(cc)
		require.ErrorIs(t, err, pool.ErrProtocol)
		require.Equal(t, 1, strings.Count(err.Error(), "pool:"), "%v", err)
	})
	for _, fl := range poolFlavors {
		t.Run("receive deadline "+fl.Name, func(t *testing.T) {
			pc, cc := poolConns(t, fl.Type)
			p, err := pool.New(pc, 1, 64, poolOpts(fl.Type)...)
			require.NoError(t, err)
			defer p.Close()
			require.NoError(t, cc.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
			r, err := pool.Accept(cc)
			require.NoError(t, err)
			defer r.Close()
			_, _, err = r.Receive(context.Background(), nil)
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
			require.Equal(t, 1, strings.Count(err.Error(), "pool:"), "%v", err)
		})
	}
}

// TestPoolReviewHandBackWhileReleaseBlocked: a producer that never reads
// its full socket; one goroutine's View.Release blocks sending (it may:
// only the write deadline bounds it). Receive(ctx) on another goroutine
// refuses a message and hands its slot back: it must still end with its
// ctx, not wait behind the blocked Release for the Conn's send lock.
func TestPoolReviewHandBackWhileReleaseBlocked(t *testing.T) {
	for _, st := range testutil.SockTypes {
		t.Run(st.Name, func(t *testing.T) {
			pc, cons, r := hostileProducerRaw(t, st.Type, 2, 100)
			require.NoError(t, pc.Send(poolRecord('M', 0, 1, 1)))
			v, _, err := r.Receive(context.Background(), nil)
			require.NoError(t, err)
			fillSocket(t, cons)
			released := make(chan error, 1)
			go func() { released <- v.Release() }() // blocks: the socket is full
			time.Sleep(20 * time.Millisecond)
			require.NoError(t, pc.Send(poolRecord('M', 1, 1, 101))) // a length past the slot: handed back
			err = hostileWithin(t, 5*time.Second, "Receive handing a slot back while a Release blocks", func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				_, _, err := r.Receive(ctx, nil)
				return err
			})
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.ErrorIs(t, err, pool.ErrBadLength)
			require.NoError(t, r.Close())
			<-released
		})
	}
}

// TestPoolReviewStress runs producers (Acquire with contexts that end at
// random, Send, Discard, TryAcquire, Free, WaitIdle) against a consumer
// (Receive with contexts that end at random, Release, Flush) on several
// goroutines, then closes both sides while everything is in flight: no
// hang, no panic, no race (run it with -race), and only the errors the
// API names.
func TestPoolReviewStress(t *testing.T) {
	for k, fl := range poolFlavors {
		t.Run(fl.Name, func(t *testing.T) {
			p, r := newPoolPair(t, fl.Type, 4, 256, pool.WithMaxHeader(32))
			var sent, received atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			okErr := func(err error) bool {
				return err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
					errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, pool.ErrFull)
			}
			var bad atomic.Value
			note := func(what string, err error) {
				if !okErr(err) {
					bad.CompareAndSwap(nil, fmt.Errorf("%s: %w", what, err))
				}
			}
			ctxFor := func(i int) (context.Context, context.CancelFunc) {
				switch i % 3 {
				case 0:
					return context.WithTimeout(context.Background(), time.Duration(i%7)*100*time.Microsecond)
				case 1:
					ctx, cancel := context.WithCancel(context.Background())
					time.AfterFunc(time.Duration(i%5)*50*time.Microsecond, cancel)
					return ctx, cancel
				}
				return context.Background(), func() {}
			}
			for g := range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := g; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						ctx, cancel := ctxFor(i)
						var s pool.Slot
						var err error
						switch i % 11 {
						case 3:
							s, err = p.TryAcquire()
						case 7:
							_ = p.Free()
							err = p.WaitIdle(ctx)
							note("wait idle", err)
							cancel()
							continue
						default:
							s, err = p.Acquire(ctx)
						}
						cancel()
						note("acquire", err)
						if err != nil {
							if errors.Is(err, os.ErrClosed) {
								return
							}
							continue
						}
						if i%5 == 0 {
							note("discard", s.Discard())
							continue
						}
						if b := s.Bytes(); b != nil {
							b[0] = byte(i)
						}
						err = s.Send(1+i%256, []byte("hdr"))
						note("send", err)
						if err == nil {
							sent.Add(1)
						}
						if err != nil && !errors.Is(err, io.EOF) {
							_ = s.Discard()
						}
					}
				}()
			}
			for g := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					hdr := make([]byte, 32)
					for i := g; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						ctx, cancel := ctxFor(i)
						v, _, err := r.Receive(ctx, hdr)
						cancel()
						note("receive", err)
						if err != nil {
							if errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF) {
								return
							}
							continue
						}
						received.Add(1)
						_ = v.CopyTo(hdr)
						if i%4 == 0 {
							note("flush", r.Flush())
						}
						note("release", v.Release())
					}
				}()
			}
			time.Sleep(300 * time.Millisecond)
			closed := make(chan struct{})
			go func() {
				defer close(closed)
				if k%2 == 0 {
					r.Close()
					p.Close()
				} else {
					p.Close()
					r.Close()
				}
			}()
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				t.Fatal("Close hangs")
			}
			close(stop)
			waited := make(chan struct{})
			go func() { wg.Wait(); close(waited) }()
			select {
			case <-waited:
			case <-time.After(10 * time.Second):
				t.Fatal("a call hangs after Close")
			}
			if err, _ := bad.Load().(error); err != nil {
				t.Fatal(err)
			}
			t.Logf("%d sent, %d received", sent.Load(), received.Load())
			require.NotZero(t, received.Load())
		})
	}
}
