//go:build linux

package sealbuf_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/memfd"
)

// TestReceiveMappings: descriptors that Receive would refuse for lack of a
// write seal (unsealed, shrink-only) arrive as guarded Mappings, with the
// bytes the sender wrote; a Mapping whose peer truncates reports
// ErrTruncated instead of faulting.
func TestReceiveMappings(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		testutil.NoGC(t)
		a, b := pair(t, typ)
		before := testutil.Snap(t)
		unsealed := connMemfd(t, []byte("unsealed bytes"), 0)
		shrinkOnly := connMemfd(t, []byte("fixed size"), memfd.SealShrink|memfd.SealGrow)
		require.NoError(t, a.SendFiles([]byte("two"), unsealed, shrinkOnly))

		hdr := make([]byte, 8)
		n, maps, err := b.ReceiveMappings(hdr)
		require.NoError(t, err)
		require.Equal(t, "two", string(hdr[:n]))
		require.Len(t, maps, 2)
		for i, want := range []string{"unsealed bytes", "fixed size"} {
			got := make([]byte, len(want))
			_, err := maps[i].ReadAt(got, 0)
			require.NoError(t, err)
			require.Equal(t, want, string(got))
		}
		// The sender still holds the unsealed memfd and truncates it.
		require.NoError(t, unsealed.Truncate(0))
		_, err = maps[0].ReadAt(make([]byte, 4), 0)
		require.ErrorIs(t, err, sealbuf.ErrTruncated)
		for _, m := range maps {
			require.NoError(t, m.Close())
		}
		require.NoError(t, unsealed.Close())
		require.NoError(t, shrinkOnly.Close())
		testutil.RequireFlat(t, before)
	})
}

// TestReceiveMappingsAllOrNothing: one descriptor that fails (a pipe, a
// memfd larger than MapMaxSize, one without the seals MapRequire asks for)
// closes every descriptor of the message and maps nothing; the Conn goes on
// with the next message.
func TestReceiveMappingsAllOrNothing(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		testutil.NoGC(t)
		a, b := pair(t, typ)
		pr, pw, err := os.Pipe()
		require.NoError(t, err)
		defer pr.Close()
		defer pw.Close()
		before := testutil.Snap(t)
		cases := []struct {
			name  string
			files func() []*os.File
			opts  []sealbuf.MapOption
			want  error
		}{
			{"a pipe after a memfd", func() []*os.File { return []*os.File{connMemfd(t, []byte("ok"), 0), pr} }, nil, memfd.ErrNotMemfd},
			{"too large", func() []*os.File {
				return []*os.File{connMemfd(t, []byte("ok"), 0), connMemfd(t, make([]byte, 8192), 0)}
			}, []sealbuf.MapOption{sealbuf.MapMaxSize(4096)}, sealbuf.ErrTooLarge},
			{"seals missing", func() []*os.File {
				return []*os.File{connMemfd(t, []byte("ok"), memfd.SealShrink), connMemfd(t, []byte("no"), 0)}
			}, []sealbuf.MapOption{sealbuf.MapRequire(memfd.SealShrink)}, sealbuf.ErrNotSealed},
		}
		for _, tc := range cases {
			require.NoError(t, a.SendFiles([]byte(tc.name), tc.files()...), tc.name)
			_, maps, err := b.ReceiveMappings(make([]byte, 64), tc.opts...)
			require.ErrorIs(t, err, tc.want, tc.name)
			require.Nil(t, maps, tc.name)
		}
		require.NoError(t, a.SendFiles([]byte("next")))
		n, maps, err := b.ReceiveMappings(make([]byte, 8))
		require.NoError(t, err, "the Conn stays usable")
		require.Equal(t, 4, n)
		require.Empty(t, maps)
		// The memfds made for the cases are closed by the test's cleanup;
		// what must be flat is what Receive made: nothing after the
		// refusals, once the cases' own files are gone.
		after := testutil.Count(t)
		require.LessOrEqual(t, after.MemfdMaps, before.MemfdMaps, "a refused message left a mapping: %v → %v", before.Counts, after)
	})
}

