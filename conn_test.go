//go:build linux

package sealbuf_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/memfd"
)

// The tests of Conn run over real socketpairs of both kinds the contract
// names, with real memfds, pipes and files, and count the process's
// descriptors and memfd mappings around every refusal.

// pair returns two Conns over a new socketpair of type typ.
func pair(t *testing.T, typ int) (*sealbuf.Conn, *sealbuf.Conn) {
	t.Helper()
	return connPairOpts(t, typ, nil, nil)
}

// connPairOpts is pair with options for each end.
func connPairOpts(t testing.TB, typ int, aOpts, bOpts []sealbuf.ConnOption) (*sealbuf.Conn, *sealbuf.Conn) {
	t.Helper()
	ua, ub := testutil.UnixPair(t, typ)
	a, b := sealbuf.NewConn(ua, aOpts...), sealbuf.NewConn(ub, bOpts...)
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a, b
}

// connRawPair returns a Conn and the raw other end of its socketpair, for
// tests that play a peer which does not speak through Conn.
func connRawPair(t testing.TB, typ int, opts ...sealbuf.ConnOption) (*sealbuf.Conn, *os.File) {
	t.Helper()
	fa, fb := testutil.Socketpair(t, typ)
	c := sealbuf.NewConn(testutil.UnixConn(t, fa), opts...)
	require.NoError(t, fa.Close())
	t.Cleanup(func() { _ = c.Close() })
	return c, fb
}

// connRawSend sends data, and the descriptors of files as SCM_RIGHTS, with
// one blocking sendmsg on a raw socket: a peer that does not go through Conn.
func connRawSend(t testing.TB, sock *os.File, data []byte, files ...*os.File) {
	t.Helper()
	connBorrowAll(t, append([]*os.File{sock}, files...), nil, func(fds []int) {
		var oob []byte
		if len(fds) > 1 {
			oob = unix.UnixRights(fds[1:]...)
		}
		require.NoError(t, unix.Sendmsg(fds[0], data, oob, nil, unix.MSG_NOSIGNAL))
	})
}

// connBorrowAll lends the descriptors of files to fn, all at once (each
// borrowed with SyscallConn().Control for as long as fn runs).
func connBorrowAll(t testing.TB, files []*os.File, fds []int, fn func(fds []int)) {
	t.Helper()
	if len(files) == 0 {
		fn(fds)
		return
	}
	rc, err := files[0].SyscallConn()
	require.NoError(t, err)
	require.NoError(t, rc.Control(func(fd uintptr) {
		connBorrowAll(t, files[1:], append(fds[:len(fds):len(fds)], int(fd)), fn)
	}))
}

// connFrame encodes the documented stream frame prefix: header length as
// little-endian uint32, descriptor count as little-endian uint16, "SB".
func connFrame(headerLen, files int) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(headerLen))
	b = binary.LittleEndian.AppendUint16(b, uint16(files))
	return append(b, 'S', 'B')
}

// connPattern returns n deterministic bytes derived from seed: its SHA-256
// repeated. The Python peer computes the same bytes.
func connPattern(seed string, n int) []byte {
	sum := sha256.Sum256([]byte(seed))
	b := make([]byte, n)
	for i := 0; i < n; i += len(sum) {
		copy(b[i:], sum[:])
	}
	return b
}

func connSHA(b []byte) string {
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%x", sum)
}

// connSealed returns a sealed copy of b, closed when the test ends.
func connSealed(t testing.TB, b []byte) *sealbuf.Sealed {
	t.Helper()
	s, err := sealbuf.FromBytes(b, sealbuf.WithName("conn-test"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	s.Bytes() // map it now (Sealed maps lazily), so the leak counts stay put
	return s
}

// connMemfd returns a memfd holding data with seals added, as a plain
// *os.File (the way another language's producer would make it), closed when
// the test ends.
func connMemfd(t testing.TB, data []byte, seals memfd.Seals) *os.File {
	t.Helper()
	fd, err := unix.MemfdCreate("conn-raw", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	require.NoError(t, err)
	f := os.NewFile(uintptr(fd), "conn-raw-memfd")
	t.Cleanup(func() { _ = f.Close() })
	_, err = f.WriteAt(data, 0)
	require.NoError(t, err)
	if seals != 0 {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, int(seals))
		require.NoError(t, err)
	}
	return f
}

func connCloseAll(bufs []*sealbuf.Sealed) {
	for _, b := range bufs {
		_ = b.Close()
	}
}

// connRequireCloexec checks that a received descriptor is close-on-exec.
func connRequireCloexec(t testing.TB, rc interface {
	Control(func(fd uintptr)) error
}) {
	t.Helper()
	var flags int
	var ferr error
	require.NoError(t, rc.Control(func(fd uintptr) { flags, ferr = unix.FcntlInt(fd, unix.F_GETFD, 0) }))
	require.NoError(t, ferr)
	require.NotZero(t, flags&unix.FD_CLOEXEC, "received descriptor is not close-on-exec")
}

// connReceive receives one message that must succeed.
func connReceive(t testing.TB, c *sealbuf.Conn, size int) (string, []*sealbuf.Sealed) {
	t.Helper()
	h := make([]byte, size)
	n, bufs, err := c.Receive(h)
	require.NoError(t, err)
	t.Cleanup(func() { connCloseAll(bufs) })
	return string(h[:n]), bufs
}

// connRequireNext checks that the Conn still works: the next message is
// header "next" with one buffer holding "after".
func connRequireNext(t testing.TB, a, b *sealbuf.Conn) {
	t.Helper()
	s, err := sealbuf.FromBytes([]byte("after"))
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, a.Send([]byte("next"), s))
	h, bufs := connReceive(t, b, 64)
	require.Equal(t, "next", h)
	require.Len(t, bufs, 1)
	require.Equal(t, "after", string(bufs[0].Bytes()))
	connCloseAll(bufs)
}

func TestConnRoundTrip(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		testutil.NoGC(t)
		a, b := pair(t, typ)
		one := connSealed(t, []byte("one"))
		big := connSealed(t, connPattern("big", 3<<20+17))
		empty := connSealed(t, nil)
		before := testutil.Snap(t)

		require.NoError(t, a.Send([]byte("hdr"), one, big, empty))
		h, bufs := connReceive(t, b, 64)
		require.Equal(t, "hdr", h)
		require.Len(t, bufs, 3)
		require.Equal(t, "one", string(bufs[0].Bytes()))
		require.Equal(t, 3<<20+17, bufs[1].Len())
		require.True(t, bytes.Equal(connPattern("big", 3<<20+17), bufs[1].Bytes()), "contents of the big buffer differ")
		require.Equal(t, 0, bufs[2].Len())
		require.Empty(t, bufs[2].Bytes())
		for i, s := range bufs {
			require.True(t, s.Seals().Has(memfd.SealImmutable), "buffer %d: seals %s", i, s.Seals())
			rc, err := s.File().SyscallConn()
			require.NoError(t, err)
			connRequireCloexec(t, rc)
		}
		p := make([]byte, 8)
		n, err := bufs[1].ReadAt(p, 3<<20+10)
		require.Equal(t, 7, n)
		require.ErrorIs(t, err, io.EOF)

		// The sender's buffers are untouched, and may be sent again.
		require.Equal(t, "one", string(one.Bytes()))
		connCloseAll(bufs)
		testutil.RequireFlat(t, before)
		connRequireNext(t, a, b)
		testutil.RequireFlat(t, before)
	})
}

