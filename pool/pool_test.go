//go:build linux

package pool_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/memfd"
	"github.com/sealbuf/sealbuf/pool"
)

// poolFutex, or-ed into a socket type, makes newPoolPair (and poolOpts)
// build a futex pool (pool.WithFutex) over that socket type.
const poolFutex = 1 << 24

// poolFlavors are testutil.SockTypes, each with and without pool.WithFutex.
var poolFlavors = []struct {
	Name string
	Type int
}{
	{"unixpacket", unix.SOCK_SEQPACKET}, {"unix", unix.SOCK_STREAM},
	{"unixpacket-futex", unix.SOCK_SEQPACKET | poolFutex}, {"unix-futex", unix.SOCK_STREAM | poolFutex},
}

// poolOpts adds pool.WithFutex to opts when typ asks for it.
func poolOpts(typ int, opts ...pool.Option) []pool.Option {
	if typ&poolFutex != 0 {
		return append(opts, pool.WithFutex())
	}
	return opts
}

// poolConns returns two Conns over a socketpair of typ.
func poolConns(t testing.TB, typ int) (*sealbuf.Conn, *sealbuf.Conn) {
	t.Helper()
	a, b := testutil.UnixPair(t, typ&^poolFutex)
	return sealbuf.NewConn(a), sealbuf.NewConn(b)
}

// newPoolPair returns a producer and its consumer over a socketpair of
// typ, both closed when the test ends.
func newPoolPair(t testing.TB, typ, slots, slotSize int, opts ...pool.Option) (*pool.Writer, *pool.Reader) {
	t.Helper()
	pc, cc := poolConns(t, typ)
	p, err := pool.New(pc, slots, slotSize, poolOpts(typ, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	r, err := pool.Accept(cc)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	return p, r
}

func poolFill(b []byte, seed int) {
	for i := range b {
		b[i] = byte(seed + i*7)
	}
}

func TestPoolRoundTrip(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			const slots, size = 3, 10000
			p, r := newPoolPair(t, st.Type, slots, size, pool.WithMaxHeader(64))
			require.Equal(t, slots, r.Slots())
			require.Equal(t, size, r.SlotSize())
			require.Equal(t, 64, r.MaxHeader())
			require.True(t, r.Seals().Has(memfd.SealShrink|memfd.SealGrow|memfd.SealFutureWrite), "%s", r.Seals())
			require.True(t, p.Seals().Has(memfd.SealShrink|memfd.SealGrow|memfd.SealFutureWrite|memfd.SealSeal), "%s", p.Seals())

			ctx := context.Background()
			hdr := make([]byte, r.MaxHeader())
			seen := map[int]bool{}
			for i := range 10 * slots {
				s, err := p.Acquire(ctx)
				require.NoError(t, err)
				require.Len(t, s.Bytes(), size)
				n := (i*997)%size + 1
				poolFill(s.Bytes()[:n], i)
				require.NoError(t, s.Send(n, fmt.Appendf(nil, "message %d", i)))

				v, hn, err := r.Receive(ctx, hdr)
				require.NoError(t, err)
				require.Equal(t, fmt.Sprintf("message %d", i), string(hdr[:hn]))
				require.Equal(t, s.Index(), v.Slot())
				require.Equal(t, s.Generation(), v.Generation())
				want := make([]byte, n)
				poolFill(want, i)
				require.Equal(t, n, v.Len())
				require.True(t, bytes.Equal(want, v.Bytes()), "message %d", i)
				seen[v.Slot()] = true
				require.NoError(t, v.Release())
			}
			require.Len(t, seen, slots)

			// An empty header and a zero-length message are fine too.
			s, err := p.Acquire(ctx)
			require.NoError(t, err)
			require.NoError(t, s.Send(0, nil))
			v, hn, err := r.Receive(ctx, hdr)
			require.NoError(t, err)
			require.Zero(t, hn)
			require.Empty(t, v.Bytes())
			require.NoError(t, v.Release())
		})
	}
}

// TestPoolPipelined keeps every slot in flight, receiving on another
// goroutine, so releases and messages cross.
func TestPoolPipelined(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			const slots, size, count = 4, 4096, 2000
			p, r := newPoolPair(t, st.Type, slots, size)
			errc := make(chan error, 1)
			go func() {
				errc <- func() error {
					hdr := make([]byte, 8)
					for i := range count {
						v, hn, err := r.Receive(context.Background(), hdr)
						if err != nil {
							return err
						}
						if hn != 8 || binary.LittleEndian.Uint64(hdr) != uint64(i) {
							return fmt.Errorf("message %d: header %x", i, hdr[:hn])
						}
						b := v.Bytes()
						if len(b) != size || b[0] != byte(i) || b[size-1] != byte(i) {
							return fmt.Errorf("message %d: wrong bytes", i)
						}
						if err := v.Release(); err != nil {
							return err
						}
					}
					return nil
				}()
			}()
			var hdr [8]byte
			for i := range count {
				s, err := p.Acquire(context.Background())
				require.NoError(t, err)
				b := s.Bytes()
				b[0], b[size-1] = byte(i), byte(i)
				binary.LittleEndian.PutUint64(hdr[:], uint64(i))
				require.NoError(t, s.Send(size, hdr[:]))
			}
			require.NoError(t, <-errc)
			for range slots { // every slot comes back
				_, err := p.Acquire(context.Background())
				require.NoError(t, err)
			}
		})
	}
}

