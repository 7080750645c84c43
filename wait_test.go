//go:build linux

package sealbuf_test

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
)

// The waits below are the option's longest, so that a wait that ignored
// Close, a deadline or a context would hold the test for that long each
// time; the tests check outcomes, never durations.
const testWait = sealbuf.MaxWait

func waitPair(t *testing.T, typ int) (*sealbuf.Conn, *sealbuf.Conn) {
	t.Helper()
	a, b := testutil.UnixPair(t, typ)
	ca := sealbuf.NewConn(a, sealbuf.WithWait(sealbuf.Wait{Kernel: testWait}))
	cb := sealbuf.NewConn(b, sealbuf.WithWait(sealbuf.Wait{Kernel: testWait}))
	t.Cleanup(func() { ca.Close(); cb.Close() })
	return ca, cb
}

// TestBlockingWaitPingPong: with the option on both sides, messages with
// and without buffers cross in both directions, on both socket types, the
// receiver sometimes waiting (peer answers later) and sometimes not.
func TestBlockingWaitPingPong(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, b := waitPair(t, typ)
		before := testutil.Snap(t)
		done := make(chan error, 1)
		go func() {
			hdr := make([]byte, 64)
			for i := range 200 {
				n, bufs, err := b.Receive(hdr)
				if err != nil {
					done <- err
					return
				}
				for _, s := range bufs {
					if s.Len() != i+1 || s.Bytes()[i] != byte(i) {
						done <- errors.New("wrong buffer contents")
						return
					}
					s.Close()
				}
				if i%7 == 0 && !receiveWaits("TestBlockingWaitPingPong") {
					done <- errors.New("the peer's Receive never waited")
					return
				}
				if err := b.Send(hdr[:n]); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		hdr := make([]byte, 64)
		for i := range 200 {
			data := make([]byte, i+1)
			data[i] = byte(i)
			s, err := sealbuf.FromBytes(data)
			require.NoError(t, err)
			require.NoError(t, a.SendAndClose([]byte{byte(i), 'x'}, s))
			n, bufs, err := a.Receive(hdr)
			require.NoError(t, err)
			require.Empty(t, bufs)
			require.Equal(t, []byte{byte(i), 'x'}, hdr[:n])
		}
		require.NoError(t, <-done)
		testutil.RequireFlat(t, before)
	})
}

// TestBlockingWaitHangUp: a peer that hangs up while the receiver waits in
// the kernel reads as io.EOF.
func TestBlockingWaitHangUp(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, b := waitPair(t, typ)
		time.AfterFunc(2*time.Millisecond, func() { b.Close() })
		_, _, err := a.Receive(make([]byte, 8))
		require.ErrorIs(t, err, io.EOF)
	})
}

// TestBlockingWaitClose: Close from another goroutine ends a Receive that
// waits (in the kernel, then in the netpoller) with os.ErrClosed.
func TestBlockingWaitClose(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		a, _ := waitPair(t, typ)
		requireCloseEndsReceive(t, a)
	})
}

// requireCloseEndsReceive closes a while a Receive on it waits, and
// requires that Receive to end with os.ErrClosed.
func requireCloseEndsReceive(t *testing.T, a *sealbuf.Conn) {
	t.Helper()
	got := make(chan error, 1)
	go func() {
		_, _, err := a.Receive(make([]byte, 8))
		got <- err
	}()
	testutil.WaitBlocked(t, "requireCloseEndsReceive", "sealbuf.(*Conn).ReceiveContext")
	require.NoError(t, a.Close())
	select {
	case err := <-got:
		require.ErrorIs(t, err, os.ErrClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Receive did not return after Close")
	}
}

// TestBlockingWaitDeadline: a read deadline still ends the wait.
func TestBlockingWaitDeadline(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		ua, ub := testutil.UnixPair(t, typ)
		a := sealbuf.NewConn(ua, sealbuf.WithWait(sealbuf.Wait{Kernel: testWait}))
		defer a.Close()
		defer ub.Close()
		require.NoError(t, ua.SetReadDeadline(time.Now().Add(3*time.Millisecond)))
		_, _, err := a.Receive(make([]byte, 8))
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	})
}

