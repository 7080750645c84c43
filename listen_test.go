//go:build linux

package sealbuf_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
)

// Tests of Listen, Dial, Pair, FileConn and ExtraFile: in this process, and
// with child processes (the test binary run again in a role, see
// internal/testutil).

// listenRequireFDs checks that the process holds as many descriptors as
// before. It gives descriptors that some goroutine holds for an instant a
// moment to go (with the garbage collector off, a leaked one stays), and
// lists what differs when the count stays off.
func listenRequireFDs(t testing.TB, before testutil.Snapshot) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for testutil.CountFDs(t) != before.Total && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if now := testutil.Snap(t); now.Total != before.Total {
		t.Fatalf("descriptors: %d, want %d as before the test; from before to now:\n%s", now.Total, before.Total, before.Diff(now))
	}
}

// listenPath returns a socket path in a fresh directory, short enough for
// sun_path whatever the test's name.
func listenPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sbl")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

var listenNames atomic.Int64

// listenAbstract returns an abstract name no other test uses.
func listenAbstract() string {
	return fmt.Sprintf("@sealbuf-test-%d-%d", os.Getpid(), listenNames.Add(1))
}

// listenAccept accepts one Conn on another goroutine, giving up (and
// failing) after a while instead of hanging the test.
func listenAccept(t testing.TB, l *sealbuf.Listener) *sealbuf.Conn {
	t.Helper()
	type result struct {
		c   *sealbuf.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		require.NoError(t, r.err)
		return r.c
	case <-time.After(30 * time.Second):
		_ = l.Close()
		<-ch
		t.Fatal("nothing dialed the listener within 30s")
		return nil
	}
}

// listenRoundTrip sends a header and a sealed buffer from a to b, checks
// what arrived, and closes the received buffer.
func listenRoundTrip(t testing.TB, a, b *sealbuf.Conn, text string) {
	t.Helper()
	s, err := sealbuf.FromBytes([]byte("buffer " + text))
	require.NoError(t, err)
	require.NoError(t, a.SendAndClose([]byte(text), s))
	h := make([]byte, 256)
	n, bufs, err := b.Receive(h)
	require.NoError(t, err)
	require.Equal(t, text, string(h[:n]))
	require.Len(t, bufs, 1)
	require.Equal(t, "buffer "+text, string(bufs[0].Bytes()))
	require.NoError(t, bufs[0].Close())
}

// listenRequireEOF checks that c's peer hung up.
func listenRequireEOF(t testing.TB, c *sealbuf.Conn) {
	t.Helper()
	_, bufs, err := c.Receive(make([]byte, 64))
	require.ErrorIs(t, err, io.EOF)
	require.Nil(t, bufs)
}

// listenEcho answers every message on c with "echo " and its header, and
// the same buffers, until the peer hangs up: the body of the child roles.
// It returns the exit status: 0 when the peer hung up, 1 on any error.
func listenEcho(c *sealbuf.Conn) int {
	defer c.Close()
	h := make([]byte, 1024)
	for {
		n, bufs, err := c.Receive(h)
		if errors.Is(err, io.EOF) {
			return 0
		}
		if err != nil {
			return testutil.ChildFail(fmt.Errorf("receive: %w", err))
		}
		err = c.Send(append([]byte("echo "), h[:n]...), bufs...)
		connCloseAll(bufs)
		if err != nil {
			return testutil.ChildFail(fmt.Errorf("send: %w", err))
		}
	}
}

// listenRequireEcho sends text with a buffer over c and checks the echo.
func listenRequireEcho(t testing.TB, c *sealbuf.Conn, text string) {
	t.Helper()
	s, err := sealbuf.FromBytes([]byte("buffer " + text))
	require.NoError(t, err)
	require.NoError(t, c.SendAndClose([]byte(text), s))
	h := make([]byte, 256)
	n, bufs, err := c.Receive(h)
	require.NoError(t, err)
	require.Equal(t, "echo "+text, string(h[:n]))
	require.Len(t, bufs, 1)
	require.Equal(t, "buffer "+text, string(bufs[0].Bytes()))
	require.NoError(t, bufs[0].Close())
}

