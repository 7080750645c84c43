//go:build linux

package sealtest_test

import (
	"errors"
	"io"
	"math/rand/v2"
	"runtime/debug"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/sealtest"
)

const mib = 1 << 20

// receiveMapped has the peer send d (keeping a copy) and maps what arrives.
func receiveMapped(t *testing.T, p *sealtest.Peer, conn *sealbuf.Conn, d sealtest.Desc) (*sealtest.Shared, *sealbuf.Mapping) {
	t.Helper()
	s, err := p.SendShared([]byte("shared"), d)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	_, files, err := conn.ReceiveFiles(make([]byte, 16))
	require.NoError(t, err)
	require.Len(t, files, 1)
	m, err := sealbuf.Map(files[0])
	if err != nil {
		files[0].Close()
	}
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return s, m
}

func requireRead(t *testing.T, m *sealbuf.Mapping, off int64, n int) {
	t.Helper()
	got := make([]byte, n)
	k, err := m.ReadAt(got, off)
	require.NoError(t, err)
	require.Equal(t, n, k)
	requirePattern(t, got, off)
}

func requireTruncated(t *testing.T, err error, what string) {
	t.Helper()
	require.ErrorIs(t, err, sealbuf.ErrTruncated, what)
	require.False(t, errors.Is(err, io.EOF), "a truncation is not an end of file: %v", err)
	t.Logf("%s: %v", what, err)
}

func TestTruncateUnderMap(t *testing.T) {
	for _, k := range peerKinds {
		t.Run(k.name, func(t *testing.T) {
			sealtest.CheckLeaks(t)
			a, b, err := sealtest.SocketPair("unixpacket")
			require.NoError(t, err)
			conn := sealbuf.NewConn(b)
			t.Cleanup(func() { conn.Close() })
			p, err := k.start(a)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, p.Close()) })

			s, m := receiveMapped(t, p, conn, sealtest.Unsealed(mib))
			require.Equal(t, mib, m.Len())
			requireRead(t, m, 0, mib)

			// Cut to one page: accesses past it fail, accesses below work.
			require.NoError(t, s.Truncate(4096))
			_, err = m.ReadAt(make([]byte, 100), 8192)
			requireTruncated(t, err, "ReadAt past the new end")
			_, err = m.ReadAt(make([]byte, 4096), 2048)
			requireTruncated(t, err, "ReadAt across the new end")
			_, err = m.WriteAt([]byte("x"), 5000)
			requireTruncated(t, err, "WriteAt past the new end")
			err = m.Access(func(b []byte) error { _ = b[len(b)-1]; return nil })
			requireTruncated(t, err, "Access")
			requireRead(t, m, 0, 4096)

			// Cut at the chosen moment: inside an access.
			require.NoError(t, s.Truncate(mib))
			_, err = s.WriteAt(sealtest.Pattern(0, mib), 0)
			require.NoError(t, err)
			requireRead(t, m, 0, mib)
			err = m.Access(func(b []byte) error {
				if err := s.Truncate(100); err != nil {
					return err
				}
				var sum byte
				for i := 0; i < len(b); i += 4096 {
					sum += b[i]
				}
				sinkByte = sum
				return nil
			})
			requireTruncated(t, err, "Access while the peer truncates")
			got := make([]byte, 100)
			_, err = m.ReadAt(got, 0)
			require.NoError(t, err)
			requirePattern(t, got, 0)

			// Grown back (zeros), and past the mapping: Len stays.
			require.NoError(t, s.Truncate(2*mib))
			require.Equal(t, mib, m.Len())
			_, err = m.ReadAt(got, mib-100)
			require.NoError(t, err)
			require.Equal(t, make([]byte, 100), got, "grown bytes read as zero")
			size, err := s.Size()
			require.NoError(t, err)
			require.Equal(t, int64(2*mib), size)
			require.False(t, debugPanicOnFault(), "no guard left on")
		})
	}
}

