//go:build linux

package pool_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/memfd"
	"github.com/sealbuf/sealbuf/pool"
)

// Regression tests for issue #14's findings about hostile peers. Each says
// how it failed on the code before the fixes (commit 49a691d, where the
// pool lived in the root package as sealbuf.NewPool and AcceptPool).

// hostileWithin runs fn on another goroutine and returns its error, or
// fails the test when fn has not returned after d (a hang).
func hostileWithin(t *testing.T, d time.Duration, what string, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s: still blocked after %v", what, d)
		return nil
	}
}

// hostileProducerRaw is hostileProducer that also returns the consumer's
// own socket, for tests that fill it up behind the Reader's back.
func hostileProducerRaw(t *testing.T, typ, slots, slotSize int) (*sealbuf.Conn, *net.UnixConn, *pool.Reader) {
	t.Helper()
	a, b := testutil.UnixPair(t, typ)
	pc := sealbuf.NewConn(a)
	require.NoError(t, pc.SendFiles(poolHello(slots, 64, slotSize, page), rawPoolMemfd(t, slots*page, poolSeals)))
	r, err := pool.Accept(sealbuf.NewConn(b))
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	return pc, b, r
}

// fillSocket writes junk on uc, never blocking, until its send buffer takes
// no more: what a peer that never reads its socket leaves behind. The
// caller's Conn on uc is not sending meanwhile.
func fillSocket(t *testing.T, uc *net.UnixConn) {
	t.Helper()
	rc, err := uc.SyscallConn()
	require.NoError(t, err)
	junk := make([]byte, 4096)
	total := 0
	var werr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		for {
			n, err := unix.SendmsgN(int(fd), junk, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
			switch err {
			case nil:
				total += n
				continue
			case unix.EINTR:
				continue
			case unix.EAGAIN:
			default:
				werr = err
			}
			return
		}
	}))
	require.NoError(t, werr)
	require.NotZero(t, total)
}

// TestPoolHostileHandBackHonoursContext (finding 3): a producer that never
// reads its socket, which is full, sends a message the consumer refuses
// and hands back (a length past the slot). The hand-back cannot be written;
// Receive must give up when its ctx ends, and say so (ctx's error, and
// the refusal).
//
// On 49a691d, Receive handed the slot back with releaseNow(rec), which
// sent with no context at all: the send waited for room on the socket for
// ever (only a write deadline could end it), and Receive never returned.
func TestPoolHostileHandBackHonoursContext(t *testing.T) {
	for _, st := range testutil.SockTypes {
		t.Run(st.Name, func(t *testing.T) {
			pc, cons, r := hostileProducerRaw(t, st.Type, 2, 100)
			fillSocket(t, cons)
			require.NoError(t, pc.Send(poolRecord('M', 0, 1, 101)))
			err := hostileWithin(t, 10*time.Second, "Receive handing a slot back to a producer that never reads", func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				_, _, err := r.Receive(ctx, make([]byte, 64))
				return err
			})
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.ErrorIs(t, err, pool.ErrBadLength, "the refusal is reported too")
			t.Log(err)

			// Cancellation ends it the same way.
			require.NoError(t, pc.Send(poolRecord('M', 1, 1, 101)))
			err = hostileWithin(t, 10*time.Second, "Receive handing a slot back, cancelled", func() error {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(50*time.Millisecond, cancel)
				_, _, err := r.Receive(ctx, make([]byte, 64))
				return err
			})
			require.ErrorIs(t, err, context.Canceled)
			require.ErrorIs(t, err, pool.ErrBadLength)
		})
	}
}