// dial-echo PATH: Dial PATH and echo until the parent hangs up.
var _ = testutil.Role("dial-echo", func(path string) int {
	c, err := sealbuf.Dial(path)
	if err != nil {
		return testutil.ChildFail(err)
	}
	return listenEcho(c)
})

// pair-echo: adopt ExtraFiles[0] as a user's child would, and echo until
// the parent hangs up.
var _ = testutil.Role("pair-echo", func(string) int {
	c, err := listenExtraConn()
	if err != nil {
		return testutil.ChildFail(err)
	}
	return listenEcho(c)
})

// pair-send-exit: send "bye" with a buffer over ExtraFiles[0] and exit
// without closing anything: the kernel delivers the message, then the
// hang-up.
var _ = testutil.Role("pair-send-exit", func(string) int {
	c, err := listenExtraConn()
	if err != nil {
		return testutil.ChildFail(err)
	}
	s, err := sealbuf.FromBytes([]byte("buffer bye"))
	if err != nil {
		return testutil.ChildFail(err)
	}
	if err := c.Send([]byte("bye"), s); err != nil {
		return testutil.ChildFail(err)
	}
	return 0
})

// listenExtraConn is what a user's child does with Pair's file.
func listenExtraConn() (*sealbuf.Conn, error) {
	f, err := sealbuf.ExtraFile(0)
	if err != nil {
		return nil, err
	}
	c, err := sealbuf.FileConn(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return c, nil
}

// listen-wait PATH: Listen on PATH, print "ready", and wait to be killed:
// a live listener in another process, and, once killed, a stale socket
// file.
var _ = testutil.Role("listen-wait", func(path string) int {
	l, err := sealbuf.Listen(path)
	if err != nil {
		return testutil.ChildFail(err)
	}
	defer l.Close()
	fmt.Println("ready")
	time.Sleep(time.Hour)
	return 0
})

// listenChild is a child process started by listenStart, its stdout
// read a line at a time.
type listenChild struct {
	*testutil.Child
	stdout *bufio.Reader
}

// listenStart starts the test binary in role with arg, with extra as its
// ExtraFiles (closed here once the child has started), its stdout readable
// through c.stdout. The child is killed when the test ends, if it still
// runs.
func listenStart(t testing.TB, role, arg string, extra ...*os.File) *listenChild {
	t.Helper()
	cmd := testutil.Command(role, arg)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	return &listenChild{testutil.Start(t, cmd, extra...), bufio.NewReader(out)}
}

// readLine returns the next line the child printed.
func (c *listenChild) readLine(t testing.TB) string {
	t.Helper()
	line, err := c.stdout.ReadString('\n')
	require.NoError(t, err, "reading the child's stdout")
	return strings.TrimSuffix(line, "\n")
}

// listenNames are the two kinds of address: a path and an abstract name.
func listenEachName(t *testing.T, fn func(t *testing.T, name string)) {
	t.Run("path", func(t *testing.T) { fn(t, listenPath(t)) })
	t.Run("abstract", func(t *testing.T) { fn(t, listenAbstract()) })
}

func TestListenDial(t *testing.T) {
	listenEachName(t, func(t *testing.T, name string) {
		testutil.NoGC(t)
		before := testutil.Snap(t)

		l, err := sealbuf.Listen(name)
		require.NoError(t, err)
		require.Equal(t, name, l.Addr().String())
		require.Equal(t, "unixpacket", l.Addr().Network())
		if !strings.HasPrefix(name, "@") {
			fi, err := os.Lstat(name)
			require.NoError(t, err)
			require.Equal(t, os.ModeSocket, fi.Mode().Type())
		}

		d, err := sealbuf.Dial(name)
		require.NoError(t, err)
		a := listenAccept(t, l)
		listenRoundTrip(t, d, a, "from the dialer")
		listenRoundTrip(t, a, d, "from the accepted end")

		// Both ends see the other hang up.
		require.NoError(t, d.Close())
		listenRequireEOF(t, a)
		require.NoError(t, a.Close())
		d2, err := sealbuf.Dial(name)
		require.NoError(t, err)
		a2 := listenAccept(t, l)
		require.NoError(t, a2.Close())
		listenRequireEOF(t, d2)
		require.NoError(t, d2.Close())

		require.NoError(t, l.Close())
		if !strings.HasPrefix(name, "@") {
			_, err = os.Lstat(name)
			require.ErrorIs(t, err, os.ErrNotExist, "Close removes the socket file")
		}
		_, err = l.Accept()
		require.ErrorIs(t, err, net.ErrClosed)
		require.ErrorIs(t, err, os.ErrClosed)
		err = l.Close()
		require.ErrorIs(t, err, os.ErrClosed, "a second Close")
		require.Equal(t, name, l.Addr().String(), "Addr after Close")
		_, err = sealbuf.Dial(name)
		if strings.HasPrefix(name, "@") {
			require.ErrorIs(t, err, syscall.ECONNREFUSED)
		} else {
			require.ErrorIs(t, err, syscall.ENOENT)
		}
		listenRequireFDs(t, before)
	})
}

// TestListenDialOptions: the ConnOptions of Listen apply to every accepted
// Conn, those of Dial to its Conn.
func TestListenDialOptions(t *testing.T) {
	path := listenPath(t)
	l, err := sealbuf.Listen(path, sealbuf.WithReceivePolicy(sealbuf.MaxSize(10)))
	require.NoError(t, err)
	defer l.Close()
	d, err := sealbuf.Dial(path, sealbuf.WithReceivePolicy(sealbuf.MaxSize(20)))
	require.NoError(t, err)
	defer d.Close()
	a := listenAccept(t, l)
	defer a.Close()

	big, err := sealbuf.FromBytes(make([]byte, 15))
	require.NoError(t, err)
	defer big.Close()
	require.NoError(t, d.Send([]byte("15 bytes"), big))
	_, _, err = a.Receive(make([]byte, 64))
	require.ErrorIs(t, err, sealbuf.ErrTooLarge, "the listener's MaxSize(10)")
	require.NoError(t, a.Send([]byte("15 bytes"), big))
	_, bufs, err := d.Receive(make([]byte, 64))
	require.NoError(t, err, "the dialer's MaxSize(20)")
	connCloseAll(bufs)
}

// TestListenDialChild: a Listener here, Dial in another process; each side
// sees the other go away.
func TestListenDialChild(t *testing.T) {
	listenEachName(t, func(t *testing.T, name string) {
		testutil.NoGC(t)
		before := testutil.Snap(t)
		l, err := sealbuf.Listen(name)
		require.NoError(t, err)

		// We hang up: the child reads io.EOF and exits 0.
		child := listenStart(t, "dial-echo", name)
		c := listenAccept(t, l)
		for i := range 3 {
			listenRequireEcho(t, c, fmt.Sprint("message ", i))
		}
		require.NoError(t, c.Close())
		require.NoError(t, child.Wait(), "the child must see io.EOF when we hang up")

		// The child dies: we read io.EOF.
		child = listenStart(t, "dial-echo", name)
		c = listenAccept(t, l)
		listenRequireEcho(t, c, "before the kill")
		child.Kill(t)
		listenRequireEOF(t, c)
		require.NoError(t, c.Close())

		require.NoError(t, l.Close())
		listenRequireFDs(t, before)
	})
}

func TestPairChild(t *testing.T) {
	t.Run("we hang up", func(t *testing.T) {
		testutil.NoGC(t)
		before := testutil.Snap(t)
		c, f, err := sealbuf.Pair()
		require.NoError(t, err)
		child := listenStart(t, "pair-echo", "", f)
		for i := range 3 {
			listenRequireEcho(t, c, fmt.Sprint("message ", i))
		}
		require.NoError(t, c.Close())
		require.NoError(t, child.Wait(), "the child must see io.EOF when we hang up")
		listenRequireFDs(t, before)
	})
	t.Run("the child exits", func(t *testing.T) {
		testutil.NoGC(t)
		before := testutil.Snap(t)
		c, f, err := sealbuf.Pair()
		require.NoError(t, err)
		child := listenStart(t, "pair-send-exit", "", f)
		require.NoError(t, child.Wait())
		h := make([]byte, 64)
		n, bufs, err := c.Receive(h)
		require.NoError(t, err, "the message sent before the exit arrives")
		require.Equal(t, "bye", string(h[:n]))
		require.Len(t, bufs, 1)
		require.Equal(t, "buffer bye", string(bufs[0].Bytes()))
		connCloseAll(bufs)
		listenRequireEOF(t, c)
		require.NoError(t, c.Close())
		listenRequireFDs(t, before)
	})
	t.Run("the child is killed", func(t *testing.T) {
		c, f, err := sealbuf.Pair()
		require.NoError(t, err)
		defer c.Close()
		child := listenStart(t, "pair-echo", "", f)
		listenRequireEcho(t, c, "before the kill")
		child.Kill(t)
		listenRequireEOF(t, c)
	})
}

// TestPairFile: Pair's file is a close-on-exec "unixpacket" socket that
// FileConn takes in this process too.
func TestPairFile(t *testing.T) {
	testutil.NoGC(t)
	before := testutil.Snap(t)
	c, f, err := sealbuf.Pair()
	require.NoError(t, err)
	rc, err := f.SyscallConn()
	require.NoError(t, err)
	var flags, typ int
	var ferr, terr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		flags, ferr = unix.FcntlInt(fd, unix.F_GETFD, 0)
		typ, terr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
	}))
	require.NoError(t, ferr)
	require.NoError(t, terr)
	require.NotZero(t, flags&unix.FD_CLOEXEC, "Pair's file must be close-on-exec: only ExtraFiles passes it on")
	require.Equal(t, unix.SOCK_SEQPACKET, typ)

	d, err := sealbuf.FileConn(f)
	require.NoError(t, err)
	_, err = f.Stat()
	require.ErrorIs(t, err, os.ErrClosed, "FileConn owns f on success: closed, the Conn has its own descriptor")
	listenRoundTrip(t, c, d, "there")
	listenRoundTrip(t, d, c, "and back")
	require.NoError(t, d.Close())
	listenRequireEOF(t, c)
	require.NoError(t, c.Close())
	listenRequireFDs(t, before)
}

