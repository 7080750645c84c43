//go:build linux

package pool_test

import (
	"context"
	"os"
	"runtime/debug"
	"strings"
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
