//go:build linux

package sealbuf_test

import (
	"io"
	"net"
	"os"
	"testing"

	"github.com/sealbuf/sealbuf"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func pair(t *testing.T, typ int) (*sealbuf.Conn, *sealbuf.Conn) {
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	mk := func(fd int) *sealbuf.Conn {
		f := os.NewFile(uintptr(fd), "sock")
		c, err := net.FileConn(f)
		require.NoError(t, err)
		f.Close()
		return sealbuf.NewConn(c.(*net.UnixConn))
	}
	a, b := mk(fds[0]), mk(fds[1])
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestSmokeConn(t *testing.T) {
	for _, typ := range []int{unix.SOCK_SEQPACKET, unix.SOCK_STREAM} {
		a, b := pair(t, typ)
		s1, err := sealbuf.FromBytes([]byte("one"))
		require.NoError(t, err)
		defer s1.Close()
		s2, err := sealbuf.FromBytes(make([]byte, 1<<20))
		require.NoError(t, err)
		defer s2.Close()
		for i := 0; i < 3; i++ {
			require.NoError(t, a.Send([]byte("hdr"), s1, s2, s1))
			require.NoError(t, a.Send(nil, s2))
			require.NoError(t, a.Send([]byte("only header")))
		}
		for i := 0; i < 3; i++ {
			h := make([]byte, 64)
			n, bufs, err := b.Receive(h)
			require.NoError(t, err)
			require.Equal(t, "hdr", string(h[:n]))
			require.Len(t, bufs, 3)
			require.Equal(t, "one", string(bufs[0].Bytes()))
			require.Equal(t, 1<<20, bufs[1].Len())
			for _, x := range bufs {
				x.Close()
			}
			n, bufs, err = b.Receive(h)
			require.NoError(t, err)
			require.Zero(t, n)
			require.Len(t, bufs, 1)
			bufs[0].Close()
			_, bufs, err = b.Receive(h[:4])
			require.ErrorIs(t, err, io.ErrShortBuffer, "%v", err)
			require.Nil(t, bufs)
		}
		a.Close()
		_, _, err = b.Receive(make([]byte, 10))
		require.ErrorIs(t, err, io.EOF)
	}
}