// listenFileConn wraps f with FileConn, closed when the test ends.
func listenFileConn(t testing.TB, f *os.File) *sealbuf.Conn {
	t.Helper()
	c, err := sealbuf.FileConn(f)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestFileConnStream: FileConn also takes a "unix" stream socket.
func TestFileConnStream(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	fa, fb := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
	a, err := sealbuf.FileConn(fa)
	require.NoError(t, err)
	defer a.Close()
	b, err := sealbuf.FileConn(fb)
	require.NoError(t, err)
	defer b.Close()
	listenRoundTrip(t, a, b, "over a stream")
}

// TestFileConnRefuses: anything but a connected UNIX stream or seqpacket
// socket is refused with an error saying what it is, and the file stays
// the caller's, open.
func TestFileConnRefuses(t *testing.T) {
	testutil.NoGC(t)
	before := testutil.Snap(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		make func(t *testing.T) *os.File
		want string
	}{
		{"pipe", func(t *testing.T) *os.File {
			r, w, err := os.Pipe()
			require.NoError(t, err)
			require.NoError(t, w.Close())
			return r
		}, "it is a pipe, not a socket"},
		{"regular file", func(t *testing.T) *os.File {
			f, err := os.CreateTemp(dir, "regular")
			require.NoError(t, err)
			return f
		}, "it is a regular file, not a socket"},
		{"directory", func(t *testing.T) *os.File {
			f, err := os.Open(dir)
			require.NoError(t, err)
			return f
		}, "it is a directory, not a socket"},
		{"memfd", func(t *testing.T) *os.File {
			fd, err := unix.MemfdCreate("not-a-socket", unix.MFD_CLOEXEC)
			require.NoError(t, err)
			return os.NewFile(uintptr(fd), "memfd")
		}, "it is a regular file, not a socket"},
		{"inet socket", func(t *testing.T) *os.File {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			require.NoError(t, err)
			return os.NewFile(uintptr(fd), "inet")
		}, "a socket of another family (AF_INET), not a UNIX socket"},
		{"unix datagram", func(t *testing.T) *os.File {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			require.NoError(t, err)
			require.NoError(t, unix.Close(fds[1]))
			return os.NewFile(uintptr(fds[0]), "dgram")
		}, "a datagram UNIX socket"},
		{"unconnected unix socket", func(t *testing.T) *os.File {
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
			require.NoError(t, err)
			return os.NewFile(uintptr(fd), "unconnected")
		}, "a UNIX socket that is not connected"},
		{"unix listener", func(t *testing.T) *os.File {
			l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: listenAbstract(), Net: "unixpacket"})
			require.NoError(t, err)
			defer l.Close()
			f, err := l.File()
			require.NoError(t, err)
			return f
		}, "a listening socket, not a connection"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.make(t)
			c, err := sealbuf.FileConn(f)
			require.Nil(t, c)
			require.ErrorContains(t, err, tc.want)
			_, err = f.Stat()
			require.NoError(t, err, "on error f stays the caller's, open")
			require.NoError(t, f.Close())
		})
	}
	_, err := sealbuf.FileConn(nil)
	require.ErrorContains(t, err, "nil")

	c, f, err := sealbuf.Pair()
	require.NoError(t, err)
	require.NoError(t, f.Close())
	_, err = sealbuf.FileConn(f)
	require.ErrorIs(t, err, os.ErrClosed)
	require.ErrorContains(t, err, "the file is closed")
	require.NoError(t, c.Close())
	listenRequireFDs(t, before)
}