// TestConnBothDirections sends over the same Conn pair both ways at once.
func TestConnBothDirections(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, b := pair(t, typ)
		sa := connSealed(t, []byte("from a"))
		sb := connSealed(t, []byte("from b"))
		const n = 200
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		run := func(fn func() error) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := fn(); err != nil {
					errs <- err
				}
			}()
		}
		send := func(c *sealbuf.Conn, s *sealbuf.Sealed, tag string) func() error {
			return func() error {
				for i := range n {
					if err := c.Send(fmt.Appendf(nil, "%s %d", tag, i), s); err != nil {
						return err
					}
				}
				return nil
			}
		}
		recv := func(c *sealbuf.Conn, tag, want string) func() error {
			return func() error {
				h := make([]byte, 64)
				for i := range n {
					k, bufs, err := c.Receive(h)
					if err != nil {
						return err
					}
					got := ""
					if len(bufs) == 1 {
						got = string(bufs[0].Bytes())
					}
					connCloseAll(bufs)
					if string(h[:k]) != fmt.Sprintf("%s %d", tag, i) || got != want {
						return fmt.Errorf("message %d: header %q, buffer %q", i, h[:k], got)
					}
				}
				return nil
			}
		}
		run(send(a, sa, "a"))
		run(send(b, sb, "b"))
		run(recv(b, "a", "from a"))
		run(recv(a, "b", "from b"))
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	})
}

func TestConnNewConnDoesNotDup(t *testing.T) {
	testutil.NoGC(t)
	ua, ub := testutil.UnixPair(t, unix.SOCK_SEQPACKET)
	before := testutil.Snap(t)
	a := sealbuf.NewConn(ua)
	testutil.RequireFlat(t, before, "NewConn must not duplicate the descriptor")
	require.NoError(t, a.Close())
	require.Equal(t, before.Total-1, testutil.Count(t).Total, "Close must close the wrapped connection")
	_, err := ua.Write([]byte("x"))
	require.ErrorIs(t, err, net.ErrClosed)
	// The peer sees the hang-up.
	b := sealbuf.NewConn(ub)
	_, _, err = b.Receive(make([]byte, 8))
	require.ErrorIs(t, err, io.EOF)
	// Using a closed Conn is an error, not a panic.
	require.Error(t, a.Send([]byte("x")))
	_, _, err = a.Receive(make([]byte, 8))
	require.Error(t, err)
}

func TestConnHeaderOnly(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, b := pair(t, typ)
		require.NoError(t, a.Send([]byte("just a header")))
		h, bufs := connReceive(t, b, 64)
		require.Equal(t, "just a header", h)
		require.Empty(t, bufs)
		// A header that fills the buffer exactly is not short.
		require.NoError(t, a.Send([]byte("12345678")))
		h, bufs = connReceive(t, b, 8)
		require.Equal(t, "12345678", h)
		require.Empty(t, bufs)
		connRequireNext(t, a, b)
	})
}

func TestConnEmptyHeaderWithBuffers(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, b := pair(t, typ)
		s := connSealed(t, []byte("payload"))
		require.NoError(t, a.Send(nil, s))
		require.NoError(t, a.Send([]byte{}, s, s))
		for _, want := range []int{1, 2} {
			n, bufs, err := b.Receive(nil) // no header buffer at all: nothing to be short of
			require.NoError(t, err)
			require.Zero(t, n)
			require.Len(t, bufs, want)
			for _, x := range bufs {
				require.Equal(t, "payload", string(x.Bytes()))
			}
			connCloseAll(bufs)
		}
		connRequireNext(t, a, b)
	})
}

func TestConnEmptyMessage(t *testing.T) {
	t.Run("unixpacket", func(t *testing.T) {
		a, b := pair(t, unix.SOCK_SEQPACKET)
		require.Error(t, a.Send(nil), "an empty packet reads as end of file: Send must refuse it")
		require.Error(t, a.Send([]byte{}))
		// Nothing was sent: the next message is the next one.
		connRequireNext(t, a, b)
	})
	t.Run("unix", func(t *testing.T) {
		a, b := pair(t, unix.SOCK_STREAM)
		require.NoError(t, a.Send(nil), "a stream frame has a prefix: an empty message is fine")
		n, bufs, err := b.Receive(make([]byte, 8))
		require.NoError(t, err)
		require.Zero(t, n)
		require.Empty(t, bufs)
		connRequireNext(t, a, b)
	})
}

