//go:build linux

package sealtest_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/memfd"
	"github.com/sealbuf/sealbuf/sealtest"
)

// maxSize is the size policy of the tests' receivers.
const maxSize = 1 << 20

// A hostileCase is a descriptor a peer hands over and what each of Open,
// Map and Receive must make of it: nil for success, or the error to match.
type hostileCase struct {
	name    string
	desc    sealtest.Desc
	open    error // sealbuf.Open with MaxSize(maxSize)
	mapping error // sealbuf.Map with MapMaxSize(maxSize)
	receive error // Conn.Receive with WithReceivePolicy(MaxSize(maxSize))
}

var hostileCases = []hostileCase{
	{"sealed", sealtest.Sealed(4096), nil, nil, nil},
	{"zero-length", sealtest.Sealed(0), nil, nil, nil},
	{"sealed-without-seal", sealtest.Memfd(4096, memfd.SealImmutable), nil, nil, nil},
	{"exactly-max-size", sealtest.Sealed(maxSize), nil, nil, nil},
	{"unsealed", sealtest.Unsealed(4096), sealbuf.ErrNotSealed, nil, sealbuf.ErrNotSealed},
	{"unsealed-zero-length", sealtest.Unsealed(0), sealbuf.ErrNotSealed, nil, sealbuf.ErrNotSealed},
	{"partly-sealed", sealtest.PartlySealed(4096), sealbuf.ErrNotSealed, nil, sealbuf.ErrNotSealed},
	{"write-sealed-only", sealtest.Memfd(4096, memfd.SealWrite), sealbuf.ErrNotSealed, nil, sealbuf.ErrNotSealed},
	{"larger-than-policy", sealtest.Large(maxSize + 1), sealbuf.ErrTooLarge, sealbuf.ErrTooLarge, sealbuf.ErrTooLarge},
	{"huge-sparse", sealtest.Large(1 << 40), sealbuf.ErrTooLarge, sealbuf.ErrTooLarge, sealbuf.ErrTooLarge},
	{"pipe", sealtest.Pipe(), memfd.ErrNotMemfd, memfd.ErrNotMemfd, memfd.ErrNotMemfd},
	{"socket", sealtest.Socket(), memfd.ErrNotMemfd, memfd.ErrNotMemfd, memfd.ErrNotMemfd},
	{"regular-file", sealtest.RegularFile(), memfd.ErrNotMemfd, memfd.ErrNotMemfd, memfd.ErrNotMemfd},
	{"tmpfs-file", sealtest.TmpfsFile(), sealbuf.ErrNotSealed, nil, sealbuf.ErrNotSealed},
	{"dev-zero", sealtest.DevZero(), memfd.ErrNotMemfd, memfd.ErrNotMemfd, memfd.ErrNotMemfd},
	{"o-path", sealtest.OPath(), memfd.ErrNotMemfd, memfd.ErrNotMemfd, memfd.ErrNotMemfd},
	{"directory", sealtest.Directory(), memfd.ErrNotMemfd, memfd.ErrNotMemfd, memfd.ErrNotMemfd},
}

// requireOutcome checks err against want (nil: success).
func requireOutcome(t *testing.T, want, err error, what string) {
	t.Helper()
	if want == nil {
		require.NoError(t, err, what)
		return
	}
	require.Error(t, err, what)
	require.ErrorIs(t, err, want, what)
	t.Logf("%s: %v", what, err)
}

// requireUsable checks that f is still open: a refused file stays the
// caller's.
func requireUsable(t *testing.T, f *os.File) {
	t.Helper()
	_, err := f.Stat()
	require.NoError(t, err, "a refused file must stay open")
}

func TestHostileOpen(t *testing.T) {
	for _, c := range hostileCases {
		t.Run(c.name, func(t *testing.T) {
			sealtest.CheckLeaks(t)
			f := c.desc.File(t)
			s, err := sealbuf.Open(f, sealbuf.MaxSize(maxSize))
			requireOutcome(t, c.open, err, "Open of a "+c.desc.String())
			if err != nil {
				requireUsable(t, f)
				return
			}
			requirePattern(t, s.Bytes(), 0)
			require.NoError(t, s.Close())
		})
	}
}

func TestHostileMap(t *testing.T) {
	for _, c := range hostileCases {
		t.Run(c.name, func(t *testing.T) {
			sealtest.CheckLeaks(t)
			f := c.desc.File(t)
			m, err := sealbuf.Map(f, sealbuf.MapMaxSize(maxSize))
			requireOutcome(t, c.mapping, err, "Map of a "+c.desc.String())
			if err != nil {
				requireUsable(t, f)
				return
			}
			got := make([]byte, m.Len())
			n, err := m.ReadAt(got, 0)
			if m.Len() == 0 {
				require.ErrorIs(t, err, io.EOF)
			} else {
				require.NoError(t, err)
			}
			requirePattern(t, got[:n], 0)
			require.NoError(t, m.Close())
		})
	}
}

