//go:build linux

package sealbuf_test

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
)

// TestConnPidfd (finding 6): a receiving socket with SO_PASSPIDFD gets an
// SCM_PIDFD descriptor with every message, after the peer's SCM_RIGHTS.
// Receive (and ReceiveContext, ReceiveFiles, ReceiveMappings) closes it:
// the descriptor count stays flat, every message arrives whole, also one
// of the full 253 descriptors (the control buffer has room for the pidfd
// beyond them), and a refused message still leaks nothing.
//
// On 49a691d, scm.ParseRights knew SCM_RIGHTS only: the SCM_PIDFD was an
// "unexpected control message", so every Receive failed (ErrMalformed),
// and the pidfd was never closed — one descriptor leaked per message. Its
// control buffer was exactly scm.Space(253): a message of 253 descriptors
// left no room for the pidfd and came with MSG_CTRUNC.
func TestConnPidfd(t *testing.T) {
	testutil.RequirePidfds(t)
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		testutil.NoGC(t)
		ua, ub := testutil.UnixPair(t, typ)
		testutil.PassPidfds(t, ub)
		a, b := sealbuf.NewConn(ua), sealbuf.NewConn(ub)
		buf := connSealed(t, []byte("pidfd"))
		before := testutil.Snap(t)
		h := make([]byte, 64)
		for i := range 200 {
			want := fmt.Sprint("message ", i)
			switch i % 4 {
			case 0:
				require.NoError(t, a.Send([]byte(want), buf))
				n, bufs, err := b.Receive(h)
				require.NoError(t, err, "message %d", i)
				require.Equal(t, want, string(h[:n]))
				require.Len(t, bufs, 1)
				require.Equal(t, "pidfd", string(bufs[0].Bytes()))
				connCloseAll(bufs)
			case 1: // header only
				require.NoError(t, a.Send([]byte(want)))
				n, bufs, err := b.ReceiveContext(context.Background(), h)
				require.NoError(t, err, "message %d", i)
				require.Equal(t, want, string(h[:n]))
				require.Empty(t, bufs)
			case 2:
				require.NoError(t, a.Send([]byte(want), buf, buf))
				n, files, err := b.ReceiveFiles(h)
				require.NoError(t, err, "message %d", i)
				require.Equal(t, want, string(h[:n]))
				require.Len(t, files, 2)
				for _, f := range files {
					require.NoError(t, f.Close())
				}
			case 3:
				require.NoError(t, a.Send([]byte(want), buf))
				n, maps, err := b.ReceiveMappings(h)
				require.NoError(t, err, "message %d", i)
				require.Equal(t, want, string(h[:n]))
				require.Len(t, maps, 1)
				require.NoError(t, maps[0].Close())
			}
		}
		testutil.RequireFlat(t, before, "pidfds leaked")

		// The most descriptors a message can carry, and the pidfd.
		many := make([]*sealbuf.Sealed, 253)
		for i := range many {
			many[i] = buf
		}
		require.NoError(t, a.Send([]byte("many"), many...))
		n, bufs, err := b.Receive(h)
		require.NoError(t, err)
		require.Equal(t, "many", string(h[:n]))
		require.Len(t, bufs, 253)
		connCloseAll(bufs)
		testutil.RequireFlat(t, before, "pidfds leaked")

		// A refused message (header too long) closes its pidfd too.
		require.NoError(t, a.Send(make([]byte, 100), buf))
		_, _, err = b.Receive(h)
		require.ErrorIs(t, err, io.ErrShortBuffer)
		testutil.RequireFlat(t, before, "a refused message leaked")
		connRequireNext(t, a, b)
		testutil.RequireFlat(t, before, "pidfds leaked")
	})
}
