//go:build linux

package pool_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/pool"
)

// TestPoolStats: after N messages both sides count them, their slot and
// header bytes and their releases; the Writer counts the times it found
// every slot in use; MappedBytes is the pool's mapping until Close.
func TestPoolStats(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			const slots, size, count = 2, 3000, 10
			p, r := newPoolPair(t, st.Type, slots, size, pool.WithMaxHeader(32))
			mapped := uint64(slots * ((size + page - 1) / page * page))
			ws, rs := p.Stats(), r.Stats()
			require.Equal(t, pool.Stats{MappedBytes: ws.MappedBytes}, ws, "nothing counted yet")
			require.Equal(t, pool.Stats{MappedBytes: rs.MappedBytes}, rs)
			if st.Type&poolFutex == 0 {
				require.Equal(t, mapped, ws.MappedBytes)
				require.Equal(t, mapped, rs.MappedBytes)
			} else { // and the ring, the same size on both sides
				require.Greater(t, ws.MappedBytes, mapped)
				require.Equal(t, ws.MappedBytes, rs.MappedBytes)
			}

			ctx := context.Background()
			hdr := make([]byte, 32)
			var bytes, headers uint64
			for i := range count {
				s, err := p.Acquire(ctx)
				require.NoError(t, err)
				n := i * 300
				h := fmt.Appendf(nil, "message %d", i)
				require.NoError(t, s.Send(n, h))
				bytes += uint64(n)
				headers += uint64(len(h))
				v, hn, err := r.Receive(ctx, hdr)
				require.NoError(t, err)
				require.Equal(t, len(h), hn)
				require.NoError(t, v.Release())
			}
			require.NoError(t, p.WaitIdle(ctx))
			want := pool.Stats{Messages: count, Bytes: bytes, HeaderBytes: headers, Releases: count, MappedBytes: ws.MappedBytes}
			require.Equal(t, want, p.Stats())
			want.MappedBytes = rs.MappedBytes
			require.Equal(t, want, r.Stats())

			// Every slot in use: TryAcquire fails, an Acquire waits.
			var held []pool.Slot
			for range slots {
				s, err := p.Acquire(ctx)
				require.NoError(t, err)
				held = append(held, s)
			}
			_, err := p.TryAcquire()
			require.ErrorIs(t, err, pool.ErrFull)
			tctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
			_, err = p.Acquire(tctx)
			cancel()
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.Equal(t, uint64(2), p.Stats().Full)
			for _, s := range held {
				require.NoError(t, s.Discard())
			}
			require.Equal(t, uint64(count), p.Stats().Messages, "a discarded slot is no message")

			require.NoError(t, p.Close())
			require.NoError(t, r.Close())
			require.Zero(t, p.Stats().MappedBytes)
			require.Zero(t, r.Stats().MappedBytes)
			require.Equal(t, uint64(count), r.Stats().Messages, "readable after Close")
		})
	}
}

// TestPoolStatsShortBuffer: a header too long for Receive's buffer is
// counted on the Reader, and its slot comes back to the Writer.
func TestPoolStatsShortBuffer(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			p, r := newPoolPair(t, st.Type, 1, 64)
			s, err := p.Acquire(context.Background())
			require.NoError(t, err)
			require.NoError(t, s.Send(1, []byte("a long header")))
			_, _, err = r.Receive(context.Background(), make([]byte, 4))
			require.Error(t, err)
			require.NoError(t, p.WaitIdle(context.Background()))
			rs := r.Stats()
			require.Equal(t, uint64(1), rs.ShortBuffer)
			require.Zero(t, rs.Messages)
			require.Zero(t, rs.ProtocolErrors)
			ws := p.Stats()
			require.Equal(t, uint64(1), ws.Messages)
			require.Equal(t, uint64(1), ws.Releases, "handed back")
		})
	}
}