// TestBlockingWaitClamp: the wait is capped, and negative means off; both
// still work.
func TestBlockingWaitClamp(t *testing.T) {
	for _, d := range []time.Duration{-time.Second, time.Hour} {
		ua, ub := testutil.UnixPair(t, unix.SOCK_SEQPACKET)
		a := sealbuf.NewConn(ua, sealbuf.WithWait(sealbuf.Wait{Kernel: d}))
		b := sealbuf.NewConn(ub)
		require.NoError(t, b.Send([]byte("x")))
		n, _, err := a.Receive(make([]byte, 4))
		require.NoError(t, err)
		require.Equal(t, 1, n)
		requireCloseEndsReceive(t, a)
		b.Close()
	}
}

// receiveWaits waits until a Receive called from test (a function name)
// waits for its message — in its ppoll(2) wait, a raw system call that
// only /proc shows, or parked in the poller once that is over — and
// reports whether it did within 10 seconds. It does not fail the test, for
// goroutines that must not.
func receiveWaits(test string) bool {
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
		if testutil.InSyscall(unix.SYS_PPOLL) || testutil.Blocked(test, "sealbuf.(*Conn).ReceiveContext") {
			return true
		}
	}
	return false
}

// TestBlockingWaitUsesPpoll: with the option a waiting Receive shows up as
// a thread in ppoll; without it, never (the runtime itself does not use
// ppoll: it waits in epoll_pwait).
func TestBlockingWaitUsesPpoll(t *testing.T) {
	if err := testutil.HaveSyscallFiles(); err != nil {
		t.Skipf("no /proc/PID/task/TID/syscall (CONFIG_HAVE_ARCH_TRACEHOOK): %v", err)
	}
	seen := func(opts ...sealbuf.ConnOption) bool {
		ua, ub := testutil.UnixPair(t, unix.SOCK_SEQPACKET)
		a, b := sealbuf.NewConn(ua, opts...), sealbuf.NewConn(ub)
		defer a.Close()
		defer b.Close()
		for range 20 {
			got := make(chan error, 1)
			go func() { _, _, err := a.Receive(make([]byte, 4)); got <- err }()
			found := false
			for end := time.Now().Add(testWait); !found && time.Now().Before(end); {
				found = testutil.InSyscall(unix.SYS_PPOLL)
			}
			require.NoError(t, b.Send([]byte("x")))
			require.NoError(t, <-got)
			if found {
				return true
			}
		}
		return false
	}
	require.True(t, seen(sealbuf.WithWait(sealbuf.Wait{Kernel: testWait})), "WithWait: no thread ever seen in ppoll")
	require.False(t, seen(), "without WithWait: a thread was seen in ppoll")
}

// TestConnSpinIdleCostsNoCPU: a Conn that waits with a spin budget polls
// its socket for that long only, then waits without using the CPU
// (asserted on CPU time, not wall time).
func TestConnSpinIdleCostsNoCPU(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		ua, ub := testutil.UnixPair(t, typ)
		a := sealbuf.NewConn(ua, sealbuf.WithWait(sealbuf.Wait{Spin: 5 * time.Millisecond, Kernel: time.Millisecond}))
		defer a.Close()
		defer ub.Close()
		const idle = 300 * time.Millisecond
		before := testutil.ProcessCPU()
		ctx, cancel := context.WithTimeout(context.Background(), idle)
		defer cancel()
		_, _, err := a.ReceiveContext(ctx, make([]byte, 8))
		require.ErrorIs(t, err, context.DeadlineExceeded)
		used := testutil.ProcessCPU() - before
		require.Less(t, used, idle/3, "an idle Receive used %v of CPU in %v", used, idle)
	})
}