// TestPoolConcurrentProducers has several goroutines Acquire and Send at
// once, with fewer slots than goroutines.
func TestPoolConcurrentProducers(t *testing.T) {
	const slots, producers, each = 2, 6, 300
	p, r := newPoolPair(t, unix.SOCK_SEQPACKET, slots, 128)
	var wg sync.WaitGroup
	for g := range producers {
		wg.Go(func() {
			for i := range each {
				s, err := p.Acquire(context.Background())
				if !assertNoError(t, err) {
					return
				}
				s.Bytes()[0] = byte(g)
				if i%5 == 0 { // some slots go back unsent
					assertNoError(t, s.Discard())
					continue
				}
				assertNoError(t, s.Send(1, []byte{byte(g)}))
			}
		})
	}
	got := make(chan int)
	go func() {
		n := 0
		hdr := make([]byte, 4)
		for {
			v, hn, err := r.Receive(context.Background(), hdr)
			if err != nil {
				got <- n
				return
			}
			if hn != 1 || v.Bytes()[0] != hdr[0] {
				t.Errorf("slot %d holds %d, header says %d", v.Slot(), v.Bytes()[0], hdr[0])
			}
			n++
			assertNoError(t, v.Release())
		}
	}()
	wg.Wait()
	require.NoError(t, p.Close())
	require.Equal(t, producers*each*4/5, <-got)
}

func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

// TestPoolConsumerMapsReadOnly checks what the seals promise: the consumer's
// mapping is read-only and can never be made writable, nor can the memfd be
// written through a descriptor; its size is fixed for everyone.
func TestPoolConsumerMapsReadOnly(t *testing.T) {
	p, r := newPoolPair(t, unix.SOCK_SEQPACKET, 2, 3*page+1, pool.WithName("pool-ro"))
	s, err := p.Acquire(context.Background())
	require.NoError(t, err)
	require.NoError(t, s.Send(100, nil))
	v, _, err := r.Receive(context.Background(), nil)
	require.NoError(t, err)
	b := v.Bytes()
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	require.Zero(t, addr%uintptr(page), "slots start on a page boundary")
	require.Contains(t, testutil.MapsLine(t, addr), "r--s", "the consumer maps the pool read-only and shared")
	err = unix.Mprotect(b, unix.PROT_READ|unix.PROT_WRITE)
	require.ErrorIs(t, err, unix.EACCES, "future_write forbids making the mapping writable")

	// Any holder of the memfd: no write, no resize, no new writable map.
	f := testutil.MemfdByName(t, "pool-ro")
	defer f.Close()
	_, err = f.WriteAt([]byte("x"), 0)
	require.ErrorIs(t, err, unix.EPERM)
	require.ErrorIs(t, f.Truncate(1), unix.EPERM)
	require.ErrorIs(t, f.Truncate(1<<30), unix.EPERM)
	require.ErrorIs(t, poolMapWritable(t, f, page), unix.EPERM)
	require.NoError(t, v.Release())
}

// poolMapWritable tries a writable shared mapping of f (unmapping it at
// once if the kernel allows it) and returns the kernel's answer.
func poolMapWritable(t testing.TB, f *os.File, size int) error {
	rc, err := f.SyscallConn()
	require.NoError(t, err)
	var merr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		var m []byte
		if m, merr = unix.Mmap(int(fd), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); merr == nil {
			unix.Munmap(m)
		}
	}))
	return merr
}

// TestPoolProducerCanStillWrite shows the trust model: the producer keeps
// its writable mapping, so a misbehaving producer can change a slot while
// the consumer reads it; Snapshot and CopyTo take a private copy.
func TestPoolProducerCanStillWrite(t *testing.T) {
	p, r := newPoolPair(t, unix.SOCK_SEQPACKET, 1, 16)
	s, err := p.Acquire(context.Background())
	require.NoError(t, err)
	copy(s.Bytes(), "before")
	require.NoError(t, s.Send(6, nil))
	v, _, err := r.Receive(context.Background(), nil)
	require.NoError(t, err)
	snap := v.Snapshot()
	var buf [4]byte
	require.Equal(t, 4, v.CopyTo(buf[:]))
	copy(s.Bytes(), "AFTER!") // breaks the protocol: the slot was sent
	require.Equal(t, "AFTER!", string(v.Bytes()), "the view shows the producer's late write")
	require.Equal(t, "before", string(snap), "the snapshot does not")
	require.Equal(t, "befo", string(buf[:]))
	require.NoError(t, v.Release())
	require.Nil(t, v.Bytes(), "a released view shows nothing")
	require.Nil(t, v.Snapshot())
	require.Zero(t, v.CopyTo(buf[:]))
}