// requirePattern checks that b holds sealtest.Pattern's bytes at off.
func requirePattern(t testing.TB, b []byte, off int64) {
	t.Helper()
	if !slices.Equal(b, sealtest.Pattern(off, len(b))) {
		t.Fatalf("%d bytes at %d are not the pattern", len(b), off)
	}
}

// receiveWithin runs Receive with a deadline, so that a Conn out of step
// fails the test instead of hanging it.
func receiveWithin(conn *sealbuf.Conn, h []byte, d time.Duration) (int, []*sealbuf.Sealed, error) {
	type result struct {
		n    int
		bufs []*sealbuf.Sealed
		err  error
	}
	done := make(chan result, 1)
	go func() {
		n, bufs, err := conn.Receive(h)
		done <- result{n, bufs, err}
	}()
	select {
	case r := <-done:
		return r.n, r.bufs, r.err
	case <-time.After(d):
		conn.Close() // ends the Receive
		r := <-done
		for _, b := range r.bufs {
			b.Close()
		}
		return 0, nil, errors.New("Receive did not return within the deadline (the Conn is out of step?)")
	}
}

// peerKinds are the two ways to run a peer.
var peerKinds = []struct {
	name  string
	start func(*net.UnixConn) (*sealtest.Peer, error)
}{
	{"process", sealtest.StartPeer},
	{"goroutine", sealtest.NewPeer},
}

var networks = []string{"unixpacket", "unix"}

// forEachPeer runs fn for each peer kind and network with a peer and the
// receiving Conn (closed at the end), under a leak check.
func forEachPeer(t *testing.T, fn func(t *testing.T, network string, p *sealtest.Peer, conn *sealbuf.Conn), opts ...sealbuf.ConnOption) {
	for _, k := range peerKinds {
		for _, network := range networks {
			t.Run(k.name+"/"+network, func(t *testing.T) {
				sealtest.CheckLeaks(t)
				a, b, err := sealtest.SocketPair(network)
				require.NoError(t, err)
				conn := sealbuf.NewConn(b, opts...)
				t.Cleanup(func() { conn.Close() })
				p, err := k.start(a)
				require.NoError(t, err)
				t.Cleanup(func() { require.NoError(t, p.Close()) })
				fn(t, network, p, conn)
			})
		}
	}
}

// requireNext checks that the Conn is still in step: the next message
// arrives whole.
func requireNext(t *testing.T, p *sealtest.Peer, conn *sealbuf.Conn) {
	t.Helper()
	require.NoError(t, p.Send([]byte("next"), sealtest.Sealed(5)))
	h := make([]byte, 16)
	n, bufs, err := receiveWithin(conn, h, 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, "next", string(h[:n]))
	require.Len(t, bufs, 1)
	requirePattern(t, bufs[0].Bytes(), 0)
	require.NoError(t, bufs[0].Close())
}

func TestHostileReceive(t *testing.T) {
	forEachPeer(t, func(t *testing.T, network string, p *sealtest.Peer, conn *sealbuf.Conn) {
		for _, c := range hostileCases {
			t.Run(c.name, func(t *testing.T) {
				sealtest.CheckLeaks(t)
				require.NoError(t, p.Send([]byte("hdr"), sealtest.Sealed(7), c.desc))
				h := make([]byte, 16)
				n, bufs, err := conn.Receive(h)
				requireOutcome(t, c.receive, err, "Receive of a "+c.desc.String())
				require.Equal(t, "hdr", string(h[:n]))
				if err != nil {
					require.Nil(t, bufs)
				} else {
					require.Len(t, bufs, 2)
					for _, b := range bufs {
						requirePattern(t, b.Bytes(), 0)
						require.NoError(t, b.Close())
					}
				}
				requireNext(t, p, conn)
			})
		}
	}, sealbuf.WithReceivePolicy(sealbuf.MaxSize(maxSize)))
}

func TestZeroDescriptors(t *testing.T) {
	forEachPeer(t, func(t *testing.T, network string, p *sealtest.Peer, conn *sealbuf.Conn) {
		require.NoError(t, p.Send([]byte("header only")))
		h := make([]byte, 32)
		n, bufs, err := conn.Receive(h)
		require.NoError(t, err)
		require.Equal(t, "header only", string(h[:n]))
		require.Empty(t, bufs)

		// An empty message: on unixpacket an empty packet, which reads as
		// end of file (the documented reason Send refuses to send one);
		// on a stream an empty frame.
		require.NoError(t, p.Send(nil))
		n, bufs, err = conn.Receive(h)
		if network == "unixpacket" {
			require.ErrorIs(t, err, io.EOF)
			t.Logf("empty packet: %v", err)
		} else {
			require.NoError(t, err)
		}
		require.Zero(t, n)
		require.Empty(t, bufs)
		requireNext(t, p, conn)
	})
}

