//go:build linux

package pool_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/pool"
)

// requirePidfds skips the test unless a socket with SO_PASSPIDFD (Linux
// 6.5) receives an SCM_PIDFD descriptor with a message: it tries on a
// socketpair of its own.
func requirePidfds(t *testing.T) {
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

// passPidfds sets SO_PASSPIDFD on uc: from now on every message it
// receives comes with a pidfd of the sender, installed in this process.
func passPidfds(t *testing.T, uc *net.UnixConn) {
	t.Helper()
	rc, err := uc.SyscallConn()
	require.NoError(t, err)
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSPIDFD, 1)
	}))
	require.NoError(t, serr)
}

// TestPoolHostilePidfd (finding 6): with SO_PASSPIDFD on both sockets,
// every pool message and release arrives with a pidfd the kernel installs
// in the receiver. Accept (the hello), Receive (messages) and the
// producer's reads of releases close each: the descriptor count stays
// flat over many messages, and the messages still work.
//
// On 49a691d, scm.ParseRights knew SCM_RIGHTS only: an SCM_PIDFD was an
// "unexpected control message" (AcceptPool failed: ErrMalformed), and the
// pool's closeAttached, which parsed the same way, reported every message
// and release as carrying descriptors (ErrPoolProtocol) — and neither
// closed the pidfd: one descriptor leaked per message.
func TestPoolHostilePidfd(t *testing.T) {
	requirePidfds(t)
	testutil.NoGC(t) // no finalizer closes what leaked
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			const slots, count = 2, 300
			a, b := testutil.UnixPair(t, st.Type&^poolFutex)
			passPidfds(t, a) // the producer reads releases
			passPidfds(t, b) // the consumer reads the hello and messages
			fds := testutil.CountFDs(t)
			p, err := pool.New(sealbuf.NewConn(a), slots, 4096, poolOpts(st.Type, pool.WithMaxHeader(16))...)
			require.NoError(t, err)
			defer p.Close()
			r, err := pool.Accept(sealbuf.NewConn(b))
			require.NoError(t, err)
			defer r.Close()
			require.Equal(t, fds+2, testutil.CountFDs(t), "Accept keeps the pool's memfd (and the producer its own), nothing else")
			fds = testutil.CountFDs(t)

			ctx := context.Background()
			hdr := make([]byte, 16)
			for i := range count {
				s, err := p.Acquire(ctx)
				require.NoError(t, err, "message %d", i)
				n := copy(s.Bytes(), fmt.Sprint("message ", i))
				require.NoError(t, s.Send(n, fmt.Append(nil, i)))
				v, hn, err := r.Receive(ctx, hdr)
				require.NoError(t, err, "message %d", i)
				require.Equal(t, fmt.Sprint(i), string(hdr[:hn]))
				require.Equal(t, fmt.Sprint("message ", i), string(v.Bytes()))
				require.NoError(t, v.Release())
			}
			for range slots { // every release is read
				s, err := p.Acquire(ctx)
				require.NoError(t, err)
				require.NoError(t, s.Discard())
			}
			require.Equal(t, fds, testutil.CountFDs(t), "pidfds leaked")
		})
	}
}