func TestConnSameSealedTwice(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, b := pair(t, typ)
		s := connSealed(t, []byte("twice"))
		require.NoError(t, a.Send([]byte("dup"), s, s))
		require.NoError(t, a.Send([]byte("again"), s))
		h, bufs := connReceive(t, b, 16)
		require.Equal(t, "dup", h)
		require.Len(t, bufs, 2)
		require.NotSame(t, bufs[0], bufs[1])
		require.NoError(t, bufs[0].Close())
		require.Equal(t, "twice", string(bufs[1].Bytes()), "closing one received copy must not affect the other")
		require.NoError(t, bufs[1].Close())
		h, bufs = connReceive(t, b, 16)
		require.Equal(t, "again", h)
		require.Len(t, bufs, 1)
		require.Equal(t, "twice", string(bufs[0].Bytes()))
		require.Equal(t, "twice", string(s.Bytes()), "the sender still owns its buffer")
	})
}

func TestConnSendClosedSealed(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		testutil.NoGC(t)
		a, b := pair(t, typ)
		good := connSealed(t, []byte("good"))
		closed, err := sealbuf.FromBytes([]byte("closed"))
		require.NoError(t, err)
		require.NoError(t, closed.Close())
		before := testutil.Snap(t)

		for _, bufs := range [][]*sealbuf.Sealed{{closed}, {good, closed}, {closed, good}, {good, good, closed}} {
			err := a.Send([]byte("never"), bufs...)
			require.ErrorIs(t, err, os.ErrClosed, "%v", err)
		}
		err = a.Send([]byte("never"), good, nil)
		require.Error(t, err, "a nil buffer must be refused")
		testutil.RequireFlat(t, before)
		// None of them reached the peer.
		connRequireNext(t, a, b)
		testutil.RequireFlat(t, before)
	})
}

func TestConnManyDescriptors(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		testutil.NoGC(t)
		a, b := pair(t, typ)
		distinct := make([]*sealbuf.Sealed, 10)
		for i := range distinct {
			distinct[i] = connSealed(t, connPattern(fmt.Sprint("many-", i), 100+i))
		}
		before := testutil.Snap(t)
		for _, count := range []int{200, 253} {
			bufs := make([]*sealbuf.Sealed, count)
			for i := range bufs {
				bufs[i] = distinct[i%len(distinct)]
			}
			require.NoError(t, a.Send(fmt.Appendf(nil, "%d buffers", count), bufs...))
			h, got := connReceive(t, b, 64)
			require.Equal(t, fmt.Sprintf("%d buffers", count), h)
			require.Len(t, got, count)
			for i, s := range got {
				require.Equal(t, connPattern(fmt.Sprint("many-", i%len(distinct)), 100+i%len(distinct)), s.Bytes(), "buffer %d", i)
			}
			connCloseAll(got)
			testutil.RequireFlat(t, before)
		}
		// 254 is more than one message can carry: refused before anything is sent.
		bufs := make([]*sealbuf.Sealed, 254)
		for i := range bufs {
			bufs[i] = distinct[0]
		}
		require.Error(t, a.Send([]byte("too many"), bufs...))
		testutil.RequireFlat(t, before)
		connRequireNext(t, a, b)
		testutil.RequireFlat(t, before)
	})
}

// TestConnMaxFilesLimit sends more descriptors than the receiver's
// WithMaxFiles limit: an error, nothing leaked, and the next message fine.
func TestConnMaxFilesLimit(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		for _, limit := range []int{0, 1, 2, 3, 7, 100} {
			t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
				testutil.NoGC(t)
				a, b := connPairOpts(t, typ, nil, []sealbuf.ConnOption{sealbuf.WithMaxFiles(limit)})
				s := connSealed(t, []byte("x"))
				before := testutil.Snap(t)
				for _, over := range []int{1, 2, 5} {
					bufs := make([]*sealbuf.Sealed, limit+over)
					for i := range bufs {
						bufs[i] = s
					}
					require.NoError(t, a.Send([]byte("over the limit"), bufs...))
					n, got, err := b.Receive(make([]byte, 64))
					require.Error(t, err, "%d descriptors with a limit of %d", limit+over, limit)
					require.Nil(t, got)
					require.LessOrEqual(t, n, 64)
					testutil.RequireFlat(t, before, "%d descriptors with a limit of %d", limit+over, limit)

					// The Conn stays usable: a message at the limit works.
					bufs = bufs[:limit]
					require.NoError(t, a.Send([]byte("at the limit"), bufs...))
					h := make([]byte, 64)
					n, got, err = b.Receive(h)
					require.NoError(t, err, "the Conn must stay usable after refusing a message over the limit (DESIGN: Receive: on any failure … the Conn stays usable for the next message)")
					require.Equal(t, "at the limit", string(h[:n]))
					require.Len(t, got, limit)
					connCloseAll(got)
					testutil.RequireFlat(t, before)
				}
			})
		}
	})
}

// TestConnMaxFilesClamp: a limit above the kernel's is the kernel's.
func TestConnMaxFilesClamp(t *testing.T) {
	a, b := connPairOpts(t, unix.SOCK_SEQPACKET, nil, []sealbuf.ConnOption{sealbuf.WithMaxFiles(10000)})
	s := connSealed(t, []byte("x"))
	bufs := make([]*sealbuf.Sealed, 253)
	for i := range bufs {
		bufs[i] = s
	}
	require.NoError(t, a.Send([]byte("253"), bufs...))
	_, got := connReceive(t, b, 8)
	require.Len(t, got, 253)
}

func TestConnShortBuffer(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		testutil.NoGC(t)
		a, b := pair(t, typ)
		s := connSealed(t, []byte("x"))
		before := testutil.Snap(t)
		for _, tc := range []struct {
			name   string
			header int
			bufs   int
			room   int
		}{
			{"one byte over, with buffers", 65, 3, 64},
			{"far over, with buffers", 70000, 2, 10},
			{"header only", 100, 0, 4},
			{"no room at all", 5, 1, 0},
		} {
			bufs := make([]*sealbuf.Sealed, tc.bufs)
			for i := range bufs {
				bufs[i] = s
			}
			hdr := connPattern(tc.name, tc.header)
			require.NoError(t, a.Send(hdr, bufs...), tc.name)
			room := make([]byte, tc.room)
			n, got, err := b.Receive(room)
			require.ErrorIs(t, err, io.ErrShortBuffer, "%s: %v", tc.name, err)
			require.Nil(t, got, tc.name)
			require.LessOrEqual(t, n, tc.room, tc.name)
			testutil.RequireFlat(t, before, tc.name)
			// The message was consumed: the next Receive gets the next one.
			connRequireNext(t, a, b)
			testutil.RequireFlat(t, before, tc.name)
		}
	})
}

