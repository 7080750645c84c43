//go:build linux

package sealtest_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/memfd"
	"github.com/sealbuf/sealbuf/sealtest"
)

// Regression (found here, fixed in e9a342f): on a "unix" stream, when the
// descriptors that arrived with a frame's prefix broke the limit (MSG_CTRUNC,
// or more than WithMaxFiles), readFrame returned at once and left the frame's
// header bytes in the socket; the next Receive parsed them as a frame prefix
// and the Conn was out of step for good, against the contract "on any
// failure ... the Conn stays usable for the next message".
func TestStreamInStepAfterTooManyDescriptors(t *testing.T) {
	sealtest.CheckLeaks(t)
	p, c := sealtest.Start(t, "unix")
	conn := sealbuf.NewConn(c, sealbuf.WithMaxFiles(1))
	defer conn.Close()
	require.NoError(t, p.Send([]byte("x"), sealtest.Sealed(1), sealtest.Sealed(1)))
	_, bufs, err := conn.Receive(make([]byte, 16))
	require.Error(t, err, "two descriptors, limit 1")
	require.Nil(t, bufs)

	require.NoError(t, p.Send([]byte("next"), sealtest.Sealed(5)))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	h := make([]byte, 16)
	n, bufs, err := conn.Receive(h)
	for _, b := range bufs {
		b.Close()
	}
	require.NoError(t, err, "the message after a refused one must arrive whole")
	require.Equal(t, "next", string(h[:n]))
}

// Regression (found here, fixed in e9a342f): the descriptor limit was
// checked per recvmsg, not per frame. On a stream the kernel hands over the
// descriptors of each sendmsg with its own bytes, so a peer that sent a
// frame's header one byte at a time, each byte with a descriptor, made one
// Receive hold any number of them (up to RLIMIT_NOFILE) while it waited for
// the rest of the frame, although the frame announced 1 and the limit was 1.
func TestStreamDescriptorsHeldPerFrame(t *testing.T) {
	sealtest.CheckLeaks(t)
	a, c, err := sealtest.SocketPair("unix")
	require.NoError(t, err)
	p, err := sealtest.NewPeer(a)
	require.NoError(t, err)
	defer func() { require.NoError(t, p.Close()) }()
	conn := sealbuf.NewConn(c, sealbuf.WithMaxFiles(1))
	defer conn.Close()

	const chunks = 40
	require.NoError(t, p.SendRaw(frame(chunks+1, 1), sealtest.Sealed(1)))
	for range chunks {
		require.NoError(t, p.SendRaw([]byte("x"), sealtest.Sealed(1)))
	}
	base := sealtest.CountFDs()
	done := make(chan error, 1)
	go func() {
		_, _, err := conn.Receive(make([]byte, 64))
		done <- err
	}()
	// Receive has read all it can and waits for the frame's last byte.
	peak := base
	for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline) && peak-base <= 2; time.Sleep(time.Millisecond) {
		peak = max(peak, sealtest.CountFDs())
	}
	require.NoError(t, p.SendRaw([]byte("x")))
	require.Error(t, <-done)
	require.LessOrEqual(t, peak-base, 2, "one Receive held %d descriptors of a frame that announced 1, limit 1", peak-base)
}

// Regression (found by FuzzMemfdOps, input
// testdata/fuzz/FuzzMemfdOps/255724cae77993d2; fixed in e9a342f): a writable
// Mapping whose tail was poisoned by a truncation could not be healed once
// its producer, having grown the memfd back, sealed it with
// F_SEAL_FUTURE_WRITE: heal remapped the file PROT_READ|PROT_WRITE,
// MAP_SHARED, which the kernel refuses with EPERM, so every access touching
// the tail failed ("remap after the file grew back: ... operation not
// permitted") although it lay wholly below the file's end.
func TestHealAfterFutureWriteSeal(t *testing.T) {
	sealtest.CheckLeaks(t)
	p, c := sealtest.Start(t, "unixpacket")
	conn := sealbuf.NewConn(c)
	const size = 3 * 4096
	s, err := p.SendShared([]byte("x"), sealtest.Unsealed(size))
	require.NoError(t, err)
	defer s.Close()
	_, files, err := conn.ReceiveFiles(make([]byte, 4))
	require.NoError(t, err)
	m, err := sealbuf.Map(files[0]) // O_RDWR, no seals: a writable Mapping
	require.NoError(t, err)
	defer m.Close()

	require.NoError(t, s.Truncate(100))
	_, err = m.ReadAt(make([]byte, 10), 2*4096)
	require.ErrorIs(t, err, sealbuf.ErrTruncated) // faults: the tail is poisoned
	require.NoError(t, s.Truncate(size))
	_, err = s.WriteAt(sealtest.Pattern(0, size), 0)
	require.NoError(t, err)
	require.NoError(t, s.AddSeals(memfd.SealFutureWrite))

	got := make([]byte, 10)
	_, err = m.ReadAt(got, 2*4096)
	require.NoError(t, err, "a read wholly below the file's end must succeed")
	require.Equal(t, sealtest.Pattern(2*4096, 10), got)
}