func TestMaxDescriptors(t *testing.T) {
	descs := slices.Repeat([]sealtest.Desc{sealtest.Sealed(1)}, 253)
	forEachPeer(t, func(t *testing.T, network string, p *sealtest.Peer, conn *sealbuf.Conn) {
		require.NoError(t, p.Send([]byte("253"), descs...))
		h := make([]byte, 8)
		n, bufs, err := conn.Receive(h)
		require.NoError(t, err)
		require.Equal(t, "253", string(h[:n]))
		require.Len(t, bufs, 253)
		for _, b := range bufs {
			requirePattern(t, b.Bytes(), 0)
			require.NoError(t, b.Close())
		}
		requireNext(t, p, conn)
	})
}

func TestMoreDescriptorsThanTheLimit(t *testing.T) {
	descs := slices.Repeat([]sealtest.Desc{sealtest.Sealed(1)}, 253)
	forEachPeer(t, func(t *testing.T, network string, p *sealtest.Peer, conn *sealbuf.Conn) {
		for _, n := range []int{17, 253} {
			require.NoError(t, p.Send([]byte("too many"), descs[:n]...))
			_, bufs, err := conn.Receive(make([]byte, 16))
			require.Error(t, err, "%d descriptors, limit 16", n)
			require.Nil(t, bufs)
			t.Logf("%d descriptors, limit 16: %v", n, err)
			requireNext(t, p, conn) // the Conn stays in step (see TestStreamInStepAfterTooManyDescriptors)
		}
	}, sealbuf.WithMaxFiles(16))
}

func TestHeaderLargerThanBuffer(t *testing.T) {
	forEachPeer(t, func(t *testing.T, network string, p *sealtest.Peer, conn *sealbuf.Conn) {
		for _, size := range []int{17, 4096, 100 << 10} {
			require.NoError(t, p.Send(sealtest.Pattern(0, size), sealtest.Sealed(4096), sealtest.Unsealed(1)))
			h := make([]byte, 16)
			n, bufs, err := conn.Receive(h)
			require.ErrorIs(t, err, io.ErrShortBuffer)
			require.Nil(t, bufs)
			require.Equal(t, len(h), n)
			requirePattern(t, h, 0)
			t.Logf("%d-byte header into 16 bytes: %v", size, err)
			requireNext(t, p, conn)
		}
	})
}

func TestHangUp(t *testing.T) {
	forEachPeer(t, func(t *testing.T, network string, p *sealtest.Peer, conn *sealbuf.Conn) {
		require.NoError(t, p.Send([]byte("last"), sealtest.Sealed(3)))
		require.NoError(t, p.HangUp())
		h := make([]byte, 8)
		n, bufs, err := conn.Receive(h)
		require.NoError(t, err, "a message sent before the hang-up still arrives")
		require.Equal(t, "last", string(h[:n]))
		require.Len(t, bufs, 1)
		require.NoError(t, bufs[0].Close())
		for range 2 {
			_, bufs, err = conn.Receive(h)
			require.ErrorIs(t, err, io.EOF)
			require.Nil(t, bufs)
		}
	})
}

func TestHangUpMidMessage(t *testing.T) {
	header := []byte("a header of 25 bytes long")
	for _, k := range peerKinds {
		for _, cut := range []int{1, 5, 8, 9, 8 + len(header) - 1} {
			t.Run(fmt.Sprintf("%s/cut-%d", k.name, cut), func(t *testing.T) {
				sealtest.CheckLeaks(t)
				a, b, err := sealtest.SocketPair("unix")
				require.NoError(t, err)
				conn := sealbuf.NewConn(b)
				defer conn.Close()
				p, err := k.start(a)
				require.NoError(t, err)
				defer func() { require.NoError(t, p.Close()) }()

				require.NoError(t, p.HangUpMidMessage(header, cut, sealtest.Sealed(4096), sealtest.Pipe()))
				_, bufs, err := conn.Receive(make([]byte, 64))
				require.ErrorIs(t, err, io.ErrUnexpectedEOF, "cut at %d", cut)
				require.Nil(t, bufs)
				t.Logf("cut at %d: %v", cut, err)
				_, _, err = conn.Receive(make([]byte, 64))
				require.ErrorIs(t, err, io.EOF)
			})
		}
	}
	t.Run("unixpacket", func(t *testing.T) {
		p, _ := sealtest.Start(t, "unixpacket")
		err := p.HangUpMidMessage(header, 3)
		require.Error(t, err, "a packet has no middle")
		t.Log(err)
	})
	t.Run("cut-outside", func(t *testing.T) {
		p, _ := sealtest.Start(t, "unix")
		for _, cut := range []int{-1, 0, 8 + len(header)} {
			require.Error(t, p.HangUpMidMessage(header, cut), "cut %d", cut)
		}
	})
}

