//go:build linux

package sealbuf_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/memfd"
)

// TestConnStats: after N messages both ends count them, their header
// bytes and descriptors, whichever Send or Receive carried them;
// MappedBytes follows the buffers received until each is closed.
func TestConnStats(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, b := pair(t, typ)
		require.Equal(t, sealbuf.ConnStats{}, a.Stats(), "nothing counted yet")
		small, big := connSealed(t, []byte("small")), connSealed(t, make([]byte, 3*os.Getpagesize()+1))
		hdr := make([]byte, 64)

		// Receive: two buffers, then a header-only message.
		require.NoError(t, a.Send([]byte("two"), small, big))
		require.NoError(t, a.Send([]byte("none")))
		_, bufs, err := b.Receive(hdr)
		require.NoError(t, err)
		_, _, err = b.Receive(hdr)
		require.NoError(t, err)
		mapped := uint64(small.Len() + big.Len())
		require.Equal(t, sealbuf.ConnStats{
			MessagesReceived: 2, BytesReceived: 7, FilesReceived: 2, MappedBytes: mapped,
		}, b.Stats())
		require.Equal(t, sealbuf.ConnStats{MessagesSent: 2, BytesSent: 7, FilesSent: 2}, a.Stats())

		// ReceiveMappings and ReceiveFiles; SendFiles and SendContext.
		require.NoError(t, a.SendContext(context.Background(), []byte("map"), small))
		_, maps, err := b.ReceiveMappings(hdr)
		require.NoError(t, err)
		require.Equal(t, mapped+uint64(small.Len()), b.Stats().MappedBytes)
		require.NoError(t, a.SendFiles([]byte("files"), connMemfd(t, []byte("f"), memfd.SealImmutable)))
		_, files, err := b.ReceiveFiles(hdr)
		require.NoError(t, err)
		for _, f := range files {
			require.NoError(t, f.Close())
		}
		st := b.Stats()
		require.Equal(t, uint64(4), st.MessagesReceived)
		require.Equal(t, uint64(15), st.BytesReceived)
		require.Equal(t, uint64(4), st.FilesReceived)
		require.Equal(t, mapped+uint64(small.Len()), st.MappedBytes, "a File is not mapped")
		require.Equal(t, sealbuf.ConnStats{MessagesSent: 4, BytesSent: 15, FilesSent: 4}, a.Stats())

		// Closing what was received takes it off MappedBytes, also
		// after the Conn's Close; a second Close changes nothing.
		require.NoError(t, bufs[0].Close())
		require.Equal(t, uint64(big.Len()+small.Len()), b.Stats().MappedBytes, "big, and the Mapping")
		require.NoError(t, maps[0].Close())
		require.NoError(t, b.Close())
		require.Equal(t, uint64(big.Len()), b.Stats().MappedBytes)
		require.NoError(t, bufs[1].Close())
		require.Error(t, bufs[1].Close())
		require.Error(t, maps[0].Close())
		require.Zero(t, b.Stats().MappedBytes)
		require.Equal(t, uint64(4), b.Stats().MessagesReceived, "readable after Close")

		// Closing the sender's own buffers is not counted anywhere.
		require.NoError(t, small.Close())
		require.Zero(t, a.Stats().MappedBytes)
	})
}

// TestConnStatsRefusals: every message refused is counted once, under its
// reason; errors that drop no message (a context, a deadline, the peer's
// hang-up) are not counted.
func TestConnStatsRefusals(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		page := os.Getpagesize()
		a, b := connPairOpts(t, typ, nil, []sealbuf.ConnOption{
			sealbuf.WithMaxFiles(2),
			sealbuf.WithReceivePolicy(sealbuf.MaxSize(int64(page))),
		})
		ok := connSealed(t, []byte("ok"))
		r, w, err := os.Pipe()
		require.NoError(t, err)
		defer r.Close()
		defer w.Close()
		hdr := make([]byte, 16)
		refused := func(send func() error, reason *uint64) {
			t.Helper()
			before := b.Stats()
			require.NoError(t, send())
			_, bufs, err := b.Receive(hdr)
			require.Error(t, err)
			require.Nil(t, bufs)
			after := b.Stats()
			require.Equal(t, before.Refused()+1, after.Refused(), "one refusal: %v", err)
			*reason++
			require.Equal(t, before.MessagesReceived, after.MessagesReceived)
			require.Zero(t, after.MappedBytes, "nothing of a refused message stays mapped")
		}
		var want sealbuf.ConnStats
		refused(func() error { return a.SendFiles([]byte("pipe"), connMemfd(t, []byte("f"), memfd.SealImmutable), r) }, &want.RefusedNotMemfd)
		refused(func() error { return a.SendFiles([]byte("unsealed"), connMemfd(t, []byte("x"), 0)) }, &want.RefusedNotSealed)
		refused(func() error { return a.Send([]byte("large"), connSealed(t, make([]byte, page+1))) }, &want.RefusedTooLarge)
		refused(func() error { return a.Send([]byte("three"), ok, ok, ok) }, &want.RefusedTooManyFiles)
		refused(func() error { return a.Send(make([]byte, len(hdr)+1), ok) }, &want.RefusedShortBuffer)
		st := b.Stats()
		require.Equal(t, want.RefusedNotMemfd, st.RefusedNotMemfd)
		require.Equal(t, want.RefusedNotSealed, st.RefusedNotSealed)
		require.Equal(t, want.RefusedTooLarge, st.RefusedTooLarge)
		require.Equal(t, want.RefusedTooManyFiles, st.RefusedTooManyFiles)
		require.Equal(t, want.RefusedShortBuffer, st.RefusedShortBuffer)
		require.Equal(t, uint64(5), st.Refused())

		// Not refusals: a context that ends, a deadline, the hang-up.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		_, _, err = b.ReceiveContext(ctx, hdr)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.NoError(t, b.SetReadDeadline(time.Now().Add(10*time.Millisecond)))
		_, _, err = b.Receive(hdr)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		require.NoError(t, b.SetReadDeadline(time.Time{}))
		require.NoError(t, a.Send([]byte("good"), ok))
		_, bufs, err := b.Receive(hdr)
		require.NoError(t, err, "the Conn stays usable")
		connCloseAll(bufs)
		require.NoError(t, a.Close())
		_, _, err = b.Receive(hdr)
		require.Error(t, err)
		st = b.Stats()
		require.Equal(t, uint64(5), st.Refused())
		require.Equal(t, uint64(1), st.MessagesReceived)
		require.Zero(t, st.MappedBytes)
	})
}

// TestConnStatsMalformed: a stream whose framing a peer broke counts the
// messages it refuses as malformed.
func TestConnStatsMalformed(t *testing.T) {
	c, raw := connRawPair(t, unix.SOCK_STREAM)
	_, err := raw.Write([]byte("garbage!"))
	require.NoError(t, err)
	_, _, err = c.Receive(make([]byte, 16))
	require.ErrorIs(t, err, sealbuf.ErrMalformed)
	require.Equal(t, sealbuf.ConnStats{RefusedMalformed: 1}, c.Stats())
}

// TestConnStatsAllocations: reading the counters allocates nothing (the
// counting itself is covered by TestConnAllocations).
func TestConnStatsAllocations(t *testing.T) {
	a, b := pair(t, unix.SOCK_SEQPACKET)
	var sum uint64
	allocs := testing.AllocsPerRun(100, func() {
		sum += a.Stats().MessagesSent + b.Stats().Refused()
	})
	require.Zero(t, allocs)
}