// TestReceiveContext: a cancelled or expired context ends a Receive that
// waits, with ctx's error; the Conn stays usable, and a message sent later
// arrives whole. A context already cancelled consumes nothing.
func TestReceiveContext(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, b := pair(t, typ)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		_, _, err := b.ReceiveContext(ctx, make([]byte, 8))
		require.ErrorIs(t, err, context.DeadlineExceeded)

		require.NoError(t, a.Send([]byte("first"), connSealed(t, []byte("payload"))))
		done, cancelNow := context.WithCancel(context.Background())
		cancelNow()
		_, _, err = b.ReceiveContext(done, make([]byte, 8))
		require.ErrorIs(t, err, context.Canceled)

		cctx, cancel2 := context.WithCancel(context.Background())
		got := make(chan error, 1)
		hdr := make([]byte, 8)
		n, bufs, err := b.ReceiveContext(cctx, hdr)
		require.NoError(t, err, "the message sent before is still there")
		require.Equal(t, "first", string(hdr[:n]))
		require.Len(t, bufs, 1)
		require.Equal(t, "payload", string(bufs[0].Bytes()))
		connCloseAll(bufs)

		go func() { _, _, err := b.ReceiveContext(cctx, make([]byte, 8)); got <- err }()
		testutil.WaitBlocked(t, "TestReceiveContext", "sealbuf.(*Conn).ReceiveContext")
		cancel2()
		select {
		case err := <-got:
			require.ErrorIs(t, err, context.Canceled)
		case <-time.After(10 * time.Second):
			t.Fatal("ReceiveContext did not end when its context was cancelled")
		}
		require.NoError(t, a.Send([]byte("second")))
		n, _, err = b.Receive(hdr)
		require.NoError(t, err)
		require.Equal(t, "second", string(hdr[:n]))
	})
}

// TestReceiveContextKeepsDeadline: a deadline set through the Conn still
// applies under a context with a later deadline, and is still in force
// after the call (the context's deadline does not replace it for good).
func TestReceiveContextKeepsDeadline(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		_, b := pair(t, typ)
		require.NoError(t, b.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _, err := b.ReceiveContext(ctx, make([]byte, 8))
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		// An earlier context deadline wins for its call only ...
		short, cancel2 := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel2()
		require.NoError(t, b.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
		_, _, err = b.ReceiveContext(short, make([]byte, 8))
		require.ErrorIs(t, err, context.DeadlineExceeded)
		// ... and the Conn's own deadline is back afterwards.
		_, _, err = b.Receive(make([]byte, 8))
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	})
}

// TestSendContext: a send that waits for room on a full socket ends with
// ctx's error, and the Conn stays usable once the peer reads.
func TestSendContext(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, b := pair(t, typ)
		msg := make([]byte, 4096)
		var err error
		for i := 0; i < 100000; i++ { // fill the socket: the peer does not read
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			err = a.SendContext(ctx, msg)
			cancel()
			if err != nil {
				break
			}
		}
		require.ErrorIs(t, err, context.DeadlineExceeded)
		// The peer reads everything, message by message (on a stream, a
		// frame that had begun when the context ended was finished: the
		// framing holds); the Conn sends again.
		got := make(chan error, 1)
		go func() {
			hdr := make([]byte, 4096)
			for {
				n, _, err := b.Receive(hdr)
				if err != nil {
					got <- err
					return
				}
				if n == 5 && string(hdr[:5]) == "after" {
					got <- nil
					return
				}
				if n != len(msg) {
					got <- fmt.Errorf("a %d-byte message, want %d", n, len(msg))
					return
				}
			}
		}()
		require.NoError(t, a.SendContext(context.Background(), []byte("after")))
		require.NoError(t, <-got)
	})
}

// TestReceiveBrokenStream: once a peer breaks a stream's framing, Receive
// says so once (ErrMalformed), then waits for the hang-up (it neither
// returns the same error at once for ever nor reads garbage as messages),
// drops what still comes — descriptors closed — and returns io.EOF.
func TestReceiveBrokenStream(t *testing.T) {
	testutil.NoGC(t)
	fa, fb := testutil.Socketpair(t, unix.SOCK_STREAM)
	b := sealbuf.NewConn(testutil.UnixConn(t, fb))
	defer b.Close()
	before := testutil.Snap(t)
	_, err := fa.Write([]byte("garbage!garbage!"))
	require.NoError(t, err)
	_, _, err = b.Receive(make([]byte, 64))
	require.ErrorIs(t, err, sealbuf.ErrMalformed)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, _, err = b.ReceiveContext(ctx, make([]byte, 64))
	require.ErrorIs(t, err, context.DeadlineExceeded, "a broken stream waits for the hang-up")

	m := connMemfd(t, []byte("stray"), 0)
	rc, err := fa.SyscallConn()
	require.NoError(t, err)
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		mrc, err := m.SyscallConn()
		if err != nil {
			serr = err
			return
		}
		if err := mrc.Control(func(mfd uintptr) {
			serr = unix.Sendmsg(int(fd), []byte("more"), unix.UnixRights(int(mfd)), nil, 0)
		}); err != nil {
			serr = err
		}
	}))
	require.NoError(t, serr)
	require.NoError(t, m.Close())
	require.NoError(t, fa.Close())
	_, _, err = b.Receive(make([]byte, 64))
	require.ErrorIs(t, err, io.EOF)
	testutil.RequireDelta(t, before, testutil.Counts{Total: -1}, "the stray descriptor was closed (and the peer's end, above)")
}