func TestPoolLocalMisuse(t *testing.T) {
	p, r := newPoolPair(t, unix.SOCK_SEQPACKET, 1, 64)
	ctx := context.Background()
	s, err := p.Acquire(ctx)
	require.NoError(t, err)
	require.ErrorIs(t, s.Send(65, nil), pool.ErrBadLength)
	require.ErrorIs(t, s.Send(-1, nil), pool.ErrBadLength)
	require.Error(t, s.Send(1, make([]byte, p.MaxHeader()+1)))
	require.NoError(t, s.Send(64, nil))
	require.ErrorIs(t, s.Send(1, nil), pool.ErrStaleGeneration, "sent twice")
	require.ErrorIs(t, s.Discard(), pool.ErrStaleGeneration, "discarded after send")

	v, _, err := r.Receive(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, v.Release())
	require.ErrorIs(t, v.Release(), pool.ErrDoubleRelease)

	// A stale copy of a view whose slot moved on.
	s2, err := p.Acquire(ctx)
	require.NoError(t, err)
	require.Equal(t, s.Index(), s2.Index())
	require.NoError(t, s2.Send(1, nil))
	v2, _, err := r.Receive(ctx, nil)
	require.NoError(t, err)
	require.ErrorIs(t, v.Release(), pool.ErrStaleGeneration)
	require.NoError(t, v2.Release())

	s3, err := p.Acquire(ctx)
	require.NoError(t, err)
	require.NoError(t, s3.Discard())
	require.ErrorIs(t, s3.Discard(), pool.ErrStaleGeneration)

	var zs pool.Slot
	require.Nil(t, zs.Bytes())
	require.Error(t, zs.Send(0, nil))
	var zv pool.View
	require.Nil(t, zv.Bytes())
	require.Error(t, zv.Release())

	require.NoError(t, p.Close())
	requirePoolClosed(t, p.Close())
	_, err = p.Acquire(ctx)
	requirePoolClosed(t, err)
	_, err = p.TryAcquire()
	requirePoolClosed(t, err)
	require.NoError(t, r.Close())
	requirePoolClosed(t, r.Close())
	_, _, err = r.Receive(ctx, nil)
	requirePoolClosed(t, err)
}

func requirePoolClosed(t *testing.T, err error) {
	t.Helper()
	require.ErrorIs(t, err, os.ErrClosed)
}

func TestPoolBackPressure(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			const slots = 3
			p, r := newPoolPair(t, st.Type, slots, 64)
			ctx := context.Background()
			for range slots {
				s, err := p.Acquire(ctx)
				require.NoError(t, err)
				require.NoError(t, s.Send(1, nil))
			}
			require.Zero(t, p.Free())
			_, err := p.TryAcquire()
			require.ErrorIs(t, err, pool.ErrFull)

			tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			start := time.Now()
			_, err = p.Acquire(tctx)
			cancel()
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)

			cctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(30*time.Millisecond, cancel)
			_, err = p.Acquire(cctx)
			require.ErrorIs(t, err, context.Canceled)

			// Blocked until the consumer releases one.
			got := make(chan error, 1)
			go func() {
				s, err := p.Acquire(ctx)
				if err == nil {
					err = s.Discard()
				}
				got <- err
			}()
			select {
			case err := <-got:
				t.Fatalf("Acquire returned with every slot in use: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
			v, _, err := r.Receive(ctx, nil)
			require.NoError(t, err)
			require.NoError(t, v.Release())
			require.NoError(t, <-got)

			// The read deadline left behind is cleared: a plain Acquire works.
			s, err := p.Acquire(ctx)
			require.NoError(t, err)
			require.NoError(t, s.Discard())
			s, err = p.TryAcquire()
			require.NoError(t, err)
			require.NoError(t, s.Discard())
		})
	}
}

// TestPoolDiscardWakesAcquire: a slot given back locally wakes an Acquire
// blocked on the socket.
func TestPoolDiscardWakesAcquire(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			p, _ := newPoolPair(t, st.Type, 1, 64)
			s, err := p.Acquire(context.Background())
			require.NoError(t, err)
			got := make(chan error, 1)
			go func() {
				_, err := p.Acquire(context.Background())
				got <- err
			}()
			require.Eventually(t, func() bool { return pool.Blocked(p) }, 10*time.Second, 100*time.Microsecond, "Acquire never blocked")
			require.NoError(t, s.Discard())
			select {
			case err := <-got:
				require.NoError(t, err)
			case <-time.After(5 * time.Second):
				t.Fatal("Acquire did not wake when a slot was discarded")
			}
		})
	}
}

func TestPoolReceiveContext(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			_, r := newPoolPair(t, st.Type, 1, 64)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			_, _, err := r.Receive(ctx, nil)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			ctx, cancel = context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, cancel)
			_, _, err = r.Receive(ctx, nil)
			require.ErrorIs(t, err, context.Canceled)
		})
	}
}