// extra-file SCENARIO: run ExtraFile's checks in a child. Scenarios:
// "socket" (ExtraFiles: a unixpacket socket, a pipe), "inet" (an AF_INET
// socket), "none" (no ExtraFiles).
var _ = testutil.Role("extra-file", func(scenario string) int {
	expect := func(i int, want string) error {
		f, err := sealbuf.ExtraFile(i)
		if err == nil {
			f.Close()
			return fmt.Errorf("ExtraFile(%d) succeeded, want an error containing %q", i, want)
		}
		if !strings.Contains(err.Error(), want) {
			return fmt.Errorf("ExtraFile(%d): %v\nwant an error containing %q", i, err, want)
		}
		return nil
	}
	err := func() error {
		switch scenario {
		case "none":
			// A high index: descriptor 3 may be one the test binary itself
			// inherited from whatever started it.
			if err := expect(100, "descriptor 103 is not open: start this process with the socket in exec.Cmd.ExtraFiles[100]"); err != nil {
				return err
			}
			return expect(-1, "out of range")
		case "inet":
			return expect(0, "a socket of another family (AF_INET), not a UNIX socket")
		case "socket":
			if err := expect(1, "it is a pipe, not a socket"); err != nil {
				return err
			}
			if err := expect(100, "descriptor 103 is not open"); err != nil {
				return err
			}
			f, err := sealbuf.ExtraFile(0)
			if err != nil {
				return err
			}
			if err := expect(0, "adopted it already"); err != nil {
				return err
			}
			rc, err := f.SyscallConn()
			if err != nil {
				return err
			}
			var flags int
			var ferr error
			if err := rc.Control(func(fd uintptr) { flags, ferr = unix.FcntlInt(fd, unix.F_GETFD, 0) }); err != nil || ferr != nil {
				return fmt.Errorf("F_GETFD: %v %v", err, ferr)
			}
			if flags&unix.FD_CLOEXEC == 0 {
				return errors.New("the adopted descriptor is not close-on-exec: it would leak into our children")
			}
			c, err := sealbuf.FileConn(f)
			if err != nil {
				f.Close()
				return err
			}
			defer c.Close()
			return c.Send([]byte("adopted"))
		}
		return fmt.Errorf("unknown scenario %q", scenario)
	}()
	if err != nil {
		return testutil.ChildFail(err)
	}
	return 0
})