// connHeaderSizes are the header lengths the back-to-back tests cycle
// through: around the edges of the frame prefix, the stream code's discard
// buffer, pages, and the 64 KiB a socket buffer typically takes.
var connHeaderSizes = []int{0, 1, 7, 8, 9, 100, 511, 512, 513, 4095, 4096, 4097, 20000, 65535, 65536, 65537, 70000, 3, 0, 0}

// connBackToBack sends many messages with varying headers and descriptor
// counts from one goroutine and checks them, in order, on another;
// pause slows the reader down between messages. Nothing may leak.
func connBackToBack(t *testing.T, a, b *sealbuf.Conn, typ int, rounds int, pause time.Duration) {
	t.Helper()
	testutil.NoGC(t)
	pool := make([]*sealbuf.Sealed, 7)
	for i := range pool {
		pool[i] = connSealed(t, connPattern(fmt.Sprint("pool-", i), 1000*i+1))
	}
	before := testutil.Snap(t)
	defer testutil.RequireFlat(t, before)
	type msg struct {
		header []byte
		bufs   []int // indexes into pool
	}
	var msgs []msg
	for r := range rounds {
		for i, size := range connHeaderSizes {
			k := (r*len(connHeaderSizes) + i) % 6
			if size == 0 && k == 0 && typ == unix.SOCK_SEQPACKET {
				k = 1 // an empty packet would be refused
			}
			if i == 3 && r == 0 {
				k = 40 // one message with many descriptors
			}
			m := msg{header: connPattern(fmt.Sprint("hdr-", r, "-", i), size)}
			for j := range k {
				m.bufs = append(m.bufs, (i+j)%len(pool))
			}
			msgs = append(msgs, m)
		}
	}
	sendErr := make(chan error, 1)
	go func() {
		for i, m := range msgs {
			bufs := make([]*sealbuf.Sealed, len(m.bufs))
			for j, k := range m.bufs {
				bufs[j] = pool[k]
			}
			if err := a.Send(m.header, bufs...); err != nil {
				sendErr <- fmt.Errorf("send %d: %w", i, err)
				return
			}
		}
		sendErr <- nil
	}()
	h := make([]byte, 80000)
	for i, m := range msgs {
		if pause > 0 {
			time.Sleep(pause)
		}
		n, bufs, err := b.Receive(h)
		require.NoError(t, err, "message %d", i)
		require.Equal(t, len(m.header), n, "message %d", i)
		require.True(t, bytes.Equal(m.header, h[:n]), "message %d: header differs", i)
		require.Len(t, bufs, len(m.bufs), "message %d", i)
		for j, k := range m.bufs {
			require.True(t, bytes.Equal(pool[k].Bytes(), bufs[j].Bytes()), "message %d buffer %d", i, j)
		}
		connCloseAll(bufs)
	}
	require.NoError(t, <-sendErr)
}

func TestConnBackToBack(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, b := pair(t, typ)
		connBackToBack(t, a, b, typ, 5, 0)
	})
}

// TestConnStreamSlowReader shrinks the socket buffers and slows the reader,
// so the kernel splits frames across many reads and the writer's sendmsg
// returns short counts.
func TestConnStreamSlowReader(t *testing.T) {
	fa, fb := testutil.Socketpair(t, unix.SOCK_STREAM)
	for _, f := range []*os.File{fa, fb} {
		rc, err := f.SyscallConn()
		require.NoError(t, err)
		require.NoError(t, rc.Control(func(fd uintptr) {
			require.NoError(t, unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096))
			require.NoError(t, unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096))
		}))
	}
	a, b := sealbuf.NewConn(testutil.UnixConn(t, fa)), sealbuf.NewConn(testutil.UnixConn(t, fb))
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	connBackToBack(t, a, b, unix.SOCK_STREAM, 2, time.Millisecond)
}

func TestConnStreamHeaderLimit(t *testing.T) {
	a, b := pair(t, unix.SOCK_STREAM)
	require.Error(t, a.Send(make([]byte, 16<<20+1)), "a header over the stream framing's limit")
	connRequireNext(t, a, b)
}

func TestConnPeerHangup(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, b := pair(t, typ)
		require.NoError(t, a.Send([]byte("last words")))
		require.NoError(t, a.Close())
		h, _ := connReceive(t, b, 64)
		require.Equal(t, "last words", h, "messages sent before the hang-up are still delivered")
		_, bufs, err := b.Receive(make([]byte, 64))
		require.ErrorIs(t, err, io.EOF)
		require.Nil(t, bufs)
	})
}

// TestConnPeerGoneWithUnreadData: the peer closed with our message unread,
// which the kernel reports as ECONNRESET; Receive calls that a hang-up.
func TestConnPeerGoneWithUnreadData(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, b := pair(t, typ)
		require.NoError(t, b.Send([]byte("never read")))
		require.NoError(t, a.Close())
		_, _, err := b.Receive(make([]byte, 64))
		require.ErrorIs(t, err, io.EOF, "%v", err)
		// Sending to a peer that is gone is an error, never a SIGPIPE.
		require.Error(t, b.Send([]byte("anyone there?")))
	})
}