// TestPoolConsumerHangUp: the consumer's Close returns every slot, and the
// producer learns it is gone.
func TestPoolConsumerHangUp(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			const slots = 4
			p, r := newPoolPair(t, st.Type, slots, 64)
			ctx := context.Background()
			for range slots - 1 {
				s, err := p.Acquire(ctx)
				require.NoError(t, err)
				require.NoError(t, s.Send(1, nil))
			}
			held, err := p.Acquire(ctx) // acquired, not sent
			require.NoError(t, err)
			v, _, err := r.Receive(ctx, nil) // one held by the consumer
			require.NoError(t, err)
			require.NoError(t, r.Close())
			require.Nil(t, v.Bytes())

			_, err = p.Acquire(ctx)
			require.ErrorIs(t, err, io.EOF)
			require.Equal(t, slots-1, p.Free(), "every sent slot is back")
			require.ErrorIs(t, held.Send(1, nil), io.EOF)
			require.Equal(t, slots, p.Free())
			_, err = p.TryAcquire()
			require.ErrorIs(t, err, io.EOF)
		})
	}
}

// TestPoolProducerHangUp: the consumer sees io.EOF; views it holds stay
// readable until it closes, and releasing them is harmless.
func TestPoolProducerHangUp(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			p, r := newPoolPair(t, st.Type, 2, 64)
			s, err := p.Acquire(context.Background())
			require.NoError(t, err)
			copy(s.Bytes(), "kept")
			require.NoError(t, s.Send(4, nil))
			require.NoError(t, p.Close())
			v, _, err := r.Receive(context.Background(), nil)
			require.NoError(t, err)
			_, _, err = r.Receive(context.Background(), nil)
			require.ErrorIs(t, err, io.EOF)
			require.Equal(t, "kept", string(v.Bytes()))
			require.NoError(t, v.Release())
		})
	}
}

// TestPoolShortHeaderBuffer: a header too long for the buffer fails with
// io.ErrShortBuffer and the slot goes back to the producer.
func TestPoolShortHeaderBuffer(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			p, r := newPoolPair(t, st.Type, 1, 64)
			s, err := p.Acquire(context.Background())
			require.NoError(t, err)
			require.NoError(t, s.Send(1, []byte("a long header")))
			_, _, err = r.Receive(context.Background(), make([]byte, 4))
			require.ErrorIs(t, err, io.ErrShortBuffer)
			s, err = p.Acquire(context.Background()) // handed back
			require.NoError(t, err)
			require.NoError(t, s.Send(1, []byte("ok")))
			hdr := make([]byte, 4)
			v, n, err := r.Receive(context.Background(), hdr)
			require.NoError(t, err)
			require.Equal(t, "ok", string(hdr[:n]))
			require.NoError(t, v.Release())
		})
	}
}

// TestPoolNoLeaks runs many pools through their whole life with the
// garbage collector off: descriptors and mappings must come back to where
// they were, without finalizers.
func TestPoolNoLeaks(t *testing.T) {
	testutil.NoGC(t)
	cycle := func(typ int) {
		pc, cc := poolConns(t, typ)
		p, err := pool.New(pc, 3, 5000, poolOpts(typ)...)
		require.NoError(t, err)
		r, err := pool.Accept(cc)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		for i := range 5 {
			s, err := p.Acquire(ctx)
			require.NoError(t, err)
			require.NoError(t, s.Send(i, nil))
			v, _, err := r.Receive(ctx, nil)
			require.NoError(t, err)
			if i < 4 {
				require.NoError(t, v.Release())
			}
		}
		cancel()
		require.NoError(t, r.Close())
		require.NoError(t, p.Close())
	}
	for _, st := range poolFlavors {
		cycle(st.Type) // warm up
	}
	before := testutil.Snap(t)
	p, r := newPoolPair(t, unix.SOCK_SEQPACKET, 2, 100)
	require.Equal(t, before.MemfdMaps+2, testutil.CountMemfdMaps(t), "the count sees pool mappings")
	require.NoError(t, p.Close())
	require.NoError(t, r.Close())
	for range 200 {
		for _, st := range poolFlavors {
			cycle(st.Type)
		}
	}
	testutil.RequireFlat(t, before, "descriptors leaked; memfd mappings leaked")
}

