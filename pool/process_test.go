//go:build linux

package pool_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/handoff"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/pool"
)

// TestPoolAcrossProcesses hands messages of every length to a consumer in
// another process, which checks each byte and header.
func TestPoolAcrossProcesses(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			const slots, size, count = 4, 3*4096 + 5, 3000
			before := testutil.Snap(t)
			sock, child := startPoolChild(t, "consume", "", st.Type)
			p, err := pool.New(poolConnOf(t, sock), slots, size, poolOpts(st.Type, pool.WithMaxHeader(16))...)
			require.NoError(t, err)
			var hdr [16]byte
			for seq := range count {
				s, err := p.Acquire(context.Background())
				require.NoError(t, err)
				n := (seq * 7919) % (size + 1)
				poolFill(s.Bytes()[:n], seq)
				binary.LittleEndian.PutUint64(hdr[:], uint64(seq))
				binary.LittleEndian.PutUint64(hdr[8:], uint64(n))
				require.NoError(t, s.Send(n, hdr[:]))
			}
			for range slots { // every slot comes back
				s, err := p.Acquire(context.Background())
				require.NoError(t, err)
				require.NoError(t, s.Discard())
			}
			require.NoError(t, p.Close())
			require.NoError(t, child.Wait())
			testutil.RequireFlat(t, before, "descriptors leaked; memfd mappings leaked")
		})
	}
}

// TestPoolConsumerDies: a consumer killed while it holds slots (and with
// more queued for it) gives every slot back, and the producer learns it
// is gone.
func TestPoolConsumerDies(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			const slots, held = 5, 3
			sock, child := startPoolChild(t, "die-holding", strconv.Itoa(held), st.Type)
			p, err := pool.New(poolConnOf(t, sock), slots, 4096, poolOpts(st.Type)...)
			require.NoError(t, err)
			defer p.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for range slots {
				s, err := p.Acquire(ctx)
				require.NoError(t, err)
				require.NoError(t, s.Send(1, nil))
			}
			_, err = p.Acquire(ctx) // blocks until the child dies
			require.ErrorIs(t, err, io.EOF)
			require.Equal(t, slots, p.Free(), "every slot is back")
			_, err = p.TryAcquire()
			require.ErrorIs(t, err, io.EOF)
			err = child.Wait()
			require.ErrorContains(t, err, "killed")
		})
	}
}

// TestPoolProducerDies: a producer killed with messages in flight (some
// received and held, some not yet received) leaves the consumer every
// message it sent, then io.EOF; the views stay readable.
func TestPoolProducerDies(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			const sent = 3
			sock, child := startPoolChild(t, "produce-die", strconv.Itoa(st.Type), st.Type)
			r, err := pool.Accept(poolConnOf(t, sock))
			require.NoError(t, err)
			defer r.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var views []pool.View
			for i := range sent {
				v, _, err := r.Receive(ctx, nil)
				require.NoError(t, err, "message %d", i)
				require.Equal(t, []byte{byte('a' + i)}, v.Bytes())
				views = append(views, v)
			}
			// The child dies by SIGKILL once this Receive waits for it.
			killed := make(chan error, 1)
			go func() {
				for end := time.Now().Add(10 * time.Second); !pool.Blocked(r); time.Sleep(100 * time.Microsecond) {
					if time.Now().After(end) {
						killed <- errors.New("Receive never blocked")
						return
					}
				}
				killed <- child.Cmd.Process.Kill()
			}()
			_, _, err = r.Receive(ctx, nil)
			require.NoError(t, <-killed)
			require.ErrorIs(t, err, io.EOF)
			require.ErrorContains(t, child.Wait(), "killed")
			for i, v := range views {
				require.Equal(t, []byte{byte('a' + i)}, v.Bytes(), "a held view outlives its producer")
				require.NoError(t, v.Release())
			}
		})
	}
}