// TestPoolHostileFlushHonoursContext (finding 3): the releases a consumer
// holds back while messages it read already wait are sent before Receive
// waits for more. Against a producer that never reads its full socket
// they cannot go: Receive must still end with its ctx, whether it sends
// them itself or the hold-back timer tried first.
//
// On 49a691d, readBatch called flushReleases() with no context: the send
// waited for room for ever, and Receive never returned. (With the timer,
// the timer's flush blocked holding the lock that Receive's flush takes:
// the same hang.)
func TestPoolHostileFlushHonoursContext(t *testing.T) {
	for _, hb := range []struct {
		name string
		d    time.Duration
	}{
		{"flushed by Receive", time.Hour},       // the timer never fires
		{"timer tried first", time.Millisecond}, // the timer fires before Receive waits
	} {
		for _, st := range testutil.SockTypes {
			t.Run(hb.name+"/"+st.Name, func(t *testing.T) {
				defer pool.SetHoldBack(hb.d)()
				pc, cons, r := hostileProducerRaw(t, st.Type, 2, 100)
				ctx := context.Background()
				// Both messages arrive before the first Receive, which reads
				// them at once: the release of the first is held back while
				// the second waits.
				require.NoError(t, pc.Send(poolRecord('M', 0, 1, 1)))
				require.NoError(t, pc.Send(poolRecord('M', 1, 1, 1)))
				v0, _, err := r.Receive(ctx, nil)
				require.NoError(t, err)
				fillSocket(t, cons)
				require.NoError(t, v0.Release(), "held back: it does not touch the socket")
				if hb.d < time.Hour {
					// No probe tells that the timer has run; a few times
					// its delay makes it likely (the test passes either way).
					time.Sleep(20 * hb.d)
				}
				v1, _, err := r.Receive(ctx, nil) // handed out from what was read
				require.NoError(t, err)
				require.Equal(t, 1, v1.Slot())
				err = hostileWithin(t, 10*time.Second, "Receive flushing releases to a producer that never reads", func() error {
					tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
					defer cancel()
					_, _, err := r.Receive(tctx, nil)
					return err
				})
				require.ErrorIs(t, err, context.DeadlineExceeded)
				// The release is still held, not lost: Close ends it all.
			})
		}
	}
}

// TestPoolHostileBytesRaceClose (finding 5): Slot.Bytes after the
// Writer's Close returns nil, and View.Bytes and CopyTo after the Reader's
// Close return nil and 0; called in a loop on other goroutines while Close
// runs they neither panic nor race (run under -race). The slices are not
// read: after Close they may be unmapped.
//
// On 49a691d, Pool.Close set p.mem = nil and Slot.Bytes sliced p.mem
// unchecked: p.mem[off:end:end] on a nil slice panicked (slice bounds out
// of range) after Close, and raced with Close's write during it.
// PoolReader.Close set r.mem = nil under memMu, which View.Bytes reads
// without it: a data race the race detector reports.
func TestPoolHostileBytesRaceClose(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			const size = 100
			p, r := newPoolPair(t, st.Type, 2, size)
			ctx := context.Background()
			held, err := p.Acquire(ctx) // acquired, never sent
			require.NoError(t, err)
			s, err := p.Acquire(ctx)
			require.NoError(t, err)
			require.NoError(t, s.Send(size, nil))
			v, _, err := r.Receive(ctx, nil)
			require.NoError(t, err)

			var stop atomic.Bool
			var wg sync.WaitGroup
			var started sync.WaitGroup
			bad := make(chan string, 8)
			const loopers = 2
			started.Add(2 * loopers)
			for range loopers {
				wg.Go(func() {
					for i := 0; !stop.Load(); i++ {
						if b := held.Bytes(); b != nil && len(b) != size {
							bad <- fmt.Sprintf("Slot.Bytes: %d bytes", len(b))
							return
						}
						if i == 100 {
							started.Done()
						}
					}
				})
				wg.Go(func() {
					var buf [size]byte
					for i := 0; !stop.Load(); i++ {
						if b := v.Bytes(); b != nil && len(b) != size {
							bad <- fmt.Sprintf("View.Bytes: %d bytes", len(b))
							return
						}
						if n := v.CopyTo(buf[:]); n != 0 && n != size {
							bad <- fmt.Sprintf("View.CopyTo: %d bytes", n)
							return
						}
						if i == 100 {
							started.Done()
						}
					}
				})
			}
			started.Wait()
			var cwg sync.WaitGroup
			cwg.Go(func() { assertNoError(t, p.Close()) })
			cwg.Go(func() { assertNoError(t, r.Close()) })
			cwg.Wait()
			stop.Store(true)
			wg.Wait()
			close(bad)
			for msg := range bad {
				t.Error(msg)
			}
			require.Nil(t, held.Bytes(), "Slot.Bytes after Close")
			require.Nil(t, s.Bytes(), "Slot.Bytes of a sent slot after Close")
			require.Nil(t, v.Bytes(), "View.Bytes after Close")
			var buf [size]byte
			require.Zero(t, v.CopyTo(buf[:]))
			require.Nil(t, v.Snapshot())
		})
	}
}