func TestConnStreamTruncatedFrame(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"3 bytes of the prefix", connFrame(1000, 1)[:3]},
		{"prefix only", connFrame(1000, 1)},
		{"prefix and part of the header", append(connFrame(1000, 1), make([]byte, 100)...)},
		{"all but the last byte", append(connFrame(1000, 1), make([]byte, 999)...)},
	} {
		// unread: the peer dies with a message of ours unread, which the
		// kernel reports as ECONNRESET once its bytes are consumed. A
		// frame cut short is still not a clean end of stream.
		for _, unread := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, unread data %t", tc.name, unread), func(t *testing.T) {
				testutil.NoGC(t)
				c, raw := connRawPair(t, unix.SOCK_STREAM)
				if unread {
					require.NoError(t, c.Send([]byte("never read")))
				}
				m := connMemfd(t, []byte("in flight"), memfd.SealImmutable)
				connRawSend(t, raw, tc.data, m)
				require.NoError(t, raw.Close())
				require.NoError(t, m.Close())
				before := testutil.Snap(t)
				_, bufs, err := c.Receive(make([]byte, 2000))
				require.ErrorIs(t, err, io.ErrUnexpectedEOF, "a frame cut short must not read as a clean hang-up (io.EOF): %v", err)
				require.Nil(t, bufs)
				after := testutil.Count(t)
				require.Equal(t, before.Total, after.Total, "the in-flight memfd must be closed")
				require.Zero(t, after.MemfdCount)
			})
		}
	}
}

// TestConnStreamMalformedFrame plays a peer that breaks the framing: each
// is an error, and every descriptor that came with it is closed.
func TestConnStreamMalformedFrame(t *testing.T) {
	for _, tc := range []struct {
		name  string
		data  []byte
		files int
	}{
		{"bad magic", append([]byte{3, 0, 0, 0, 1, 0, 'X', 'Y'}, "abc"...), 1},
		{"fewer descriptors than announced", append(connFrame(3, 2), "abc"...), 1},
		{"more descriptors than announced", append(connFrame(3, 1), "abc"...), 2},
		{"descriptors announced, none sent", append(connFrame(3, 1), "abc"...), 0},
		{"header over the limit", connFrame(16<<20+1, 1), 1},
		{"count over the kernel's limit", connFrame(0, 254), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testutil.NoGC(t)
			c, raw := connRawPair(t, unix.SOCK_STREAM)
			var files []*os.File
			for range tc.files {
				files = append(files, connMemfd(t, []byte("x"), memfd.SealImmutable))
			}
			connRawSend(t, raw, tc.data, files...)
			require.NoError(t, raw.Close())
			before := testutil.Snap(t)
			_, bufs, err := c.Receive(make([]byte, 64))
			require.Error(t, err)
			require.NotErrorIs(t, err, io.EOF, "a malformed frame is not a clean hang-up: %v", err)
			require.Nil(t, bufs)
			testutil.RequireFlat(t, before)
		})
	}
}

// TestConnStreamDescriptorsSplitAcrossReads plays a stream peer that spreads
// one frame's descriptors over several sendmsg calls, so that each read
// carries fewer than the limit but the message more: the limit is per
// message.
func TestConnStreamDescriptorsSplitAcrossReads(t *testing.T) {
	testutil.NoGC(t)
	c, raw := connRawPair(t, unix.SOCK_STREAM, sealbuf.WithMaxFiles(4))
	var files []*os.File
	for range 6 {
		files = append(files, connMemfd(t, []byte("x"), memfd.SealImmutable))
	}
	frame := append(connFrame(4, 6), "abcd"...)
	connRawSend(t, raw, frame[:4], files[:3]...)
	connRawSend(t, raw, frame[4:], files[3:]...)
	before := testutil.Snap(t)
	_, bufs, err := c.Receive(make([]byte, 64))
	if err == nil {
		n := len(bufs)
		connCloseAll(bufs)
		bufs = nil
		t.Errorf("BUG: a frame carrying %d descriptors was accepted by a Conn limited to 4 (WithMaxFiles): the limit is checked per read, not per message", n)
	}
	require.Nil(t, bufs)
	testutil.RequireFlat(t, before)
}