// TestPoolStatsHostileProducer: every violation a Reader refuses is
// counted once, by sentinel.
func TestPoolStatsHostileProducer(t *testing.T) {
	for _, st := range testutil.SockTypes {
		t.Run(st.Name, func(t *testing.T) {
			pc, r := hostileProducer(t, st.Type, 2, 100)
			ctx := context.Background()
			refused := func(msg []byte) {
				t.Helper()
				require.NoError(t, pc.Send(msg))
				_, _, err := r.Receive(ctx, nil)
				require.ErrorIs(t, err, pool.ErrProtocol)
			}
			refused(poolRecord('M', 2, 1, 1))                     // bad slot
			refused(poolRecord('M', 0, 1, 101))                   // bad length
			refused(poolRecord('M', 0, 1, 1))                     // stale generation
			refused([]byte("short"))                              // malformed
			require.NoError(t, pc.Send(poolRecord('M', 1, 1, 1))) // held
			v, _, err := r.Receive(ctx, nil)
			require.NoError(t, err)
			refused(poolRecord('M', 1, 2, 1)) // slot busy
			require.NoError(t, v.Release())
			require.Equal(t, pool.Stats{
				Messages: 1, Bytes: 1, Releases: 1,
				ProtocolErrors: 5, BadSlot: 1, BadLength: 1, StaleGeneration: 1, SlotBusy: 1,
				MappedBytes: uint64(2 * page),
			}, r.Stats())
		})
	}
}

// TestPoolStatsHostileConsumer: every forged release the Writer reads is
// counted once, by sentinel, also those read in one message with others
// (Acquire returns only the first).
func TestPoolStatsHostileConsumer(t *testing.T) {
	for _, st := range testutil.SockTypes {
		t.Run(st.Name, func(t *testing.T) {
			p, cc := hostileConsumer(t, st.Type, 2)
			ctx := context.Background()
			var sent []pool.Slot
			for range 2 {
				s, err := p.Acquire(ctx)
				require.NoError(t, err)
				require.NoError(t, s.Send(1, nil))
				sent = append(sent, s)
			}
			s0 := sent[0]
			idx0 := uint32(s0.Index())
			// One message: a bad slot, a stale generation, the real
			// release, the same release again, a record with a length.
			msg := append(poolRecord('R', 2, 1, 0), poolRecord('R', idx0, s0.Generation()+1, 0)...)
			msg = append(msg, poolRecord('R', idx0, s0.Generation(), 0)...)
			msg = append(msg, poolRecord('R', idx0, s0.Generation(), 0)...)
			msg = append(msg, poolRecord('R', idx0, s0.Generation(), 5)...)
			require.NoError(t, cc.Send(msg))
			_, err := p.Acquire(ctx)
			require.ErrorIs(t, err, pool.ErrBadSlot, "the first violation is returned")
			require.Equal(t, 1, p.Free(), "the real release counted")
			ws := p.Stats()
			require.Equal(t, uint64(1), ws.Releases)
			require.Equal(t, uint64(4), ws.ProtocolErrors)
			require.Equal(t, uint64(1), ws.BadSlot)
			require.Equal(t, uint64(1), ws.StaleGeneration)
			require.Equal(t, uint64(1), ws.DoubleRelease)

			// A violation read by Free is counted then, and returned by
			// the next call that reads releases.
			require.NoError(t, cc.Send(poolRecord('R', 9, 1, 0)))
			require.Equal(t, 1, p.Free())
			require.Equal(t, uint64(2), p.Stats().BadSlot)
			s, err := p.Acquire(ctx) // the free slot: no read
			require.NoError(t, err)
			_, err = p.TryAcquire()
			require.ErrorIs(t, err, pool.ErrBadSlot)
			require.NoError(t, s.Discard())
			require.Equal(t, uint64(5), p.Stats().ProtocolErrors)
		})
	}
}

// TestPoolStatsZeroAllocs: reading the counters allocates nothing.
func TestPoolStatsZeroAllocs(t *testing.T) {
	p, r := newPoolPair(t, unix.SOCK_SEQPACKET, 1, 64)
	var sum uint64
	allocs := testing.AllocsPerRun(100, func() {
		sum += p.Stats().Messages + r.Stats().Messages
	})
	require.Zero(t, allocs)
}