// TestPoolZeroAllocs measures the steady state in one process: Acquire,
// fill, Send, Receive, Release allocate nothing, with a plain or a
// cancellable context, over both socket types, with and without waiting.
func TestPoolZeroAllocs(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			p, r := newPoolPair(t, st.Type, 2, 4096)
			hdr := make([]byte, 16)
			out := []byte("header")
			cctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			for _, ctx := range []context.Context{context.Background(), cctx} {
				allocs := testing.AllocsPerRun(1000, func() {
					s, err := p.Acquire(ctx)
					if err != nil {
						panic(err)
					}
					s.Bytes()[0] = 1
					if err := s.Send(4096, out); err != nil {
						panic(err)
					}
					v, _, err := r.Receive(ctx, hdr)
					if err != nil {
						panic(err)
					}
					if err := v.Release(); err != nil {
						panic(err)
					}
				})
				require.Zero(t, allocs, "allocations per message")
			}

			// Two messages at a time: the first release is held back
			// (a message waits) and goes with the second.
			allocs := testing.AllocsPerRun(1000, func() {
				for range 2 {
					s, err := p.Acquire(cctx)
					if err != nil {
						panic(err)
					}
					if err := s.Send(1, out); err != nil {
						panic(err)
					}
				}
				for range 2 {
					v, _, err := r.Receive(cctx, hdr)
					if err != nil {
						panic(err)
					}
					if err := v.Release(); err != nil {
						panic(err)
					}
				}
			})
			require.Zero(t, allocs, "allocations per message with releases held back")

			// With back-pressure: the producer waits for each release,
			// which a consumer goroutine sends while it blocks.
			done := make(chan struct{})
			defer close(done)
			go func() {
				for {
					v, _, err := r.Receive(cctx, hdr)
					if err != nil {
						return
					}
					select {
					case <-done:
						return
					default:
					}
					v.Release()
				}
			}()
			allocs = testing.AllocsPerRun(1000, func() {
				s, err := p.Acquire(cctx)
				if err != nil {
					panic(err)
				}
				if err := s.Send(1, nil); err != nil {
					panic(err)
				}
			})
			require.Zero(t, allocs, "allocations per message under back-pressure")
			cancel()
		})
	}
}

// --- hostile peers ---

// rawPoolMemfd makes a memfd of size bytes with seals, as *os.File.
func rawPoolMemfd(t testing.TB, size int, seals memfd.Seals) *os.File {
	t.Helper()
	fd, err := unix.MemfdCreate("hostile-pool", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	require.NoError(t, err)
	f := os.NewFile(uintptr(fd), "hostile-pool")
	t.Cleanup(func() { f.Close() })
	require.NoError(t, f.Truncate(int64(size)))
	if seals != 0 {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, int(seals))
		require.NoError(t, err)
	}
	return f
}

func poolHello(slots, maxHeader, slotSize, stride int) []byte {
	return poolHello64(slots, maxHeader, uint64(slotSize), uint64(stride))
}

// poolHello64 is poolHello with sizes an int may not hold (32-bit ports).
func poolHello64(slots, maxHeader int, slotSize, stride uint64) []byte {
	b := []byte("sbpool\x00\x01")
	b = binary.LittleEndian.AppendUint32(b, uint32(slots))
	b = binary.LittleEndian.AppendUint32(b, uint32(maxHeader))
	b = binary.LittleEndian.AppendUint64(b, slotSize)
	return binary.LittleEndian.AppendUint64(b, stride)
}

func poolRecord(kind byte, slot, gen, length uint32) []byte {
	b := []byte{kind, 0, 0, 0}
	b = binary.LittleEndian.AppendUint32(b, slot)
	b = binary.LittleEndian.AppendUint32(b, gen)
	return binary.LittleEndian.AppendUint32(b, length)
}

const poolSeals = memfd.SealShrink | memfd.SealGrow | memfd.SealFutureWrite