// TestConnRefusals sends every kind of descriptor Receive must refuse, alone
// and mixed with good ones: each refusal matches the right error, closes
// every descriptor of the message, and leaves the Conn usable.
func TestConnRefusals(t *testing.T) {
	diskFile, err := os.Open("conn_test.go")
	require.NoError(t, err)
	t.Cleanup(func() { _ = diskFile.Close() })
	var sfs unix.Statfs_t
	require.NoError(t, unix.Statfs("conn_test.go", &sfs))
	diskErr := memfd.ErrNotMemfd
	if sfs.Type == unix.TMPFS_MAGIC {
		diskErr = sealbuf.ErrNotSealed // a tmpfs file is a memfd without seals
	}
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	t.Cleanup(func() { _ = pr.Close(); _ = pw.Close() })
	devNull, err := os.Open(os.DevNull)
	require.NoError(t, err)
	t.Cleanup(func() { _ = devNull.Close() })
	dir, err := os.Open(".")
	require.NoError(t, err)
	t.Cleanup(func() { _ = dir.Close() })
	sockA, _ := testutil.Socketpair(t, unix.SOCK_STREAM)
	opath := func() *os.File {
		m := connMemfd(t, []byte("path"), memfd.SealImmutable)
		var pathFd int
		connBorrowAll(t, []*os.File{m}, nil, func(fds []int) {
			var err error
			pathFd, err = unix.Open(fmt.Sprint("/proc/self/fd/", fds[0]), unix.O_PATH|unix.O_CLOEXEC, 0)
			require.NoError(t, err)
		})
		f := os.NewFile(uintptr(pathFd), "o-path")
		t.Cleanup(func() { _ = f.Close() })
		return f
	}()

	testutil.EachSockType(t, func(t *testing.T, typ int) {
		testutil.NoGC(t)
		a, b := pair(t, typ)
		sealedGo := connSealed(t, []byte("sealed by Go"))
		rawSealed := connMemfd(t, []byte("sealed raw"), memfd.SealImmutable)
		files := func(fs ...*os.File) []*os.File { return fs }
		for _, tc := range []struct {
			name  string
			files []*os.File
			want  error
		}{
			{"unsealed memfd", files(connMemfd(t, []byte("open"), 0)), sealbuf.ErrNotSealed},
			{"shrink only", files(connMemfd(t, []byte("shrink"), memfd.SealShrink)), sealbuf.ErrNotSealed},
			{"shrink and grow", files(connMemfd(t, []byte("size"), memfd.SealShrink|memfd.SealGrow)), sealbuf.ErrNotSealed},
			{"future write instead of write", files(connMemfd(t, []byte("fw"), memfd.SealShrink|memfd.SealGrow|memfd.SealFutureWrite)), sealbuf.ErrNotSealed},
			{"pipe", files(pr), memfd.ErrNotMemfd},
			{"regular file", files(diskFile), diskErr},
			{"character device", files(devNull), memfd.ErrNotMemfd},
			{"directory", files(dir), memfd.ErrNotMemfd},
			{"socket", files(sockA), memfd.ErrNotMemfd},
			{"O_PATH", files(opath), memfd.ErrNotMemfd},
			{"good then pipe", files(rawSealed, rawSealed, pr), memfd.ErrNotMemfd},
			{"pipe then good", files(pr, rawSealed), memfd.ErrNotMemfd},
			{"good, unsealed, good", files(rawSealed, connMemfd(t, []byte("open"), 0), rawSealed), sealbuf.ErrNotSealed},
		} {
			before := testutil.Snap(t)
			require.NoError(t, a.SendFiles([]byte(tc.name), tc.files...), tc.name)
			h := make([]byte, 64)
			n, bufs, err := b.Receive(h)
			require.ErrorIs(t, err, tc.want, "%s: %v", tc.name, err)
			require.Contains(t, err.Error(), "descriptor", "the error names the descriptor")
			require.Nil(t, bufs, tc.name)
			require.LessOrEqual(t, n, len(h))
			testutil.RequireFlat(t, before, "%s: every received descriptor must be closed", tc.name)
			// The Conn stays usable.
			require.NoError(t, a.Send([]byte("ok"), sealedGo))
			hdr, got := connReceive(t, b, 64)
			require.Equal(t, "ok", hdr, tc.name)
			require.Len(t, got, 1)
			require.Equal(t, "sealed by Go", string(got[0].Bytes()))
			connCloseAll(got)
			testutil.RequireFlat(t, before, tc.name)
		}
		// A memfd another producer sealed shrink|grow|write (without seal)
		// meets the default policy.
		require.NoError(t, a.SendFiles([]byte("raw"), rawSealed))
		hdr, got := connReceive(t, b, 64)
		require.Equal(t, "raw", hdr)
		require.Len(t, got, 1)
		require.Equal(t, "sealed raw", string(got[0].Bytes()))
		connCloseAll(got)
	})
}

func TestConnReceivePolicyMaxSize(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		testutil.NoGC(t)
		a, b := connPairOpts(t, typ, nil, []sealbuf.ConnOption{sealbuf.WithReceivePolicy(sealbuf.MaxSize(4096))})
		exact := connSealed(t, connPattern("exact", 4096))
		over := connSealed(t, connPattern("over", 4097))
		small := connSealed(t, []byte("small"))
		before := testutil.Snap(t)

		require.NoError(t, a.Send([]byte("exact"), exact))
		_, got := connReceive(t, b, 64)
		require.Len(t, got, 1)
		require.Equal(t, 4096, got[0].Len())
		connCloseAll(got)
		testutil.RequireFlat(t, before)

		for _, bufs := range [][]*sealbuf.Sealed{{over}, {small, exact, over}, {small, over, small}, {over, small}} {
			require.NoError(t, a.Send([]byte("too large"), bufs...))
			_, got, err := b.Receive(make([]byte, 64))
			require.ErrorIs(t, err, sealbuf.ErrTooLarge, "%v", err)
			require.Nil(t, got)
			testutil.RequireFlat(t, before, "buffers opened before the refused one must be closed and unmapped")
			connRequireNext(t, a, b)
			testutil.RequireFlat(t, before)
		}
	})
}

func TestConnReceivePolicyRequire(t *testing.T) {
	testutil.NoGC(t)
	a, b := connPairOpts(t, unix.SOCK_SEQPACKET, nil, []sealbuf.ConnOption{sealbuf.WithReceivePolicy(sealbuf.Require(memfd.SealSeal))})
	noSeal := connMemfd(t, []byte("no seal seal"), memfd.SealImmutable)
	before := testutil.Snap(t)
	require.NoError(t, a.SendFiles([]byte("x"), noSeal))
	_, got, err := b.Receive(make([]byte, 8))
	require.ErrorIs(t, err, sealbuf.ErrNotSealed)
	require.Nil(t, got)
	testutil.RequireFlat(t, before)
	connRequireNext(t, a, b) // FromBytes seals with seal too

	// An empty policy is Open's default, never weaker.
	a, b = connPairOpts(t, unix.SOCK_SEQPACKET, nil, []sealbuf.ConnOption{sealbuf.WithReceivePolicy()})
	require.NoError(t, a.SendFiles([]byte("x"), connMemfd(t, []byte("open"), memfd.SealShrink|memfd.SealGrow)))
	_, got, err = b.Receive(make([]byte, 8))
	require.ErrorIs(t, err, sealbuf.ErrNotSealed)
	require.Nil(t, got)
}

func TestConnSendAndClose(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		testutil.NoGC(t)
		a, b := pair(t, typ)
		s1, err := sealbuf.FromBytes([]byte("first"))
		require.NoError(t, err)
		s2, err := sealbuf.FromBytes([]byte("second"))
		require.NoError(t, err)
		before := testutil.Snap(t)
		require.NoError(t, a.SendAndClose([]byte("handover"), s1, s2, s1))
		after := testutil.Count(t)
		require.Equal(t, before.MemfdCount-2, after.MemfdCount, "SendAndClose must close the local copies")
		_, err = s1.ReadAt(make([]byte, 1), 0)
		require.ErrorIs(t, err, os.ErrClosed)
		require.ErrorIs(t, s2.Close(), os.ErrClosed)

		h, got := connReceive(t, b, 64)
		require.Equal(t, "handover", h)
		require.Len(t, got, 3)
		require.Equal(t, "first", string(got[0].Bytes()))
		require.Equal(t, "second", string(got[1].Bytes()))
		require.Equal(t, "first", string(got[2].Bytes()))
		connCloseAll(got)

		// A failed send still hands the buffers over: they are closed.
		s3, err := sealbuf.FromBytes([]byte("third"))
		require.NoError(t, err)
		require.NoError(t, a.Close())
		require.Error(t, a.SendAndClose([]byte("to nobody"), s3))
		require.ErrorIs(t, s3.Close(), os.ErrClosed)
		require.Equal(t, before.MemfdCount-2, testutil.Count(t).MemfdCount)
	})
}

