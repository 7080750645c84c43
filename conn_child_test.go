//go:build linux

package sealbuf_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/memfd"
)

// The roles below (testutil.Role) play a peer process over a socketpair
// whose other end is the child's descriptor 3.

// childConn wraps descriptor 3 in a Conn.
func childConn() (*sealbuf.Conn, error) {
	f := testutil.ChildFile(0, "child-socket")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, fmt.Errorf("descriptor 3 is a %T", c)
	}
	return sealbuf.NewConn(uc), nil
}

// childMessage is message i of the conn-send role: a header and k buffers
// with contents the parent can recompute.
func childMessage(i int) (header []byte, contents [][]byte) {
	header = connPattern(fmt.Sprint("child-hdr-", i), i*997%70001+1)
	for j := range i % 5 {
		contents = append(contents, connPattern(fmt.Sprint("child-buf-", i, "-", j), 1000*j+i))
	}
	if i == 7 {
		for j := range 200 {
			contents = append(contents, connPattern(fmt.Sprint("child-buf-", i, "-", j), j))
		}
	}
	return header, contents
}

// conn-send ARG: send ARG messages (childMessage), handing each buffer
// over with SendAndClose, then exit.
var _ = testutil.Role("conn-send", func(arg string) int {
	n, err := strconv.Atoi(arg)
	if err != nil {
		return testutil.ChildFail(err)
	}
	c, err := childConn()
	if err != nil {
		return testutil.ChildFail(err)
	}
	for i := range n {
		header, contents := childMessage(i)
		bufs := make([]*sealbuf.Sealed, len(contents))
		for j, b := range contents {
			if bufs[j], err = sealbuf.FromBytes(b); err != nil {
				return testutil.ChildFail(err)
			}
		}
		if err := c.SendAndClose(header, bufs...); err != nil {
			return testutil.ChildFail(fmt.Errorf("message %d: %w", i, err))
		}
	}
	return 0 // exit with everything still in flight: the kernel keeps it
})

// conn-echo: receive messages until the parent hangs up; answer each with
// its header, "|", the SHA-256 of each buffer (comma-separated), and the
// same buffers sent back.
var _ = testutil.Role("conn-echo", func(string) int {
	c, err := childConn()
	if err != nil {
		return testutil.ChildFail(err)
	}
	defer c.Close()
	h := make([]byte, 1<<17)
	for {
		n, bufs, err := c.Receive(h)
		if err == io.EOF {
			return 0
		}
		if err != nil {
			return testutil.ChildFail(err)
		}
		var sums []string
		for _, b := range bufs {
			if !b.Seals().Has(memfd.SealImmutable) {
				return testutil.ChildFail(fmt.Errorf("received buffer with seals %s", b.Seals()))
			}
			sums = append(sums, connSHA(b.Bytes()))
		}
		reply := append(append(h[:n:n], '|'), strings.Join(sums, ",")...)
		err = c.Send(reply, bufs...)
		connCloseAll(bufs)
		if err != nil {
			return testutil.ChildFail(err)
		}
	}
})

// conn-half-frame ARG: write part of a stream frame announcing a 1000-byte
// header and one descriptor — ARG "prefix3": 3 bytes of the prefix,
// "header100": the prefix and 100 header bytes — with a sealed memfd, then
// exit without writing the rest.
var _ = testutil.Role("conn-half-frame", func(arg string) int {
	s, err := sealbuf.FromBytes([]byte("orphan"))
	if err != nil {
		return testutil.ChildFail(err)
	}
	data := connFrame(1000, 1)
	switch arg {
	case "prefix3":
		data = data[:3]
	case "header100":
		data = append(data, make([]byte, 100)...)
	default:
		return testutil.ChildFail(fmt.Errorf("bad argument %q", arg))
	}
	sock := testutil.ChildFile(0, "child-socket")
	rc, err := sock.SyscallConn()
	if err != nil {
		return testutil.ChildFail(err)
	}
	var serr error
	err = s.File().Control(func(mfd int) error {
		return rc.Control(func(fd uintptr) {
			serr = unix.Sendmsg(int(fd), data, unix.UnixRights(mfd), nil, unix.MSG_NOSIGNAL)
		})
	})
	if err != nil || serr != nil {
		return testutil.ChildFail(fmt.Errorf("sendmsg: %v %v", err, serr))
	}
	return 0
})

// conn-block ARG: send "ready", then block — ARG "receive": in Receive,
// "sleep": sleeping, reading nothing — until killed.
var _ = testutil.Role("conn-block", func(arg string) int {
	c, err := childConn()
	if err != nil {
		return testutil.ChildFail(err)
	}
	if err := c.Send([]byte("ready")); err != nil {
		return testutil.ChildFail(err)
	}
	if arg == "sleep" {
		time.Sleep(time.Hour)
		return 0
	}
	_, _, err = c.Receive(make([]byte, 64))
	return testutil.ChildFail(fmt.Errorf("Receive returned: %v", err))
})

// childPair returns a Conn and the socket to hand to a child.
func childPair(t *testing.T, typ int) (*sealbuf.Conn, *os.File) {
	t.Helper()
	return connRawPair(t, typ)
}