// TestPoolReleasesHeldBack: while messages that arrived already wait for
// Receive, releases are held back and sent together; never while Receive
// waits; at once on Flush.
func TestPoolReleasesHeldBack(t *testing.T) {
	defer pool.SetHoldBack(time.Hour)() // held until flushed: no timer in the way
	for _, st := range testutil.SockTypes {
		t.Run(st.Name, func(t *testing.T) {
			const slots = 6
			p, r := newPoolPair(t, st.Type, slots, 64)
			ctx := context.Background()
			send := func(k int) {
				t.Helper()
				for range k {
					s, err := p.Acquire(ctx)
					require.NoError(t, err)
					require.NoError(t, s.Send(1, nil))
				}
			}
			receive := func() pool.View {
				t.Helper()
				v, _, err := r.Receive(ctx, nil)
				require.NoError(t, err)
				return v
			}
			requireFree := func(n int) {
				t.Helper()
				var got []pool.Slot
				for {
					s, err := p.TryAcquire()
					if err != nil {
						require.ErrorIs(t, err, pool.ErrFull)
						break
					}
					got = append(got, s)
				}
				require.Len(t, got, n)
				for _, s := range got {
					require.NoError(t, s.Discard())
				}
			}

			send(slots) // all queued before the consumer looks
			for range slots - 1 {
				require.NoError(t, receive().Release())
				requireFree(0) // held back: more messages are waiting
			}
			require.NoError(t, receive().Release()) // the last one: all go
			requireFree(slots)

			send(2)
			require.NoError(t, receive().Release())
			requireFree(slots - 2)
			require.NoError(t, r.Flush())
			requireFree(slots - 1)
			require.NoError(t, receive().Release())
			requireFree(slots)

			// A release held back goes before Receive waits.
			send(2)
			require.NoError(t, receive().Release())
			b := receive() // kept
			got := make(chan error, 1)
			go func() {
				v, _, err := r.Receive(ctx, nil)
				if err == nil {
					err = v.Release()
				}
				got <- err
			}()
			var acquired []pool.Slot
			for range slots - 1 { // the last needs the release the waiting Receive sent
				s, err := p.Acquire(ctx)
				require.NoError(t, err)
				acquired = append(acquired, s)
			}
			require.NoError(t, acquired[0].Send(1, nil))
			require.NoError(t, <-got)
			require.NoError(t, b.Release())
		})
	}
}

// TestPoolHoldBackIsBounded: a consumer that releases with messages
// waiting, and then stops calling Receive, keeps the slot only briefly.
func TestPoolHoldBackIsBounded(t *testing.T) {
	defer pool.SetHoldBack(5 * time.Millisecond)()
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			p, r := newPoolPair(t, st.Type, 2, 64)
			ctx := context.Background()
			for range 2 {
				s, err := p.Acquire(ctx)
				require.NoError(t, err)
				require.NoError(t, s.Send(1, nil))
			}
			v, _, err := r.Receive(ctx, nil)
			require.NoError(t, err)
			require.NoError(t, v.Release()) // held: the second message waits
			tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			s, err := p.Acquire(tctx)
			require.NoError(t, err, "the held-back release must arrive without another Receive")
			require.NoError(t, s.Discard())
		})
	}
}

// TestPoolFloor runs the benchmark floor through a few messages, and
// checks it refuses an unsealed pool like pool.Accept.
func TestPoolFloor(t *testing.T) {
	sock, child := startPoolChild(t, "bench-floor", "", unix.SOCK_SEQPACKET)
	f, err := handoff.NewPoolFloor(sock, 3, 10000)
	require.NoError(t, err)
	src := make([]byte, 10000)
	for range 1000 {
		s, err := f.Acquire()
		require.NoError(t, err)
		require.Len(t, s, len(src))
		copy(s, src)
		require.NoError(t, f.Send(len(src)))
	}
	require.NoError(t, f.Drain())
	require.NoError(t, f.Close())
	require.NoError(t, sock.Close())
	require.NoError(t, child.Wait())

	a, b := testutil.UnixPair(t, unix.SOCK_SEQPACKET)
	require.NoError(t, sealbuf.NewConn(a).SendFiles(poolHello(1, 0, page, page), rawPoolMemfd(t, page, 0)))
	bf, err := b.File()
	require.NoError(t, err)
	defer bf.Close()
	_, err = handoff.AcceptPoolFloor(bf)
	require.ErrorIs(t, err, sealbuf.ErrNotSealed)
}