func TestExtraFile(t *testing.T) {
	t.Run("socket", func(t *testing.T) {
		c, f, err := sealbuf.Pair()
		require.NoError(t, err)
		defer c.Close()
		r, w, err := os.Pipe()
		require.NoError(t, err)
		defer r.Close()
		child := listenStart(t, "extra-file", "socket", f, w)
		require.NoError(t, child.Wait())
		h := make([]byte, 64)
		n, _, err := c.Receive(h)
		require.NoError(t, err)
		require.Equal(t, "adopted", string(h[:n]))
		listenRequireEOF(t, c)
	})
	t.Run("inet", func(t *testing.T) {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		child := listenStart(t, "extra-file", "inet", os.NewFile(uintptr(fd), "inet"))
		require.NoError(t, child.Wait())
	})
	t.Run("none", func(t *testing.T) {
		child := listenStart(t, "extra-file", "none")
		require.NoError(t, child.Wait())
	})
	t.Run("opened by this process", func(t *testing.T) {
		// A UNIX socket this process opened (close-on-exec, as Go opens
		// everything) is not mistaken for an inherited one.
		c, f, err := sealbuf.Pair()
		require.NoError(t, err)
		defer c.Close()
		defer f.Close()
		rc, err := f.SyscallConn()
		require.NoError(t, err)
		var got *os.File
		var xerr error
		require.NoError(t, rc.Control(func(fd uintptr) { got, xerr = sealbuf.ExtraFile(int(fd) - 3) }))
		require.Nil(t, got)
		require.ErrorContains(t, xerr, "is close-on-exec, so it was not inherited")
		listenRoundTrip(t, c, listenFileConn(t, f), "still ours")
	})
}