func TestChildConnReceive(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		for _, tc := range []struct {
			name        string
			messages    int
			exitedFirst bool
		}{
			// A few small messages fit in the socket buffer: the child
			// exits before we read, everything still in flight.
			{"child exited first", 5, true},
			// More than the socket buffer holds: we read while it sends.
			{"while the child sends", 25, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				testutil.NoGC(t)
				c, sock := childPair(t, typ)
				before := testutil.Snap(t)
				child := testutil.StartChild(t, "conn-send", strconv.Itoa(tc.messages), sock)
				if tc.exitedFirst {
					require.NoError(t, child.Wait())
				}
				h := make([]byte, 80000)
				for i := range tc.messages {
					header, contents := childMessage(i)
					k, bufs, err := c.Receive(h)
					require.NoError(t, err, "message %d", i)
					require.True(t, bytes.Equal(header, h[:k]), "message %d: header", i)
					require.Len(t, bufs, len(contents), "message %d", i)
					for j, b := range bufs {
						require.True(t, bytes.Equal(contents[j], b.Bytes()), "message %d buffer %d", i, j)
						require.True(t, b.Seals().Has(memfd.SealImmutable))
					}
					connCloseAll(bufs)
				}
				_, bufs, err := c.Receive(h)
				require.ErrorIs(t, err, io.EOF)
				require.Nil(t, bufs)
				if !tc.exitedFirst {
					require.NoError(t, child.Wait())
				}
				testutil.RequireDelta(t, before, testutil.Counts{Total: -1},
					"only the child's end of the socketpair is gone")
			})
		}
	})
}

func TestChildConnEcho(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		testutil.NoGC(t)
		c, sock := childPair(t, typ)
		one := connSealed(t, []byte("one"))
		empty := connSealed(t, nil)
		b, err := sealbuf.New(1 << 20)
		require.NoError(t, err)
		copy(b.Bytes(), connPattern("mib", 1<<20))
		mib, err := b.Seal()
		require.NoError(t, err)
		t.Cleanup(func() { _ = mib.Close() })
		mib.Bytes() // map it now, so the leak counts stay put
		many := make([]*sealbuf.Sealed, 200)
		for i := range many {
			many[i] = []*sealbuf.Sealed{one, empty, mib}[i%3]
		}
		before := testutil.Snap(t)
		child := testutil.StartChild(t, "conn-echo", "", sock)

		for _, m := range []struct {
			header string
			bufs   []*sealbuf.Sealed
		}{
			{"one", []*sealbuf.Sealed{one}},
			{"same twice", []*sealbuf.Sealed{one, mib, one}},
			{"", []*sealbuf.Sealed{empty}},
			{"header only", nil},
			{"two hundred", many},
			{strings.Repeat("long header ", 5000), []*sealbuf.Sealed{mib}},
		} {
			require.NoError(t, c.Send([]byte(m.header), m.bufs...))
			h := make([]byte, 1<<17)
			n, got, err := c.Receive(h)
			require.NoError(t, err, "%.20q", m.header)
			var sums []string
			for _, s := range m.bufs {
				sums = append(sums, connSHA(s.Bytes()))
			}
			require.Equal(t, m.header+"|"+strings.Join(sums, ","), string(h[:n]))
			require.Len(t, got, len(m.bufs))
			for i, s := range got {
				require.True(t, bytes.Equal(m.bufs[i].Bytes(), s.Bytes()), "buffer %d came back changed", i)
			}
			connCloseAll(got)
		}
		require.NoError(t, c.Close())
		require.NoError(t, child.Wait())
		testutil.RequireDelta(t, before, testutil.Counts{Total: -2}, "the child's end and our Conn are closed, nothing else changed")
	})
}

// TestChildConnHalfFrame: the peer dies in the middle of a stream frame.
func TestChildConnHalfFrame(t *testing.T) {
	for _, arg := range []string{"prefix3", "header100"} {
		t.Run(arg, func(t *testing.T) {
			testutil.NoGC(t)
			c, sock := childPair(t, unix.SOCK_STREAM)
			before := testutil.Snap(t)
			child := testutil.StartChild(t, "conn-half-frame", arg, sock)
			require.NoError(t, child.Wait())
			_, bufs, err := c.Receive(make([]byte, 2000))
			require.ErrorIs(t, err, io.ErrUnexpectedEOF, "%v", err)
			require.Nil(t, bufs)
			testutil.RequireDelta(t, before, testutil.Counts{Total: -1},
				"the memfd that came with the half frame must be closed")
		})
	}
}

// TestChildConnKilled: a peer killed while we wait for it is a hang-up.
func TestChildConnKilled(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		for _, tc := range []struct {
			arg    string
			unread bool
		}{
			{"receive", false}, // the child is blocked reading
			{"sleep", true},    // our message lies unread in its queue: ECONNRESET
		} {
			t.Run(tc.arg, func(t *testing.T) {
				c, sock := childPair(t, typ)
				child := testutil.StartChild(t, "conn-block", tc.arg, sock)
				h, _ := connReceive(t, c, 64)
				require.Equal(t, "ready", h)
				if tc.unread {
					require.NoError(t, c.Send([]byte("you will never read this")))
				}
				done := make(chan error, 1)
				go func() {
					_, _, err := c.Receive(make([]byte, 64))
					done <- err
				}()
				testutil.WaitBlocked(t, "TestChildConnKilled", "sealbuf.(*Conn).ReceiveContext")
				require.NoError(t, child.Cmd.Process.Kill())
				select {
				case err := <-done:
					require.ErrorIs(t, err, io.EOF, "%v", err)
				case <-time.After(10 * time.Second):
					t.Fatal("Receive still blocked after the peer was killed")
				}
				require.Error(t, child.Wait(), "killed")
			})
		}
	})
}