// TestPoolHostileStride (finding 7): a hello whose stride is wider than
// the slot size rounded up to a page is refused with ErrProtocol, whatever
// the memfd; the widest legal stride, and the slot size itself, are fine.
//
// On 49a691d, parsePoolHello accepted any stride from the slot size up to
// what could be mapped, and AcceptPool mapped slots × stride: a producer
// chose how much address space (and, populated, memory) the consumer
// spent on slots of a few bytes.
func TestPoolHostileStride(t *testing.T) {
	const slots, slotSize = 4, 100
	for _, tc := range []struct {
		name   string
		stride int
		ok     bool
	}{
		{"slot size", slotSize, true},
		{"a page", page, true},
		{"a page and a byte", page + 1, false},
		{"two pages", 2 * page, false},
		{"a MiB", 1 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc, cc := poolConns(t, unix.SOCK_SEQPACKET)
			f := rawPoolMemfd(t, slots*tc.stride, poolSeals)
			before := testutil.Snap(t)
			require.NoError(t, pc.SendFiles(poolHello(slots, 64, slotSize, tc.stride), f))
			r, err := pool.Accept(cc)
			var delta testutil.Counts
			if tc.ok {
				require.NoError(t, err)
				require.NoError(t, r.Close())
				delta.Total-- // the Reader closed cc's socket
			} else {
				require.True(t, r == nil)
				require.ErrorIs(t, err, pool.ErrProtocol)
				require.ErrorContains(t, err, "stride")
				t.Log(err)
			}
			testutil.RequireDelta(t, before, delta, "every received descriptor is closed; nothing stays mapped")
		})
	}
}

// rssShmem returns this process's resident shared memory (RssShmem in
// /proc/self/status) in bytes.
func rssShmem(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "RssShmem:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			require.NoError(t, err, "%q", line)
			return kb << 10
		}
	}
	t.Skip("no RssShmem in /proc/self/status")
	return 0
}

// TestPoolHostileAcceptDoesNotPopulate (finding 7): accepting a large pool
// whose slots were never written costs the consumer address space, not
// memory: its resident shared memory does not grow by the pool's size.
//
// On 49a691d, AcceptPool mapped the pool with MAP_POPULATE: every page of
// a sparse memfd was allocated (zeroed) and mapped at once, 64 MiB of
// RssShmem here, chosen by the producer.
func TestPoolHostileAcceptDoesNotPopulate(t *testing.T) {
	const slots, slotSize = 64, 1 << 20 // 64 MiB in all
	pc, cc := poolConns(t, unix.SOCK_SEQPACKET)
	f := rawPoolMemfd(t, slots*slotSize, poolSeals) // sparse: never written
	require.NoError(t, pc.SendFiles(poolHello(slots, 64, slotSize, slotSize), f))
	before := rssShmem(t)
	r, err := pool.Accept(cc)
	require.NoError(t, err)
	defer r.Close()
	grown := rssShmem(t) - before
	t.Logf("RssShmem grew by %d KiB on Accept of a %d MiB pool", grown>>10, slots*slotSize>>20)
	require.Less(t, grown, int64(slots*slotSize/8), "Accept made the pool resident")
}

// TestPoolHostileReleaseBatch (finding 9): a release message with a bad
// record among valid ones fails Acquire with ErrProtocol, and the valid
// releases in it still count: their slots are free.
//
// On 49a691d, applyReleases stopped at the first bad record (and refused a
// message that was not a whole number of records outright): the valid
// releases after it were lost, their slots never came back, and
// TryAcquire failed with ErrFull.
func TestPoolHostileReleaseBatch(t *testing.T) {
	release := func(s pool.Slot) []byte {
		return poolRecord('R', uint32(s.Index()), s.Generation(), 0)
	}
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		msg  func(s0, s1 pool.Slot) []byte
		back int // slots the message gives back
	}{
		{"a bad slot, then a valid release", func(s0, _ pool.Slot) []byte {
			return cat(poolRecord('R', 9, 9, 0), release(s0))
		}, 1},
		{"valid, a record of the wrong kind, valid", func(s0, s1 pool.Slot) []byte {
			return cat(release(s0), poolRecord('M', 0, 0, 0), release(s1))
		}, 2},
		{"a stale generation between valid ones", func(s0, s1 pool.Slot) []byte {
			return cat(release(s0), poolRecord('R', uint32(s1.Index()), s1.Generation()+1, 0), release(s1))
		}, 2},
		{"valid records, then a torn one", func(s0, s1 pool.Slot) []byte {
			return cat(release(s0), release(s1), []byte("torn"))
		}, 2},
	} {
		for _, st := range testutil.SockTypes {
			t.Run(tc.name+"/"+st.Name, func(t *testing.T) {
				p, cc := hostileConsumer(t, st.Type, 2)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				var s [2]pool.Slot
				for i := range s {
					var err error
					s[i], err = p.Acquire(ctx)
					require.NoError(t, err)
					require.NoError(t, s[i].Send(1, nil))
				}
				require.Zero(t, p.Free())
				require.NoError(t, cc.Send(tc.msg(s[0], s[1])))
				_, err := p.Acquire(ctx)
				require.ErrorIs(t, err, pool.ErrProtocol)
				t.Log(err)
				require.Equal(t, tc.back, p.Free(), "the valid releases count")
				for range tc.back {
					got, err := p.TryAcquire()
					require.NoError(t, err)
					require.NoError(t, got.Discard())
				}
			})
		}
	}
}

