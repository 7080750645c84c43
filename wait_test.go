//go:build linux

package sealbuf_test

import (
	"context"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealbuf/sealbuf"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The waits below are the option's longest, so that a wait that ignored
// Close, a deadline or a context would hold the test for that long each
// time; the tests check outcomes, never durations.
const testWait = sealbuf.MaxBlockingWait

func waitPair(t *testing.T, typ int) (*sealbuf.Conn, *sealbuf.Conn) {
	t.Helper()
	a, b := connUnixPair(t, typ)
	ca := sealbuf.NewConn(a, sealbuf.WithBlockingWait(testWait))
	cb := sealbuf.NewConn(b, sealbuf.WithBlockingWait(testWait))
	t.Cleanup(func() { ca.Close(); cb.Close() })
	return ca, cb
}

// TestBlockingWaitPingPong: with the option on both sides, messages with
// and without buffers cross in both directions, on both socket types, the
// receiver sometimes waiting (peer answers later) and sometimes not.
func TestBlockingWaitPingPong(t *testing.T) {
	connEachType(t, func(t *testing.T, typ int) {
		a, b := waitPair(t, typ)
		before := connCount(t)
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
				if i%7 == 0 {
					time.Sleep(time.Millisecond) // the peer now waits
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
		connRequireFlat(t, before)
	})
}

// TestBlockingWaitHangUp: a peer that hangs up while the receiver waits in
// the kernel reads as io.EOF.
func TestBlockingWaitHangUp(t *testing.T) {
	connEachType(t, func(t *testing.T, typ int) {
		a, b := waitPair(t, typ)
		time.AfterFunc(2*time.Millisecond, func() { b.Close() })
		_, _, err := a.Receive(make([]byte, 8))
		require.ErrorIs(t, err, io.EOF)
	})
}

// TestBlockingWaitClose: Close from another goroutine ends a Receive that
// waits (in the kernel, then in the netpoller) with os.ErrClosed.
func TestBlockingWaitClose(t *testing.T) {
	connEachType(t, func(t *testing.T, typ int) {
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
	time.Sleep(time.Millisecond)
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
	connEachType(t, func(t *testing.T, typ int) {
		ua, ub := connUnixPair(t, typ)
		a := sealbuf.NewConn(ua, sealbuf.WithBlockingWait(testWait))
		defer a.Close()
		defer ub.Close()
		require.NoError(t, ua.SetReadDeadline(time.Now().Add(3*time.Millisecond)))
		_, _, err := a.Receive(make([]byte, 8))
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	})
}

// TestBlockingWaitPool: a Pool and PoolReader over Conns with the option
// exchange messages, and a cancelled context or a Discard still wakes
// their waits.
func TestBlockingWaitPool(t *testing.T) {
	for _, st := range poolSockTypes {
		t.Run(st.name, func(t *testing.T) {
			pc, cc := waitPair(t, st.typ)
			p, err := sealbuf.NewPool(pc, 2, 4096)
			require.NoError(t, err)
			defer p.Close()
			r, err := sealbuf.AcceptPool(cc)
			require.NoError(t, err)
			defer r.Close()

			ctx := context.Background()
			go func() {
				for {
					v, _, err := r.Receive(ctx, nil)
					if err != nil {
						return
					}
					if v.Len() > 0 && v.Bytes()[0] != byte(v.Len()) {
						panic("wrong slot contents")
					}
					v.Release()
				}
			}()
			for i := range 500 {
				s, err := p.Acquire(ctx)
				require.NoError(t, err)
				n := i%4096 + 1
				s.Bytes()[0] = byte(n)
				require.NoError(t, s.Send(n, nil))
			}

			// Hold both slots: Acquire waits, and its context still ends it.
			var held []sealbuf.Slot
			for len(held) < 2 {
				s, err := p.TryAcquire()
				if errors.Is(err, sealbuf.ErrPoolFull) {
					time.Sleep(time.Millisecond)
					continue
				}
				require.NoError(t, err)
				held = append(held, s)
			}
			cctx, cancel := context.WithTimeout(ctx, 3*time.Millisecond)
			defer cancel()
			_, err = p.Acquire(cctx)
			require.ErrorIs(t, err, context.DeadlineExceeded)

			// A Discard wakes an Acquire waiting on the socket.
			got := make(chan error, 1)
			go func() { _, err := p.Acquire(ctx); got <- err }()
			time.Sleep(2 * time.Millisecond)
			require.NoError(t, held[0].Discard())
			select {
			case err := <-got:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("Acquire did not wake after Discard")
			}
		})
	}
}

// TestBlockingWaitClamp: the wait is capped, and negative means off; both
// still work.
func TestBlockingWaitClamp(t *testing.T) {
	for _, d := range []time.Duration{-time.Second, time.Hour} {
		ua, ub := connUnixPair(t, unix.SOCK_SEQPACKET)
		a := sealbuf.NewConn(ua, sealbuf.WithBlockingWait(d))
		b := sealbuf.NewConn(ub)
		require.NoError(t, b.Send([]byte("x")))
		n, _, err := a.Receive(make([]byte, 4))
		require.NoError(t, err)
		require.Equal(t, 1, n)
		requireCloseEndsReceive(t, a)
		b.Close()
	}
}

// inPpoll reports whether some thread of this process is blocked in
// ppoll(2), from /proc/self/task/*/syscall (first field: the number).
func inPpoll(t *testing.T) bool {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	require.NoError(t, err)
	want := strconv.Itoa(unix.SYS_PPOLL) + " "
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/syscall")
		if err == nil && strings.HasPrefix(string(b), want) {
			return true
		}
	}
	return false
}

// TestBlockingWaitUsesPpoll: with the option a waiting Receive shows up as
// a thread in ppoll; without it, never (the runtime itself does not use
// ppoll: it waits in epoll_pwait).
func TestBlockingWaitUsesPpoll(t *testing.T) {
	if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(unix.Gettid()) + "/syscall"); err != nil {
		t.Skipf("no /proc/PID/task/TID/syscall (CONFIG_HAVE_ARCH_TRACEHOOK): %v", err)
	}
	seen := func(opts ...sealbuf.ConnOption) bool {
		ua, ub := connUnixPair(t, unix.SOCK_SEQPACKET)
		a, b := sealbuf.NewConn(ua, opts...), sealbuf.NewConn(ub)
		defer a.Close()
		defer b.Close()
		for range 20 {
			got := make(chan error, 1)
			go func() { _, _, err := a.Receive(make([]byte, 4)); got <- err }()
			found := false
			for end := time.Now().Add(testWait); !found && time.Now().Before(end); {
				found = inPpoll(t)
			}
			require.NoError(t, b.Send([]byte("x")))
			require.NoError(t, <-got)
			if found {
				return true
			}
		}
		return false
	}
	require.True(t, seen(sealbuf.WithBlockingWait(testWait)), "WithBlockingWait: no thread ever seen in ppoll")
	require.False(t, seen(), "without WithBlockingWait: a thread was seen in ppoll")
}
