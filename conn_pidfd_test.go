//go:build linux

package sealbuf_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
)

// connRequirePidfds skips the test unless a socket with SO_PASSPIDFD
// (Linux 6.5) receives an SCM_PIDFD descriptor with a message: it tries on
// a socketpair of its own.
func connRequirePidfds(t *testing.T) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if err := unix.SetsockoptInt(fds[1], unix.SOL_SOCKET, unix.SO_PASSPIDFD, 1); err != nil {
		t.Skipf("SO_PASSPIDFD (Linux 6.5): %v", err)
	}
	require.NoError(t, unix.Sendmsg(fds[0], []byte("x"), nil, nil, unix.MSG_NOSIGNAL))
	oob := make([]byte, 64)
	_, oobn, _, _, err := unix.Recvmsg(fds[1], make([]byte, 1), oob, unix.MSG_CMSG_CLOEXEC)
	require.NoError(t, err)
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	require.NoError(t, err)
	got := false
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_PIDFD && len(m.Data) == 4 {
			unix.Close(int(int32(binary.NativeEndian.Uint32(m.Data)))) // received: ours to close
			got = true
		}
	}
	if !got {
		t.Skip("SO_PASSPIDFD is set but no SCM_PIDFD arrives")
	}
}

// connPassPidfds sets SO_PASSPIDFD on uc: from now on every message it
// receives comes with a pidfd of the sender, installed in this process.
func connPassPidfds(t *testing.T, uc *net.UnixConn) {
	t.Helper()
	rc, err := uc.SyscallConn()
	require.NoError(t, err)
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSPIDFD, 1)
	}))
	require.NoError(t, serr)
}

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
	connRequirePidfds(t)
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		testutil.NoGC(t)
		ua, ub := testutil.UnixPair(t, typ)
		connPassPidfds(t, ub)
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