// TestPeerDiesMidMessage kills the peer process after it sent a frame prefix,
// descriptors and part of the header.
func TestPeerDiesMidMessage(t *testing.T) {
	sealtest.CheckLeaks(t)
	p, c := sealtest.Start(t, "unix")
	conn := sealbuf.NewConn(c)
	forged := append(frame(100, 2), "only 10 of"...)
	require.NoError(t, p.SendRaw(forged, sealtest.Sealed(4096), sealtest.Unsealed(4096)))
	require.NoError(t, p.Kill())
	_, bufs, err := conn.Receive(make([]byte, 128))
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	require.Nil(t, bufs)
	t.Log(err)
	_, _, err = conn.Receive(make([]byte, 128))
	require.ErrorIs(t, err, io.EOF)
}

// frame encodes a stream frame prefix as sealbuf.Conn documents it.
func frame(headerLen uint32, files uint16) []byte {
	return []byte{byte(headerLen), byte(headerLen >> 8), byte(headerLen >> 16), byte(headerLen >> 24), byte(files), byte(files >> 8), 'S', 'B'}
}

func TestForgedFrames(t *testing.T) {
	cases := []struct {
		name  string
		raw   []byte
		descs []sealtest.Desc
	}{
		{"garbage", []byte("GARBAGE!"), nil},
		{"garbage-with-descriptors", []byte("GARBAGE!"), []sealtest.Desc{sealtest.Sealed(10), sealtest.Pipe()}},
		{"more-announced", append(frame(5, 2), "hello"...), []sealtest.Desc{sealtest.Sealed(10)}},
		{"fewer-announced", append(frame(5, 0), "hello"...), []sealtest.Desc{sealtest.Sealed(10)}},
		{"header-over-limit", frame(1<<30, 0), nil},
		{"files-over-limit", frame(0, 254), []sealtest.Desc{sealtest.Sealed(10)}},
	}
	for _, k := range peerKinds {
		for _, c := range cases {
			t.Run(k.name+"/"+c.name, func(t *testing.T) {
				sealtest.CheckLeaks(t)
				a, b, err := sealtest.SocketPair("unix")
				require.NoError(t, err)
				conn := sealbuf.NewConn(b)
				defer conn.Close()
				p, err := k.start(a)
				require.NoError(t, err)
				defer func() { require.NoError(t, p.Close()) }()

				require.NoError(t, p.SendRaw(c.raw, c.descs...))
				require.NoError(t, p.HangUp())
				_, bufs, err := conn.Receive(make([]byte, 64))
				require.Error(t, err)
				require.ErrorIs(t, err, errMalformed(err))
				require.Nil(t, bufs)
				t.Log(err)
				for i := 0; !errors.Is(err, io.EOF); i++ {
					require.Less(t, i, 10, "Receive must reach the end of the stream")
					_, bufs, err = conn.Receive(make([]byte, 64))
					require.Nil(t, bufs)
				}
			})
		}
	}
}

// errMalformed returns the internal scm.ErrMalformed that err wraps: users
// cannot name it (see the report), but the test can check there is one.
func errMalformed(err error) error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if e.Error() == "malformed control message" {
			return e
		}
	}
	return errors.New("malformed control message (not wrapped)")
}

func TestPeerErrors(t *testing.T) {
	sealtest.CheckLeaks(t)
	p, _ := sealtest.Start(t, "unixpacket")
	err := p.Send([]byte("x"), slices.Repeat([]sealtest.Desc{sealtest.Sealed(1)}, 254)...)
	require.Error(t, err)
	require.NoError(t, p.HangUp())
	err = p.Send([]byte("x"))
	require.Error(t, err)
	var pe *sealtest.PeerError
	require.ErrorAs(t, err, &pe)
	t.Log(err)
	require.NoError(t, p.Close())
	require.Error(t, p.Send([]byte("x")), "a closed peer")
	require.NoError(t, p.Close(), "a second Close")
	require.False(t, debug.SetPanicOnFault(false), "no fault guard left on")
}

func TestPattern(t *testing.T) {
	for _, off := range []int64{0, 1, 250, 251, 252, 1 << 20, 1<<40 + 7} {
		for _, n := range []int{0, 1, 250, 251, 70000} {
			p := sealtest.Pattern(off, n)
			for i, b := range p {
				if b != byte(1+(off+int64(i))%251) {
					t.Fatalf("Pattern(%d, %d)[%d] = %d", off, n, i, b)
				}
			}
			require.True(t, sealtest.IsPattern(p, off))
			if n > 0 {
				require.False(t, sealtest.IsPattern(p, off+1))
				p[n-1] = 0
				require.False(t, sealtest.IsPattern(p, off))
			}
		}
	}
}