func TestPoolAcceptRefuses(t *testing.T) {
	pg := page
	pipeR, pipeW, err := os.Pipe()
	require.NoError(t, err)
	defer pipeR.Close()
	defer pipeW.Close()
	cases := []struct {
		name  string
		hello []byte
		files func(t *testing.T) []*os.File
		want  error
	}{
		{"no seals", poolHello(2, 0, pg, pg), func(t *testing.T) []*os.File { return []*os.File{rawPoolMemfd(t, 2*pg, 0)} }, sealbuf.ErrNotSealed},
		{"no future_write", poolHello(2, 0, pg, pg), func(t *testing.T) []*os.File {
			return []*os.File{rawPoolMemfd(t, 2*pg, memfd.SealShrink|memfd.SealGrow)}
		}, sealbuf.ErrNotSealed},
		{"no shrink", poolHello(2, 0, pg, pg), func(t *testing.T) []*os.File {
			return []*os.File{rawPoolMemfd(t, 2*pg, memfd.SealGrow|memfd.SealFutureWrite)}
		}, sealbuf.ErrNotSealed},
		{"no grow", poolHello(2, 0, pg, pg), func(t *testing.T) []*os.File {
			return []*os.File{rawPoolMemfd(t, 2*pg, memfd.SealShrink|memfd.SealFutureWrite)}
		}, sealbuf.ErrNotSealed},
		{"a pipe", poolHello(1, 0, pg, pg), func(t *testing.T) []*os.File { return []*os.File{pipeR} }, memfd.ErrNotMemfd},
		{"wrong size", poolHello(3, 0, pg, pg), func(t *testing.T) []*os.File { return []*os.File{rawPoolMemfd(t, 2*pg, poolSeals)} }, pool.ErrProtocol},
		{"no descriptor", poolHello(2, 0, pg, pg), func(t *testing.T) []*os.File { return nil }, pool.ErrProtocol},
		{"two descriptors", poolHello(1, 0, pg, pg), func(t *testing.T) []*os.File {
			return []*os.File{rawPoolMemfd(t, pg, poolSeals), rawPoolMemfd(t, pg, poolSeals)}
		}, pool.ErrProtocol},
		{"bad magic", append([]byte("xx"), poolHello(1, 0, pg, pg)[2:]...), func(t *testing.T) []*os.File { return []*os.File{rawPoolMemfd(t, pg, poolSeals)} }, pool.ErrProtocol},
		{"long hello", append(poolHello(1, 0, pg, pg), 0), func(t *testing.T) []*os.File { return []*os.File{rawPoolMemfd(t, pg, poolSeals)} }, pool.ErrProtocol},
		{"zero slots", poolHello(0, 0, pg, pg), func(t *testing.T) []*os.File { return []*os.File{rawPoolMemfd(t, pg, poolSeals)} }, pool.ErrProtocol},
		{"stride below slot", poolHello(1, 0, 2*pg, pg), func(t *testing.T) []*os.File { return []*os.File{rawPoolMemfd(t, pg, poolSeals)} }, pool.ErrProtocol},
		{"huge", poolHello64(128, 0, 1<<31, 1<<40), func(t *testing.T) []*os.File { return []*os.File{rawPoolMemfd(t, pg, poolSeals)} }, pool.ErrProtocol},
		{"huge header", poolHello(1, 1<<20, pg, pg), func(t *testing.T) []*os.File { return []*os.File{rawPoolMemfd(t, pg, poolSeals)} }, pool.ErrProtocol},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pc, cc := poolConns(t, unix.SOCK_SEQPACKET)
			files := tc.files(t)
			fds := testutil.CountFDs(t)
			require.NoError(t, pc.SendFiles(tc.hello, files...))
			r, err := pool.Accept(cc)
			require.Nil(t, r)
			require.ErrorIs(t, err, tc.want)
			t.Log(err)
			require.Equal(t, fds, testutil.CountFDs(t), "every received descriptor is closed")
		})
	}
	t.Run("too large", func(t *testing.T) {
		pc, cc := poolConns(t, unix.SOCK_SEQPACKET)
		require.NoError(t, pc.SendFiles(poolHello(2, 0, pg, pg), rawPoolMemfd(t, 2*pg, poolSeals)))
		_, err := pool.Accept(cc, pool.WithMaxSize(int64(pg)))
		require.ErrorIs(t, err, sealbuf.ErrTooLarge)
		a, b := testutil.UnixPair(t, unix.SOCK_SEQPACKET)
		pc, cc = sealbuf.NewConn(a), sealbuf.NewConn(b, sealbuf.WithReceivePolicy(sealbuf.MaxSize(int64(pg))))
		require.NoError(t, pc.SendFiles(poolHello(2, 0, pg, pg), rawPoolMemfd(t, 2*pg, poolSeals)))
		_, err = pool.Accept(cc)
		require.ErrorIs(t, err, sealbuf.ErrTooLarge)
	})
	t.Run("accepted", func(t *testing.T) { // the same memfd, properly sealed, is fine
		pc, cc := poolConns(t, unix.SOCK_SEQPACKET)
		require.NoError(t, pc.SendFiles(poolHello(2, 0, pg, pg), rawPoolMemfd(t, 2*pg, poolSeals)))
		r, err := pool.Accept(cc)
		require.NoError(t, err)
		require.NoError(t, r.Close())
	})
}

// hostileProducer is a raw producer: a properly sealed pool memfd, and the
// other end of the consumer's Conn to write forged messages on.
func hostileProducer(t *testing.T, typ, slots, slotSize int) (*sealbuf.Conn, *pool.Reader) {
	t.Helper()
	pc, cc := poolConns(t, typ)
	require.NoError(t, pc.SendFiles(poolHello(slots, 64, slotSize, page), rawPoolMemfd(t, slots*page, poolSeals)))
	r, err := pool.Accept(cc)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	return pc, r
}

