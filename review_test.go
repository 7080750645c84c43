//go:build linux

package sealbuf_test

import (
	"context"
	"io"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/memfd"
)

// TestConnStreamContextMidFrame: over a stream socket a message may arrive
// in pieces. A ctx (or the read deadline) that ends the wait between two
// pieces fails ReceiveContext with ctx's error and leaves the Conn usable,
// as the contract says: the next Receive gets that very message, whole,
// with its descriptor, and nothing leaks. A Close while a frame is half
// read leaks nothing either.
func TestConnStreamContextMidFrame(t *testing.T) {
	header := []byte("a header that arrives in pieces")
	frame := append(connFrame(len(header), 1), header...)
	for _, cut := range []int{3, 8, 8 + 5} { // inside the prefix, after it, inside the header
		t.Run("", func(t *testing.T) {
			testutil.NoGC(t)
			before := testutil.Snap(t)
			b, peer := connRawPair(t, unix.SOCK_STREAM)
			mfd := connMemfd(t, []byte("payload"), memfd.SealShrink|memfd.SealGrow|memfd.SealWrite)
			// The first piece carries the descriptor, as the framing says.
			connRawSend(t, peer, frame[:cut], mfd)

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			_, bufs, err := b.ReceiveContext(ctx, make([]byte, 64))
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.Nil(t, bufs)

			// The read deadline, the same way.
			require.NoError(t, b.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
			_, _, err = b.Receive(make([]byte, 64))
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
			require.NoError(t, b.SetReadDeadline(time.Time{}))

			connRawSend(t, peer, frame[cut:])
			h := make([]byte, 64)
			n, bufs, err := b.Receive(h)
			require.NoError(t, err, "the Conn is out of step after a ctx ended mid-frame")
			require.Equal(t, string(header), string(h[:n]))
			require.Len(t, bufs, 1)
			require.Equal(t, "payload", string(bufs[0].Bytes()))
			connCloseAll(bufs)

			// Half a frame again, then Close: its descriptor is closed.
			connRawSend(t, peer, frame[:cut], mfd)
			ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			_, _, err = b.ReceiveContext(ctx, make([]byte, 64))
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.NoError(t, b.Close())
			require.NoError(t, peer.Close())
			require.NoError(t, mfd.Close())
			testutil.RequireFlat(t, before)
		})
	}
}

// TestConnStreamContextMidFrameSmallerBuffer: a frame interrupted inside
// its header and finished by a call with a smaller buffer fails matching
// io.ErrShortBuffer (its descriptor closed), and the next frame reads
// whole.
func TestConnStreamContextMidFrameSmallerBuffer(t *testing.T) {
	testutil.NoGC(t)
	before := testutil.Snap(t)
	b, peer := connRawPair(t, unix.SOCK_STREAM)
	mfd := connMemfd(t, []byte("payload"), memfd.SealShrink|memfd.SealGrow|memfd.SealWrite)
	header := []byte("twenty bytes header!")
	frame := append(connFrame(len(header), 1), header...)
	connRawSend(t, peer, frame[:12], mfd)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, _, err := b.ReceiveContext(ctx, make([]byte, 64))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	connRawSend(t, peer, frame[12:])
	h := make([]byte, 10)
	n, bufs, err := b.Receive(h)
	require.ErrorIs(t, err, io.ErrShortBuffer)
	require.Nil(t, bufs)
	require.Equal(t, 10, n)
	require.Equal(t, string(header[:10]), string(h))

	connRawSend(t, peer, append(connFrame(4, 0), "next"...))
	h = make([]byte, 64)
	n, _, err = b.Receive(h)
	require.NoError(t, err)
	require.Equal(t, "next", string(h[:n]))
	require.NoError(t, b.Close())
	require.NoError(t, peer.Close())
	require.NoError(t, mfd.Close())
	testutil.RequireFlat(t, before)
}

// TestConnStreamSendCutShort: a Send over a stream socket that the write
// deadline ends after part of its frame went out leaves the peer mid-frame.
// A later Send must not write a new frame there (the peer would read it
// as the rest of the first one: a corrupted header delivered as good, or
// descriptors refused): it fails, saying the stream is out of step.
func TestConnStreamSendCutShort(t *testing.T) {
	a, peer := connRawPair(t, unix.SOCK_STREAM)
	require.NoError(t, a.SetWriteDeadline(time.Now().Add(50*time.Millisecond)))
	err := a.Send(make([]byte, 4<<20)) // far more than the socket holds
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.Contains(t, err.Error(), "out of step", "the error says the Conn is done for")
	require.NoError(t, a.SetWriteDeadline(time.Now().Add(time.Second)))
	// The peer reads what came, so that there is room again.
	buf := make([]byte, 1<<20)
	rc, err := peer.SyscallConn()
	require.NoError(t, err)
	require.NoError(t, rc.Control(func(fd uintptr) {
		for {
			if n, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT); err != nil || n <= 0 {
				return
			}
		}
	}))
	err = a.Send([]byte("next"))
	require.Error(t, err, "a new frame was written in the middle of one cut short")
	require.Contains(t, err.Error(), "out of step")
}