func TestConnSendFilesReceiveFiles(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		testutil.NoGC(t)
		a, b := pair(t, typ)
		pr, pw, err := os.Pipe()
		require.NoError(t, err)
		defer pr.Close()
		defer pw.Close()
		unsealed := connMemfd(t, []byte("unsealed"), 0)
		s := connSealed(t, []byte("sealed"))
		before := testutil.Snap(t)

		require.NoError(t, a.SendFiles([]byte("files"), pr, unsealed))
		h := make([]byte, 64)
		n, files, err := b.ReceiveFiles(h)
		require.NoError(t, err)
		require.Equal(t, "files", string(h[:n]))
		require.Len(t, files, 2)
		for _, f := range files {
			rc, err := f.SyscallConn()
			require.NoError(t, err)
			connRequireCloexec(t, rc)
		}
		// The pipe works end to end through the received descriptor.
		_, err = pw.Write([]byte("through the pipe"))
		require.NoError(t, err)
		got := make([]byte, 64)
		k, err := files[0].Read(got)
		require.NoError(t, err)
		require.Equal(t, "through the pipe", string(got[:k]))
		// The unsealed memfd arrives unchecked, the same file.
		k, err = files[1].ReadAt(got, 0)
		require.ErrorIs(t, err, io.EOF)
		require.Equal(t, "unsealed", string(got[:k]))
		for _, f := range files {
			require.NoError(t, f.Close())
		}
		testutil.RequireFlat(t, before)

		// ReceiveFiles still applies the message limits.
		require.NoError(t, a.SendFiles(make([]byte, 100), pr))
		_, files, err = b.ReceiveFiles(make([]byte, 10))
		require.ErrorIs(t, err, io.ErrShortBuffer)
		require.Nil(t, files)
		testutil.RequireFlat(t, before)

		// A closed file is refused like a closed Sealed.
		pr2, pw2, err := os.Pipe()
		require.NoError(t, err)
		require.NoError(t, pw2.Close())
		require.NoError(t, pr2.Close())
		require.ErrorIs(t, a.SendFiles([]byte("closed"), pr2), os.ErrClosed)

		// A Sealed received with ReceiveFiles opens with Open.
		require.NoError(t, a.Send([]byte("s"), s))
		_, files, err = b.ReceiveFiles(make([]byte, 8))
		require.NoError(t, err)
		require.Len(t, files, 1)
		opened, err := sealbuf.Open(files[0])
		require.NoError(t, err)
		require.Equal(t, "sealed", string(opened.Bytes()))
		require.NoError(t, opened.Close())
		testutil.RequireFlat(t, before)
		connRequireNext(t, a, b)
	})
}

func TestConnReadDeadline(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		ua, ub := testutil.UnixPair(t, typ)
		require.NoError(t, ub.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
		a, b := sealbuf.NewConn(ua), sealbuf.NewConn(ub)
		start := time.Now()
		_, bufs, err := b.Receive(make([]byte, 8))
		require.ErrorIs(t, err, os.ErrDeadlineExceeded, "%v", err)
		require.Nil(t, bufs)
		require.Less(t, time.Since(start), 5*time.Second)

		// Deadlines set after NewConn apply too, and clearing one makes
		// the Conn usable again.
		require.NoError(t, ub.SetReadDeadline(time.Time{}))
		connRequireNext(t, a, b)
		require.NoError(t, ub.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
		_, _, err = b.Receive(make([]byte, 8))
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		require.NoError(t, ub.SetReadDeadline(time.Time{}))
		connRequireNext(t, a, b)
	})
}

func TestConnWriteDeadline(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		ua, ub := testutil.UnixPair(t, typ)
		a := sealbuf.NewConn(ua)
		defer a.Close()
		defer ub.Close()
		require.NoError(t, ua.SetWriteDeadline(time.Now().Add(100*time.Millisecond)))
		hdr := make([]byte, 60000)
		var err error
		for i := 0; i < 10000 && err == nil; i++ {
			err = a.Send(hdr) // nobody reads: the socket fills up
		}
		require.ErrorIs(t, err, os.ErrDeadlineExceeded, "%v", err)
	})
}

func TestConnCloseUnblocksReceive(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		_, b := pair(t, typ)
		done := make(chan error, 1)
		go func() {
			_, _, err := b.Receive(make([]byte, 8))
			done <- err
		}()
		testutil.WaitBlocked(t, "TestConnCloseUnblocksReceive", "sealbuf.(*Conn).ReceiveContext")
		require.NoError(t, b.Close())
		select {
		case err := <-done:
			require.Error(t, err)
		case <-time.After(5 * time.Second):
			t.Fatal("Receive still blocked after Close")
		}
	})
}

// TestConnLeakCycles runs 10k small send/receive cycles (with a refusal
// every 100) with the garbage collector off: descriptors and mappings stay
// flat. About a second, three under -race.
func TestConnLeakCycles(t *testing.T) {
	cycles := 10000
	if testing.Short() {
		cycles = 2000
	}
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		testutil.NoGC(t)
		a, b := pair(t, typ)
		pr, pw, err := os.Pipe()
		require.NoError(t, err)
		defer pr.Close()
		defer pw.Close()
		h := make([]byte, 16)
		before := testutil.Snap(t)
		for i := range cycles {
			s, err := sealbuf.FromBytes([]byte{byte(i), byte(i >> 8)})
			require.NoError(t, err)
			require.NoError(t, a.Send([]byte("cycle"), s, s))
			require.NoError(t, s.Close())
			n, bufs, err := b.Receive(h)
			require.NoError(t, err)
			require.Equal(t, "cycle", string(h[:n]))
			require.Len(t, bufs, 2)
			require.Equal(t, []byte{byte(i), byte(i >> 8)}, bufs[1].Bytes())
			connCloseAll(bufs)
			if i%100 == 0 { // a refusal now and then
				require.NoError(t, a.SendFiles([]byte("pipe"), pr))
				_, bufs, err = b.Receive(h)
				require.ErrorIs(t, err, memfd.ErrNotMemfd)
				require.Nil(t, bufs)
			}
		}
		testutil.RequireFlat(t, before)
	})
}

