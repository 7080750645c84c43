//go:build linux

package testutil

import (
	"net"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// SockTypes are the socket types the library works over, by the names
// of their net package networks.
var SockTypes = []struct {
	Name string
	Type int
}{
	{"unixpacket", unix.SOCK_SEQPACKET},
	{"unix", unix.SOCK_STREAM},
}

// EachSockType runs fn as a subtest, named after the network, for each of
// SockTypes.
func EachSockType(t *testing.T, fn func(t *testing.T, typ int)) {
	t.Helper()
	for _, st := range SockTypes {
		t.Run(st.Name, func(t *testing.T) { fn(t, st.Type) })
	}
}

// Socketpair returns the two ends of a new AF_UNIX socketpair of type typ
// as plain *os.File (close-on-exec, blocking), closed when the test ends
// (a second Close is harmless).
func Socketpair(t testing.TB, typ int) (a, b *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	a, b = os.NewFile(uintptr(fds[0]), "socketpair-a"), os.NewFile(uintptr(fds[1]), "socketpair-b")
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a, b
}

// UnixConn turns a socket file into a *net.UnixConn. net.FileConn dups the
// descriptor: f stays the caller's.
func UnixConn(t testing.TB, f *os.File) *net.UnixConn {
	t.Helper()
	c, err := net.FileConn(f)
	require.NoError(t, err)
	uc, ok := c.(*net.UnixConn)
	require.True(t, ok, "%T", c)
	return uc
}

// UnixPair returns both ends of a new socketpair of type typ as
// *net.UnixConn, closed when the test ends (a second Close is harmless).
// No *os.File of the pair stays open.
func UnixPair(t testing.TB, typ int) (a, b *net.UnixConn) {
	t.Helper()
	fa, fb := Socketpair(t, typ)
	a, b = UnixConn(t, fa), UnixConn(t, fb)
	require.NoError(t, fa.Close())
	require.NoError(t, fb.Close())
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a, b
}