var sinkByte byte

// debugPanicOnFault reports whether this goroutine has SetPanicOnFault on.
func debugPanicOnFault() bool {
	old := debug.SetPanicOnFault(false)
	debug.SetPanicOnFault(old)
	return old
}

func TestFlapUnderMap(t *testing.T) {
	sealtest.CheckLeaks(t)
	p, c := sealtest.Start(t, "unix")
	conn := sealbuf.NewConn(c)
	const size = 256 << 10
	s, m := receiveMapped(t, p, conn, sealtest.Unsealed(size))
	require.NoError(t, s.Flap(4096, size))
	var ok, truncated int
	buf := make([]byte, 64<<10)
	r := rand.New(rand.NewPCG(1, 2))
	for until := time.Now().Add(300 * time.Millisecond); time.Now().Before(until) || ok == 0 || truncated == 0; {
		off := r.Int64N(size)
		n := 1 + r.IntN(min(len(buf), int(size-off)))
		k, err := m.ReadAt(buf[:n], off)
		switch {
		case err == nil:
			require.Equal(t, n, k)
			requirePattern(t, buf[:n], off) // a read that succeeds returns the bytes
			ok++
		case errors.Is(err, sealbuf.ErrTruncated):
			truncated++
		default:
			t.Fatalf("ReadAt(%d, %d) while flapping: %v", n, off, err)
		}
	}
	cycles, err := s.StopFlap()
	require.NoError(t, err)
	require.Positive(t, cycles)
	requireRead(t, m, 0, size)
	t.Logf("flapping: %d cycles; %d reads succeeded with the right bytes, %d ErrTruncated", cycles, ok, truncated)
}

func TestTruncateSealed(t *testing.T) {
	sealtest.CheckLeaks(t)
	p, c := sealtest.Start(t, "unixpacket")
	conn := sealbuf.NewConn(c)

	// Sealed: the peer's truncation and writes fail, the buffer is intact.
	s, err := p.SendShared([]byte("sealed"), sealtest.Sealed(8192))
	require.NoError(t, err)
	defer s.Close()
	_, bufs, err := conn.Receive(make([]byte, 16))
	require.NoError(t, err)
	require.Len(t, bufs, 1)
	defer bufs[0].Close()
	err = s.Truncate(0)
	require.ErrorIs(t, err, unix.EPERM)
	t.Log(err)
	_, err = s.WriteAt([]byte("x"), 0)
	require.ErrorIs(t, err, unix.EPERM)
	requirePattern(t, bufs[0].Bytes(), 0)

	// Sealed against resizing only: Map needs no guard, the bytes change.
	s2, m := receiveMapped(t, p, conn, sealtest.PartlySealed(8192))
	require.ErrorIs(t, s2.Truncate(100), unix.EPERM)
	_, err = s2.WriteAt([]byte("changed"), 10)
	require.NoError(t, err)
	got := make([]byte, 7)
	_, err = m.ReadAt(got, 10)
	require.NoError(t, err)
	require.Equal(t, "changed", string(got))
}

// TestShare gives the peer a memfd made here, which it truncates under Map.
func TestShare(t *testing.T) {
	sealtest.CheckLeaks(t)
	p, err := sealtest.StartPeer(nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, p.Close()) }()
	f := sealtest.Unsealed(64 << 10).File(t)
	s, err := p.Share(f)
	require.NoError(t, err)
	defer s.Close()
	m, err := sealbuf.Map(f) // f is the Mapping's now (File's cleanup closes it again, harmlessly)
	require.NoError(t, err)
	defer m.Close()
	require.NoError(t, s.Truncate(0))
	_, err = m.ReadAt(make([]byte, 1), 0)
	requireTruncated(t, err, "ReadAt of a memfd cut to 0 by another process")
	require.Error(t, p.HangUp(), "a peer started without a connection has none to hang up")
}