// hostileHugePages makes sure need free huge pages of the default size
// exist for the test, and restores the pool when it ends; it skips where
// that cannot be done (not root, no huge page support). It returns the
// huge page size.
func hostileHugePages(t *testing.T, need int) int {
	t.Helper()
	const path = "/proc/sys/vm/nr_hugepages"
	hps := hostileMeminfo(t, "Hugepagesize") << 10
	if hps <= 0 {
		t.Skip("huge pages: the kernel reports no huge page size")
	}
	old, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("huge pages: %v", err)
	}
	pages, err := strconv.Atoi(strings.TrimSpace(string(old)))
	require.NoError(t, err)
	if err := os.WriteFile(path, []byte(strconv.Itoa(pages+need)), 0); err != nil {
		t.Skipf("huge pages: cannot reserve (%v); needs root", err)
	}
	t.Cleanup(func() { os.WriteFile(path, old, 0) })
	if free := hostileMeminfo(t, "HugePages_Free") - hostileMeminfo(t, "HugePages_Rsvd"); free < int64(need) {
		t.Skipf("huge pages: asked for %d free pages, the kernel has %d", need, free)
	}
	return int(hps)
}

// hostileMeminfo returns the number of a /proc/meminfo line, or -1.
func hostileMeminfo(t *testing.T, key string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			n, err := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	return -1
}

// TestPoolHostileHugeTLBRing (finding 2): a futex pool whose ring memfd is
// on hugetlbfs is refused with ErrProtocol, and nothing leaks: both sides
// write the ring, so it cannot be sealed against writes, and a producer
// could punch its huge page out under the consumer's reads.
//
// On 49a691d, openRing checked the ring's seals (shrink|grow, no write
// seal) and size only: a hugetlbfs ring of the right size, sealed like a
// real one, was mapped and the pool accepted.
func TestPoolHostileHugeTLBRing(t *testing.T) {
	hps := hostileHugePages(t, 1)
	// A slot count and header limit whose ring is exactly one huge page:
	// hugetlbfs sizes are whole huge pages, and the ring's size is fixed.
	slots, maxHeader := 0, 0
	for s := 1; s <= pool.MaxSlots && slots == 0; s++ {
		for h := pool.MaxHeader; h >= 0; h -= 64 { // every message entry size
			if size, _, _ := ringLayoutOf(s, h); size == hps {
				slots, maxHeader = s, h
				break
			}
		}
	}
	if slots == 0 {
		t.Skipf("no pool has a ring of exactly one %d-byte huge page", hps)
	}
	ring, err := memfd.Create("hostile-ring", memfd.WithHugeTLB(0))
	if err != nil {
		t.Skipf("huge pages: %v", err)
	}
	defer ring.Close()
	require.NoError(t, ring.Truncate(int64(hps)))
	require.NoError(t, ring.AddSeals(ringSeals))
	// The ring as a plain *os.File, as a raw producer would hold it.
	var ringFile *os.File
	require.NoError(t, ring.Control(func(fd int) error {
		var err error
		ringFile, err = os.OpenFile("/proc/self/fd/"+strconv.Itoa(fd), os.O_RDWR, 0)
		return err
	}))
	defer ringFile.Close()

	pc, cc := poolConns(t, unix.SOCK_SEQPACKET)
	slotsFile := rawPoolMemfd(t, slots*page, poolSeals)
	before := testutil.Snap(t)
	require.NoError(t, pc.SendFiles(poolHelloRing(slots, maxHeader, 100, page), slotsFile, ringFile))
	r, err := pool.Accept(cc)
	require.True(t, r == nil)
	require.ErrorIs(t, err, pool.ErrProtocol)
	require.ErrorContains(t, err, "hugetlbfs")
	t.Log(err)
	testutil.RequireFlat(t, before, "every received descriptor is closed; nothing stays mapped")

	// The same hello with a tmpfs ring is accepted: only hugetlbfs is
	// refused.
	pc, cc = poolConns(t, unix.SOCK_SEQPACKET)
	require.NoError(t, pc.SendFiles(poolHelloRing(slots, maxHeader, 100, page), slotsFile, rawRingMemfd(t, slots, maxHeader, ringSeals)))
	r, err = pool.Accept(cc)
	require.NoError(t, err)
	require.NoError(t, r.Close())
}
