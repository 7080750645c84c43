//go:build linux

package pool_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/pool"
)

// TestPoolHostileStreamConsumer (finding 4, the producer's side; the
// consumer's is TestPoolHostileStreamFrames): on a stream-socket pool, a
// consumer that breaks the framing makes Acquire fail with ErrProtocol
// once. From then on an Acquire with every slot in use waits without
// burning CPU — more garbage does not wake it with another error — and
// sees the consumer's hang-up: io.EOF, every slot back.
//
// On 49a691d, drainStream returned at once, reading nothing, once the
// stream was broken (drainBroken was for futex pools only): Acquire looped
// on fill, a CPU at 100% until its ctx ended, and never read the socket
// again, so the hang-up was never seen — the last Acquire below ended with
// its ctx, not io.EOF, and the CPU check failed.
func TestPoolHostileStreamConsumer(t *testing.T) {
	const slots = 2
	a, b := testutil.UnixPair(t, unix.SOCK_STREAM)
	p, err := pool.New(sealbuf.NewConn(a), slots, 64)
	require.NoError(t, err)
	defer p.Close()
	cc := sealbuf.NewConn(b) // the consumer, by hand
	_, files, err := cc.ReceiveFiles(make([]byte, 64))
	require.NoError(t, err)
	for _, f := range files {
		f.Close()
	}
	ctx := context.Background()
	for range slots {
		s, err := p.Acquire(ctx)
		require.NoError(t, err)
		require.NoError(t, s.Send(1, nil))
	}

	_, err = b.Write([]byte("garbage!garbage!garbage!"))
	require.NoError(t, err)
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = p.Acquire(tctx)
	require.ErrorIs(t, err, pool.ErrProtocol)
	t.Log(err)

	// Said once: now Acquire waits for a release that cannot come any
	// more, or the hang-up, and uses no CPU meanwhile.
	const wait = 200 * time.Millisecond
	cpu0, wall0 := testutil.ProcessCPU(), time.Now()
	short, cancelShort := context.WithTimeout(ctx, wait)
	_, err = p.Acquire(short)
	cancelShort()
	cpu, wall := testutil.ProcessCPU()-cpu0, time.Since(wall0)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	t.Logf("Acquire waited %v of wall time on %v of CPU time", wall, cpu)
	require.Less(t, cpu, wall/4, "Acquire spins on a broken stream")

	got := make(chan error, 1)
	go func() {
		_, err := p.Acquire(tctx)
		got <- err
	}()
	require.Eventually(t, func() bool { return pool.Blocked(p) }, 10*time.Second, time.Millisecond)
	_, err = b.Write([]byte("more garbage"))
	require.NoError(t, err)
	require.NoError(t, cc.Close())
	select {
	case err := <-got:
		require.ErrorIs(t, err, io.EOF, "the consumer's hang-up")
	case <-time.After(10 * time.Second):
		t.Fatal("Acquire did not see the consumer hang up")
	}
	require.Equal(t, slots, p.Free(), "every slot is back")
	_, err = p.TryAcquire()
	require.ErrorIs(t, err, io.EOF)
}