// TestConnContextWaitsItsTurn: Receives (and Sends) are serialised. A
// ReceiveContext that waits its turn behind a Receive blocked with no
// context still ends with its ctx, as does a SendContext behind a Send
// blocked on a full socket; both Conns stay usable.
func TestConnContextWaitsItsTurn(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, b := pair(t, typ)
		blocked := make(chan error, 1)
		go func() {
			_, bufs, err := b.Receive(make([]byte, 64)) // no message yet
			connCloseAll(bufs)
			blocked <- err
		}()
		time.Sleep(20 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, connReceiveWithin(t, ctx, b), context.DeadlineExceeded)
		require.NoError(t, a.Send([]byte("for the first")))
		require.NoError(t, <-blocked)
		connRequireNext(t, a, b)

		// Sends: fill the socket, block one Send, then one with a ctx.
		big := make([]byte, 64<<10)
		if typ == unix.SOCK_SEQPACKET {
			big = big[:4<<10]
		}
		for {
			require.NoError(t, a.SetWriteDeadline(time.Now().Add(20*time.Millisecond)))
			if err := a.Send(big); err != nil {
				require.ErrorIs(t, err, os.ErrDeadlineExceeded)
				break
			}
		}
		if typ == unix.SOCK_STREAM {
			return // the Send the deadline ended was cut short: the stream is done
		}
		require.NoError(t, a.SetWriteDeadline(time.Time{}))
		sent := make(chan error, 1)
		go func() { sent <- a.Send(big) }()
		time.Sleep(20 * time.Millisecond)
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			done <- a.SendContext(ctx, []byte("ctx"))
		}()
		select {
		case err := <-done:
			require.ErrorIs(t, err, context.DeadlineExceeded)
		case <-time.After(5 * time.Second):
			t.Fatal("SendContext waiting its turn ignored its ctx")
		}
		require.NoError(t, a.Close()) // ends the blocked Send
		<-sent
	})
}

// TestConnDeadlineRace: SetReadDeadline may be called while a
// ReceiveContext waits (another goroutine moves the Conn's deadline). The
// ctx's cancellation must still end the call, and the deadline set last
// must be the one in force afterwards.
func TestConnDeadlineRace(t *testing.T) {
	a, b := pair(t, unix.SOCK_SEQPACKET)
	_ = a
	far := time.Now().Add(time.Hour)
	for i := range 3000 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, _, err := b.ReceiveContext(ctx, make([]byte, 8))
			done <- err
		}()
		for !b.ReadBlockedForTest() {
			runtime.Gosched()
		}
		go cancel()
		for range i % 4 {
			runtime.Gosched()
		}
		require.NoError(t, b.SetReadDeadline(far))
		select {
		case err := <-done:
			require.ErrorIs(t, err, context.Canceled)
		case <-time.After(5 * time.Second):
			t.Fatalf("iteration %d: the cancellation was lost: ReceiveContext still blocked", i)
		}
	}
	// The deadline set last is in force.
	require.NoError(t, b.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
	_, _, err := b.Receive(make([]byte, 8))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
}
