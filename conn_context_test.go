//go:build linux

package sealbuf_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
)

// connReceiveWithin runs ReceiveContext on b on another goroutine and
// returns its error, failing the test if it has not returned after 10
// seconds (a hang).
func connReceiveWithin(t *testing.T, ctx context.Context, b *sealbuf.Conn) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, bufs, err := b.ReceiveContext(ctx, make([]byte, 64))
		connCloseAll(bufs)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("ReceiveContext still blocked after 10s")
		return nil
	}
}

// TestConnReceiveContextCancel: a cancelled ctx — before the call, or
// while it waits — fails ReceiveContext matching context.Canceled, with no
// message consumed; the Conn stays usable and the next Receive gets the
// next message.
func TestConnReceiveContextCancel(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, b := pair(t, typ)
		cancelled, cancel := context.WithCancel(context.Background())
		cancel()

		// Cancelled before, with a message waiting: it stays there.
		buf := connSealed(t, []byte("kept"))
		require.NoError(t, a.Send([]byte("waiting"), buf))
		_, bufs, err := b.ReceiveContext(cancelled, make([]byte, 64))
		require.ErrorIs(t, err, context.Canceled)
		require.Nil(t, bufs)
		h, bufs := connReceive(t, b, 64)
		require.Equal(t, "waiting", h, "the message was not consumed")
		require.Len(t, bufs, 1)
		require.Equal(t, "kept", string(bufs[0].Bytes()))
		connCloseAll(bufs)

		// Cancelled while it waits.
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(20*time.Millisecond, cancel)
		require.ErrorIs(t, connReceiveWithin(t, ctx, b), context.Canceled)
		connRequireNext(t, a, b)
	})
}

// TestConnReceiveContextKeepsReadDeadline: a read deadline set with
// Conn.SetReadDeadline applies to ReceiveContext when it comes before the
// ctx's (os.ErrDeadlineExceeded, not ctx's error), and stays in force
// after any ReceiveContext: one whose ctx's earlier deadline moved the
// socket's for the call puts the Conn's back, neither cleared nor left in
// the past.
func TestConnReceiveContextKeepsReadDeadline(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, b := pair(t, typ)

		// The Conn's deadline first.
		require.NoError(t, b.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
		long, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		err := connReceiveWithin(t, long, b)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		require.NotErrorIs(t, err, context.DeadlineExceeded)
		err = connReceiveWithin(t, context.Background(), b)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the Conn's deadline is still in force")

		// The ctx's deadline first: it ends the call, and the Conn's
		// (later) deadline is back in force after it.
		require.NoError(t, b.SetReadDeadline(time.Now().Add(time.Second)))
		short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, connReceiveWithin(t, short, b), context.DeadlineExceeded)
		// Not left in the past: a message arrives.
		require.NoError(t, a.Send([]byte("in time")))
		h, _ := connReceive(t, b, 64)
		require.Equal(t, "in time", h)
		// Not cleared: with no message, the Conn's deadline ends the wait.
		err = connReceiveWithin(t, context.Background(), b)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the Conn's deadline was not put back")

		// A cancelled ctx leaves it in force too.
		require.NoError(t, b.SetReadDeadline(time.Now().Add(time.Second)))
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(20*time.Millisecond, cancel)
		require.ErrorIs(t, connReceiveWithin(t, ctx, b), context.Canceled)
		require.NoError(t, a.Send([]byte("in time")))
		h, _ = connReceive(t, b, 64)
		require.Equal(t, "in time", h)
		err = connReceiveWithin(t, context.Background(), b)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the Conn's deadline was not put back")

		// Cleared, the Conn works as before.
		require.NoError(t, b.SetReadDeadline(time.Time{}))
		connRequireNext(t, a, b)
	})
}
