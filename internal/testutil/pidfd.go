//go:build linux

package testutil

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// RequirePidfds skips the test unless a socket with SO_PASSPIDFD (Linux
// 6.5) receives an SCM_PIDFD descriptor with a message: it tries on a
// socketpair of its own.
func RequirePidfds(t testing.TB) {
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

// PassPidfds sets SO_PASSPIDFD on uc: from now on every message it
// receives comes with a pidfd of the sender, installed in this process.
func PassPidfds(t testing.TB, uc *net.UnixConn) {
	t.Helper()
	rc, err := uc.SyscallConn()
	require.NoError(t, err)
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSPIDFD, 1)
	}))
	require.NoError(t, serr)
}