// TestListenStale: a socket file nobody is bound to any more is replaced.
func TestListenStale(t *testing.T) {
	for _, network := range []string{"unixpacket", "unix", "unixgram"} {
		t.Run("left by a "+network+" socket", func(t *testing.T) {
			path := listenPath(t)
			if network == "unixgram" {
				c, err := net.ListenUnixgram(network, &net.UnixAddr{Name: path, Net: network})
				require.NoError(t, err)
				require.NoError(t, c.Close()) // a datagram socket leaves its file behind
			} else {
				ul, err := net.ListenUnix(network, &net.UnixAddr{Name: path, Net: network})
				require.NoError(t, err)
				ul.SetUnlinkOnClose(false)
				require.NoError(t, ul.Close())
			}
			listenRequireServes(t, path)
		})
	}
	t.Run("left by a killed process", func(t *testing.T) {
		path := listenPath(t)
		child := listenStart(t, "listen-wait", path)
		require.Equal(t, "ready", child.readLine(t))
		child.Kill(t)
		fi, err := os.Lstat(path)
		require.NoError(t, err, "a killed listener leaves its socket file")
		require.Equal(t, os.ModeSocket, fi.Mode().Type())
		_, err = sealbuf.Dial(path)
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
		require.ErrorContains(t, err, "nothing listens on it")
		listenRequireServes(t, path)
	})
}

// listenRequireServes checks that Listen on path works and serves a Dial.
func listenRequireServes(t testing.TB, path string) {
	t.Helper()
	l, err := sealbuf.Listen(path)
	require.NoError(t, err)
	defer l.Close()
	d, err := sealbuf.Dial(path)
	require.NoError(t, err)
	defer d.Close()
	a := listenAccept(t, l)
	defer a.Close()
	listenRoundTrip(t, d, a, "served")
}