func TestPoolHostileProducer(t *testing.T) {
	for _, st := range testutil.SockTypes {
		t.Run(st.Name, func(t *testing.T) {
			pc, r := hostileProducer(t, st.Type, 2, 100)
			ctx := context.Background()
			hdr := make([]byte, 64)
			receive := func() (pool.View, error) {
				v, _, err := r.Receive(ctx, hdr)
				return v, err
			}
			// Every refused message leaves the consumer able to go on.
			refused := func(msg []byte, want error) {
				t.Helper()
				require.NoError(t, pc.Send(msg))
				_, err := receive()
				require.ErrorIs(t, err, pool.ErrProtocol)
				require.ErrorIs(t, err, want)
				t.Log(err)
			}
			refused(poolRecord('M', 2, 1, 1), pool.ErrBadSlot)
			refused(poolRecord('M', 1<<31, 1, 1), pool.ErrBadSlot)
			refused(poolRecord('M', 0, 1, 101), pool.ErrBadLength)
			// The slot of a bad length is handed straight back.
			hb := make([]byte, 64)
			n, _, err := pc.Receive(hb)
			require.NoError(t, err)
			require.Equal(t, poolRecord('R', 0, 1, 0), hb[:n])

			refused(poolRecord('M', 0, 1, 1), pool.ErrStaleGeneration) // generation 1 was used
			refused(poolRecord('R', 0, 2, 1), pool.ErrProtocol)        // wrong kind
			refused([]byte("M\x01\x00\x00"+strings.Repeat("\x00", 12)), pool.ErrProtocol)
			refused([]byte("short"), pool.ErrProtocol)

			require.NoError(t, pc.Send(poolRecord('M', 0, 2, 100)))
			v, err := receive()
			require.NoError(t, err)
			require.Len(t, v.Bytes(), 100)
			refused(poolRecord('M', 0, 3, 1), pool.ErrSlotBusy) // we still hold slot 0
			refused(poolRecord('M', 0, 2, 1), pool.ErrSlotBusy)

			// Descriptors attached to a message are closed and refused.
			extra := rawPoolMemfd(t, page, 0)
			fds := testutil.CountFDs(t)
			require.NoError(t, pc.SendFiles(poolRecord('M', 1, 1, 1), extra, extra))
			_, err = receive()
			require.ErrorIs(t, err, pool.ErrProtocol)
			require.Equal(t, fds, testutil.CountFDs(t))
			n, _, err = pc.Receive(hb) // its slot came back
			require.NoError(t, err)
			require.Equal(t, poolRecord('R', 1, 1, 0), hb[:n])

			// And still: a good message works.
			require.NoError(t, v.Release())
			n, _, err = pc.Receive(hb)
			require.NoError(t, err)
			require.Equal(t, poolRecord('R', 0, 2, 0), hb[:n])
			require.NoError(t, pc.Send(append(poolRecord('M', 1, 7, 5), "hdr"...)))
			v, hn, err := r.Receive(ctx, hdr)
			require.NoError(t, err)
			require.Equal(t, "hdr", string(hdr[:hn]))
			require.Equal(t, 5, v.Len())
			require.NoError(t, v.Release())
		})
	}
}

// TestPoolHostileStreamFrames: on a stream, a frame too long to be a pool
// message is skipped, and garbage that breaks the framing is reported.
func TestPoolHostileStreamFrames(t *testing.T) {
	pc, r := hostileProducer(t, unix.SOCK_STREAM, 1, 100)
	ctx := context.Background()
	sent := make(chan error, 1)
	go func() {
		err := pc.Send(make([]byte, 1<<20))
		if err == nil {
			err = pc.Send(poolRecord('M', 0, 1, 3))
		}
		sent <- err
	}()
	_, _, err := r.Receive(ctx, nil)
	require.ErrorIs(t, err, pool.ErrProtocol)
	v, _, err := r.Receive(ctx, nil)
	require.NoError(t, err, "the long frame was skipped")
	require.NoError(t, v.Release())
	require.NoError(t, <-sent)

	a, b := testutil.UnixPair(t, unix.SOCK_STREAM)
	pc = sealbuf.NewConn(a)
	require.NoError(t, pc.SendFiles(poolHello(1, 0, 10, page), rawPoolMemfd(t, page, poolSeals)))
	r2, err := pool.Accept(sealbuf.NewConn(b))
	require.NoError(t, err)
	defer r2.Close()
	_, err = a.Write([]byte("garbage!garbage!garbage!"))
	require.NoError(t, err)
	_, _, err = r2.Receive(ctx, nil)
	require.ErrorIs(t, err, pool.ErrProtocol)
	// Said once; from then on Receive waits for the hang-up (it does not
	// spin returning ErrProtocol) and reports it as io.EOF.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, _, err = r2.Receive(short, nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	_, err = a.Write([]byte("more garbage"))
	require.NoError(t, err)
	require.NoError(t, a.Close())
	_, _, err = r2.Receive(ctx, nil)
	require.ErrorIs(t, err, io.EOF)
}

// hostileConsumer accepts p's hello by hand and returns the raw Conn.
func hostileConsumer(t *testing.T, typ, slots int) (*pool.Writer, *sealbuf.Conn) {
	t.Helper()
	pc, cc := poolConns(t, typ)
	p, err := pool.New(pc, slots, 64)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	hb := make([]byte, 64)
	_, files, err := cc.ReceiveFiles(hb)
	require.NoError(t, err)
	for _, f := range files {
		f.Close()
	}
	return p, cc
}