// TestConnConcurrentSenders has many goroutines Send on one Conn at once:
// each message arrives whole (its header with its own descriptors), and
// each sender's messages in its order.
func TestConnConcurrentSenders(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, b := pair(t, typ)
		const senders, each = 8, 150
		bufs := make([]*sealbuf.Sealed, senders)
		for i := range bufs {
			bufs[i] = connSealed(t, connPattern(fmt.Sprint("sender-", i), 100+i))
		}
		var wg sync.WaitGroup
		errs := make(chan error, senders)
		for s := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					// Headers big enough that stream writes are split.
					hdr := append(fmt.Appendf(nil, "%d %d ", s, i), make([]byte, (i*s*37)%30000)...)
					if err := a.Send(hdr, bufs[s], bufs[s]); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		next := make([]int, senders)
		h := make([]byte, 40000)
		for range senders * each {
			n, got, err := b.Receive(h)
			require.NoError(t, err)
			var s, i int
			_, err = fmt.Sscanf(string(h[:min(n, 20)]), "%d %d ", &s, &i)
			require.NoError(t, err, "header %q", h[:min(n, 20)])
			require.Equal(t, next[s], i, "sender %d out of order", s)
			next[s]++
			require.Equal(t, len(fmt.Sprintf("%d %d ", s, i))+(i*s*37)%30000, n, "header length of sender %d message %d", s, i)
			require.Len(t, got, 2)
			for _, g := range got {
				require.Equal(t, bufs[s].Bytes(), g.Bytes(), "sender %d message %d carries another sender's buffer", s, i)
			}
			connCloseAll(got)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	})
}

// TestConnConcurrentReceivers has several goroutines Receive on one Conn:
// every message is received exactly once, whole.
func TestConnConcurrentReceivers(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, b := pair(t, typ)
		const receivers, total = 4, 600
		s := connSealed(t, []byte("shared"))
		var mu sync.Mutex
		seen := make(map[int]bool)
		var wg sync.WaitGroup
		errs := make(chan error, receivers)
		for range receivers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := make([]byte, 10000)
				for {
					n, got, err := b.Receive(h)
					if errors.Is(err, io.EOF) {
						return
					}
					if err != nil {
						errs <- err
						return
					}
					var i int
					if _, err := fmt.Sscanf(string(h[:min(n, 12)]), "%d;", &i); err != nil || n != 8+i%5000 || len(got) != i%3 {
						errs <- fmt.Errorf("torn message: %d-byte header %q, %d buffers", n, h[:min(n, 12)], len(got))
					}
					for _, g := range got {
						if string(g.Bytes()) != "shared" {
							errs <- fmt.Errorf("message %d: buffer %q", i, g.Bytes())
						}
					}
					connCloseAll(got)
					mu.Lock()
					if seen[i] {
						errs <- fmt.Errorf("message %d received twice", i)
					}
					seen[i] = true
					mu.Unlock()
				}
			}()
		}
		for i := range total {
			hdr := append(fmt.Appendf(nil, "%07d;", i), make([]byte, i%5000)...)
			bufs := []*sealbuf.Sealed{s, s}[:i%3]
			require.NoError(t, a.Send(hdr, bufs...))
		}
		require.NoError(t, a.Close())
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.Len(t, seen, total)
	})
}

// TestConnSendWhileClosingSealed races Send against Close of the buffer it
// borrows: Send either carries an intact buffer or fails with os.ErrClosed.
func TestConnSendWhileClosingSealed(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, b := pair(t, typ)
		for i := range 200 {
			s, err := sealbuf.FromBytes([]byte("racing"))
			require.NoError(t, err)
			done := make(chan error, 1)
			go func() { done <- a.Send([]byte("race"), s) }()
			if i%2 == 0 {
				time.Sleep(time.Duration(i%5) * time.Microsecond)
			}
			_ = s.Close()
			if err := <-done; err != nil {
				require.ErrorIs(t, err, os.ErrClosed)
				continue
			}
			h, got := connReceive(t, b, 8)
			require.Equal(t, "race", h)
			require.Len(t, got, 1)
			require.Equal(t, "racing", string(got[0].Bytes()))
			connCloseAll(got)
		}
	})
}

// TestConnPeerGoneMessagesFirst: a peer that sends and then closes with
// our own messages unread resets the socket; its messages still arrive, in
// order and with their buffers, before end of file. (The kernel reports
// the reset once, ahead of the queue.)
func TestConnPeerGoneMessagesFirst(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, b := pair(t, typ)
		s := connSealed(t, []byte("last words"))
		require.NoError(t, a.Send([]byte("m1"), s))
		require.NoError(t, a.Send([]byte("m2")))
		require.NoError(t, b.Send([]byte("never read")))
		require.NoError(t, a.Close())
		before := testutil.Snap(t)
		hdr := make([]byte, 8)
		n, bufs, err := b.Receive(hdr)
		require.NoError(t, err, "the first message comes before end of file")
		require.Equal(t, "m1", string(hdr[:n]))
		require.Len(t, bufs, 1)
		require.Equal(t, "last words", string(bufs[0].Bytes()))
		connCloseAll(bufs)
		n, _, err = b.Receive(hdr)
		require.NoError(t, err)
		require.Equal(t, "m2", string(hdr[:n]))
		_, _, err = b.Receive(hdr)
		require.ErrorIs(t, err, io.EOF)
		testutil.RequireFlat(t, before)
		require.NoError(t, s.Close())
	})
}