// TestListenInUse: a path where a running process has a socket bound is
// refused, the socket there left alone; a live listener sees nothing of it.
func TestListenInUse(t *testing.T) {
	testutil.NoGC(t)
	t.Run("a Listener of this process", func(t *testing.T) {
		path := listenPath(t)
		l, err := sealbuf.Listen(path)
		require.NoError(t, err)
		defer l.Close()
		before := testutil.Snap(t)
		l2, err := sealbuf.Listen(path)
		require.Nil(t, l2)
		require.ErrorIs(t, err, syscall.EADDRINUSE)
		require.ErrorContains(t, err, "in use: a running process listens on it")
		listenRequireFDs(t, before)

		// The first Listener still serves, and the first connection it
		// accepts is the dialer's: the check made none.
		d, err := sealbuf.Dial(path)
		require.NoError(t, err)
		defer d.Close()
		a := listenAccept(t, l)
		defer a.Close()
		listenRoundTrip(t, d, a, "still listening")
	})
	t.Run("a stream listener", func(t *testing.T) {
		path := listenPath(t)
		ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		require.NoError(t, err)
		defer ul.Close()
		_, err = sealbuf.Listen(path)
		require.ErrorContains(t, err, "in use: a running process listens on it")
		_, err = sealbuf.Dial(path)
		require.ErrorIs(t, err, syscall.EPROTOTYPE)
		require.ErrorContains(t, err, "not a \"unixpacket\" listener")
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		require.NoError(t, err, "the stream listener still works")
		require.NoError(t, c.Close())
	})
	t.Run("a datagram socket", func(t *testing.T) {
		path := listenPath(t)
		c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
		require.NoError(t, err)
		defer c.Close()
		_, err = sealbuf.Listen(path)
		require.ErrorContains(t, err, "in use: a running process has a datagram socket bound to it")
	})
	t.Run("a Listener of another process", func(t *testing.T) {
		path := listenPath(t)
		child := listenStart(t, "listen-wait", path)
		require.Equal(t, "ready", child.readLine(t))
		_, err := sealbuf.Listen(path)
		require.ErrorIs(t, err, syscall.EADDRINUSE)
		require.ErrorContains(t, err, "in use: a running process listens on it")
		d, err := sealbuf.Dial(path)
		require.NoError(t, err, "the other process still listens")
		require.NoError(t, d.Close())
		child.Kill(t)
	})
	t.Run("an abstract name", func(t *testing.T) {
		name := listenAbstract()
		l, err := sealbuf.Listen(name)
		require.NoError(t, err)
		_, err = sealbuf.Listen(name)
		require.ErrorIs(t, err, syscall.EADDRINUSE)
		require.ErrorContains(t, err, "the abstract name is in use by a running process")
		require.NoError(t, l.Close())
		l, err = sealbuf.Listen(name)
		require.NoError(t, err, "the name is free again once closed")
		require.NoError(t, l.Close())
	})
}

// TestListenNotSocket: anything but a socket at the path is refused and
// left as it was.
func TestListenNotSocket(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(t *testing.T, path string)
		want string
	}{
		{"regular file", func(t *testing.T, path string) {
			require.NoError(t, os.WriteFile(path, []byte("precious"), 0o600))
		}, "taken by a regular file, not a socket"},
		{"directory", func(t *testing.T, path string) {
			require.NoError(t, os.Mkdir(path, 0o700))
		}, "taken by a directory, not a socket"},
		{"symlink to a stale socket", func(t *testing.T, path string) {
			target := path + ".target"
			ul, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: target, Net: "unixpacket"})
			require.NoError(t, err)
			ul.SetUnlinkOnClose(false)
			require.NoError(t, ul.Close())
			require.NoError(t, os.Symlink(target, path))
		}, "taken by a symbolic link"},
		{"named pipe", func(t *testing.T, path string) {
			require.NoError(t, unix.Mkfifo(path, 0o600))
		}, "taken by a named pipe, not a socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := listenPath(t)
			tc.make(t, path)
			before, err := os.Lstat(path)
			require.NoError(t, err)
			l, err := sealbuf.Listen(path)
			require.Nil(t, l)
			require.ErrorIs(t, err, syscall.EADDRINUSE)
			require.ErrorContains(t, err, tc.want)
			require.ErrorContains(t, err, "remove it if nothing needs it, or choose another path")
			after, err := os.Lstat(path)
			require.NoError(t, err, "left in place")
			require.True(t, os.SameFile(before, after), "left in place")
			if tc.name == "regular file" {
				b, err := os.ReadFile(path)
				require.NoError(t, err)
				require.Equal(t, "precious", string(b))
			}
		})
	}
}