func TestPoolHostileConsumer(t *testing.T) {
	for _, st := range testutil.SockTypes {
		t.Run(st.Name, func(t *testing.T) {
			p, cc := hostileConsumer(t, st.Type, 2)
			ctx := context.Background()
			var sent []pool.Slot
			for range 2 {
				s, err := p.Acquire(ctx)
				require.NoError(t, err)
				require.NoError(t, s.Send(1, nil))
				sent = append(sent, s)
			}
			// With every slot in flight, Acquire reads the releases and
			// reports each forged one.
			forged := func(msg []byte, want error) {
				t.Helper()
				require.NoError(t, cc.Send(msg))
				tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				_, err := p.Acquire(tctx)
				require.ErrorIs(t, err, pool.ErrProtocol)
				require.ErrorIs(t, err, want)
				t.Log(err)
				require.Zero(t, p.Free())
			}
			s0, s1 := sent[0], sent[1]
			forged(poolRecord('R', 2, 1, 0), pool.ErrBadSlot)
			forged(poolRecord('R', 0xffffffff, 1, 0), pool.ErrBadSlot)
			forged(poolRecord('R', uint32(s0.Index()), s0.Generation()+1, 0), pool.ErrStaleGeneration)
			forged(poolRecord('R', uint32(s0.Index()), s0.Generation()-1, 0), pool.ErrStaleGeneration)
			forged(poolRecord('R', uint32(s0.Index()), s0.Generation(), 5), pool.ErrProtocol)
			forged(poolRecord('M', uint32(s0.Index()), s0.Generation(), 0), pool.ErrProtocol)
			forged([]byte("short"), pool.ErrProtocol)
			f := rawPoolMemfd(t, page, 0)
			fds := testutil.CountFDs(t)
			require.NoError(t, cc.SendFiles(poolRecord('R', 9, 9, 0), f))
			_, err := p.Acquire(ctx)
			require.ErrorIs(t, err, pool.ErrProtocol)
			require.Equal(t, fds, testutil.CountFDs(t), "the attached descriptor is closed")

			// A real release; then a release of the slot while the
			// producer holds it again (not in flight).
			idx0, idx1 := uint32(s0.Index()), uint32(s1.Index())
			require.NoError(t, cc.Send(poolRecord('R', idx0, s0.Generation(), 0)))
			s, err := p.Acquire(ctx)
			require.NoError(t, err)
			require.Equal(t, s0.Index(), s.Index())
			forged(poolRecord('R', idx0, s.Generation(), 0), pool.ErrDoubleRelease)
			forged(poolRecord('R', idx0, s0.Generation(), 0), pool.ErrStaleGeneration)

			// The same release twice in a row.
			require.NoError(t, cc.Send(poolRecord('R', idx1, s1.Generation(), 0)))
			require.NoError(t, cc.Send(poolRecord('R', idx1, s1.Generation(), 0)))
			_, err = p.Acquire(ctx)
			require.ErrorIs(t, err, pool.ErrDoubleRelease)
			require.Equal(t, 1, p.Free(), "the first release counted")
			s2, err := p.TryAcquire()
			require.NoError(t, err)

			// Both slots released in one message of two records.
			require.NoError(t, s.Send(1, nil))
			require.NoError(t, s2.Send(1, nil))
			require.NoError(t, cc.Send(append(poolRecord('R', idx0, s.Generation(), 0), poolRecord('R', idx1, s2.Generation(), 0)...)))
			for range 2 {
				s, err := p.Acquire(ctx)
				require.NoError(t, err)
				require.NoError(t, s.Discard())
			}
			require.Equal(t, 2, p.Free())
		})
	}
}

// TestPoolProducerGoneMessagesFirst: a producer that closes with releases
// unread resets the socket; the messages it sent before still reach the
// consumer, in order, before end of file.
func TestPoolProducerGoneMessagesFirst(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			p, r := newPoolPair(t, st.Type, 3, 64)
			ctx := context.Background()
			// Every slot acquired first: no later Acquire reads the
			// release the consumer sends below.
			var slots []pool.Slot
			for range 3 {
				s, err := p.Acquire(ctx)
				require.NoError(t, err)
				slots = append(slots, s)
			}
			send := func(i int, msg string) {
				n := copy(slots[i].Bytes(), msg)
				require.NoError(t, slots[i].Send(n, nil))
			}
			send(0, "one")
			v, _, err := r.Receive(ctx, nil)
			require.NoError(t, err)
			require.Equal(t, "one", string(v.Bytes()))
			require.NoError(t, v.Release())
			require.NoError(t, r.Flush()) // a release the producer never reads
			send(1, "two")
			send(2, "three")
			require.NoError(t, p.Close())
			for _, want := range []string{"two", "three"} {
				v, _, err := r.Receive(ctx, nil)
				require.NoError(t, err, "message %q comes before end of file", want)
				require.Equal(t, want, string(v.Bytes()))
				require.NoError(t, v.Release())
			}
			_, _, err = r.Receive(ctx, nil)
			require.ErrorIs(t, err, io.EOF)
		})
	}
}
