//go:build linux

package futex

import (
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// sharedWord maps one page of a memfd twice, as two processes would: the
// waiter's mapping read-only, the waker's writable.
func sharedWord(t *testing.T) (waiter, waker *atomic.Uint32) {
	fd, err := unix.MemfdCreate("futex-test", unix.MFD_CLOEXEC)
	require.NoError(t, err)
	defer unix.Close(fd)
	require.NoError(t, unix.Ftruncate(fd, 4096))
	ro, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ, unix.MAP_SHARED)
	require.NoError(t, err)
	rw, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Munmap(ro); unix.Munmap(rw) })
	return (*atomic.Uint32)(unsafe.Pointer(&ro[0])), (*atomic.Uint32)(unsafe.Pointer(&rw[0]))
}

func TestWaitChangedValue(t *testing.T) {
	for _, raw := range []bool{false, true} {
		r, w := sharedWord(t)
		w.Store(5)
		require.True(t, Wait(r, 4, time.Second, raw), "a word that differs already returns at once")
	}
}

func TestWaitTimeout(t *testing.T) {
	r, _ := sharedWord(t)
	start := time.Now()
	require.False(t, Wait(r, 0, 5*time.Millisecond, false))
	require.GreaterOrEqual(t, time.Since(start), 5*time.Millisecond)
}

// TestWakeThroughOtherMapping: the wake-up is keyed by the file, not the
// address: a waker using another mapping of the page wakes a waiter on a
// read-only one.
func TestWakeThroughOtherMapping(t *testing.T) {
	for _, raw := range []bool{false, true} {
		r, w := sharedWord(t)
		done := make(chan bool)
		go func() {
			// A signal (the runtime's preemption) ends a wait early with
			// EINTR, reported as a timeout: wait again until a real one.
			start := time.Now()
			for !Wait(r, 0, 10*time.Second, raw) {
				if time.Since(start) > 10*time.Second {
					done <- false
					return
				}
			}
			done <- true
		}()
		woke := 0
		for woke == 0 {
			time.Sleep(time.Millisecond)
			w.Store(1)
			var err error
			woke, err = Wake(w, 1)
			require.NoError(t, err)
			w.Store(0)
			select {
			case ok := <-done:
				require.True(t, ok)
				woke = 1
				done = nil
			default:
			}
		}
		if done != nil {
			require.True(t, <-done, "woken, not timed out")
		}
	}
}