// TestDialNothing: Dial fails at once, saying why, when nothing listens.
func TestDialNothing(t *testing.T) {
	testutil.NoGC(t)
	before := testutil.Snap(t)
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	ul, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: stale, Net: "unixpacket"})
	require.NoError(t, err)
	ul.SetUnlinkOnClose(false)
	require.NoError(t, ul.Close())
	regular := filepath.Join(dir, "regular")
	require.NoError(t, os.WriteFile(regular, nil, 0o600))
	for _, tc := range []struct {
		name, path string
		errno      error
		want       string
	}{
		{"no file", filepath.Join(dir, "nothing.sock"), syscall.ENOENT, "nothing listens there (no such socket file): start the listener first"},
		{"stale socket file", stale, syscall.ECONNREFUSED, "nothing listens on it"},
		{"regular file", regular, syscall.ECONNREFUSED, "the path is a regular file, not a socket"},
		{"abstract name", listenAbstract(), syscall.ECONNREFUSED, "nothing listens on that abstract name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := sealbuf.Dial(tc.path)
			require.Nil(t, c)
			require.ErrorIs(t, err, tc.errno)
			require.ErrorContains(t, err, tc.want)
		})
	}
	listenRequireFDs(t, before)
}

// TestListenBadName: names the kernel cannot bind are refused up front,
// saying why.
func TestListenBadName(t *testing.T) {
	long := "/tmp/" + strings.Repeat("x", 103) // 108 bytes: one too many
	for _, tc := range []struct{ name, want string }{
		{"", "empty socket path"},
		{"@", "empty abstract name"},
		{"a\x00b", "NUL byte"},
		{long, "socket path of 108 bytes, more than the kernel's 107"},
		{"@" + strings.Repeat("x", 108), "abstract name of 108 bytes, more than the kernel's 107"},
	} {
		_, err := sealbuf.Listen(tc.name)
		require.ErrorContains(t, err, tc.want)
		_, err = sealbuf.Dial(tc.name)
		require.ErrorContains(t, err, tc.want)
	}
	// The longest names that fit work.
	l, err := sealbuf.Listen("@" + strings.Repeat("y", 107))
	require.NoError(t, err)
	require.NoError(t, l.Close())
}

// TestListenerCloseWhileAccepting: Close wakes every Accept waiting, also
// while dialers come and go, and leaks nothing.
func TestListenerCloseWhileAccepting(t *testing.T) {
	testutil.NoGC(t)
	before := testutil.Snap(t)
	for round := range 20 {
		path := listenPath(t)
		l, err := sealbuf.Listen(path)
		require.NoError(t, err)
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 4 {
			wg.Go(func() {
				for {
					c, err := l.Accept()
					if err != nil {
						errs <- err
						return
					}
					_ = c.Close()
				}
			})
		}
		stop := make(chan struct{})
		var dialers sync.WaitGroup
		for range 2 {
			dialers.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if c, err := sealbuf.Dial(path); err == nil {
						_ = c.Close()
					}
				}
			})
		}
		time.Sleep(time.Duration(round%5) * time.Millisecond)
		require.NoError(t, l.Close())
		wg.Wait()
		close(stop)
		dialers.Wait()
		close(errs)
		for err := range errs {
			require.ErrorIs(t, err, net.ErrClosed)
			require.ErrorIs(t, err, os.ErrClosed)
		}
		_, err = os.Lstat(path)
		require.ErrorIs(t, err, os.ErrNotExist, "Close removes the socket file")
	}
	listenRequireFDs(t, before)
}

// TestFileConnPeerGone: a socket whose other end is already closed is still
// a connection: FileConn takes it, and Receive reads io.EOF.
func TestFileConnPeerGone(t *testing.T) {
	c, f, err := sealbuf.Pair()
	require.NoError(t, err)
	require.NoError(t, c.Close())
	d := listenFileConn(t, f)
	listenRequireEOF(t, d)
}
