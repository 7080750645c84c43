//go:build linux

package pool_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
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

// The futex pool's ring, as the wire format (pool_ring.go, docs/pool.md)
// lays it out, for raw peers that write it by hand.
const (
	ringMsgHead   = 0
	ringProdState = 64
	ringRelHead   = 128
	ringConsState = 192
	ringRelOff    = 256
)

// ringLayoutOf returns the ring's size, message entry size and message
// ring offset for slots slots and maxHeader-byte headers.
func ringLayoutOf(slots, maxHeader int) (size, entry, msgOff int) {
	entry = (16 + 4 + maxHeader + 63) &^ 63
	msgOff = (ringRelOff + slots*16 + 63) &^ 63
	size = (msgOff + slots*entry + page - 1) &^ (page - 1)
	return
}

func poolHelloRing(slots, maxHeader, slotSize, stride int) []byte {
	return append([]byte("sbpool\x00\x02"), poolHello(slots, maxHeader, slotSize, stride)[8:]...)
}

// rawRing is a raw peer's writable mapping of a ring.
type rawRing struct {
	mem    []byte
	slots  int
	entry  int
	msgOff int
	pub    uint32 // entries this raw peer published
}

func mapRawRing(t testing.TB, f *os.File, slots, maxHeader int) *rawRing {
	t.Helper()
	size, entry, msgOff := ringLayoutOf(slots, maxHeader)
	rc, err := f.SyscallConn()
	require.NoError(t, err)
	var mem []byte
	require.NoError(t, rc.Control(func(fd uintptr) {
		mem, err = unix.Mmap(int(fd), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	}))
	require.NoError(t, err)
	t.Cleanup(func() { unix.Munmap(mem) })
	return &rawRing{mem: mem, slots: slots, entry: entry, msgOff: msgOff}
}

func (r *rawRing) word(off int) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(&r.mem[off])) }

// message writes a message entry (record, header length, header) and
// publishes it.
func (r *rawRing) message(rec []byte, hlen uint32, header string) {
	e := r.mem[r.msgOff+int(r.pub%uint32(r.slots))*r.entry:]
	copy(e, rec)
	binary.LittleEndian.PutUint32(e[16:], hlen)
	copy(e[20:], header)
	r.pub++
	r.word(ringMsgHead).Store(r.pub)
}

// release writes a release entry and publishes it.
func (r *rawRing) release(rec []byte) {
	copy(r.mem[ringRelOff+int(r.pub%uint32(r.slots))*16:], rec)
	r.pub++
	r.word(ringRelHead).Store(r.pub)
}

// releaseRecord returns the consumer's release entry k.
func (r *rawRing) releaseRecord(k uint32) []byte {
	off := ringRelOff + int(k%uint32(r.slots))*16
	return append([]byte(nil), r.mem[off:off+16]...)
}

// rawRingMemfd makes a ring memfd of the right size for slots and
// maxHeader, with seals.
func rawRingMemfd(t testing.TB, slots, maxHeader int, seals memfd.Seals) *os.File {
	size, _, _ := ringLayoutOf(slots, maxHeader)
	return rawPoolMemfd(t, size, seals)
}

const ringSeals = memfd.SealShrink | memfd.SealGrow | memfd.SealSeal

func TestPoolFutexAcceptRefuses(t *testing.T) {
	pg := page
	pipeR, pipeW, err := os.Pipe()
	require.NoError(t, err)
	defer pipeR.Close()
	defer pipeW.Close()
	hello := poolHelloRing(2, 64, pg, pg)
	slots := func(t *testing.T) *os.File { return rawPoolMemfd(t, 2*pg, poolSeals) }
	cases := []struct {
		name  string
		files func(t *testing.T) []*os.File
		want  error
	}{
		{"no ring", func(t *testing.T) []*os.File { return []*os.File{slots(t)} }, pool.ErrProtocol},
		{"three descriptors", func(t *testing.T) []*os.File {
			return []*os.File{slots(t), rawRingMemfd(t, 2, 64, ringSeals), rawRingMemfd(t, 2, 64, ringSeals)}
		}, pool.ErrProtocol},
		{"ring is a pipe", func(t *testing.T) []*os.File { return []*os.File{slots(t), pipeR} }, memfd.ErrNotMemfd},
		{"ring not sealed", func(t *testing.T) []*os.File { return []*os.File{slots(t), rawRingMemfd(t, 2, 64, 0)} }, sealbuf.ErrNotSealed},
		{"ring can shrink", func(t *testing.T) []*os.File {
			return []*os.File{slots(t), rawRingMemfd(t, 2, 64, memfd.SealGrow)}
		}, sealbuf.ErrNotSealed},
		{"ring sealed against writes", func(t *testing.T) []*os.File {
			return []*os.File{slots(t), rawRingMemfd(t, 2, 64, memfd.SealShrink|memfd.SealGrow|memfd.SealFutureWrite)}
		}, pool.ErrProtocol},
		{"ring too small", func(t *testing.T) []*os.File { return []*os.File{slots(t), rawPoolMemfd(t, page/2, ringSeals)} }, pool.ErrProtocol},
		{"ring too large", func(t *testing.T) []*os.File { return []*os.File{slots(t), rawRingMemfd(t, 2, 4096, ringSeals)} }, pool.ErrProtocol},
		{"the pool as its own ring", func(t *testing.T) []*os.File { p := slots(t); return []*os.File{p, p} }, pool.ErrProtocol},
		{"pool not sealed", func(t *testing.T) []*os.File {
			return []*os.File{rawPoolMemfd(t, 2*pg, 0), rawRingMemfd(t, 2, 64, ringSeals)}
		}, sealbuf.ErrNotSealed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pc, cc := poolConns(t, unix.SOCK_SEQPACKET)
			files := tc.files(t)
			before := testutil.Snap(t)
			require.NoError(t, pc.SendFiles(hello, files...))
			r, err := pool.Accept(cc)
			require.True(t, r == nil)
			require.ErrorIs(t, err, tc.want)
			t.Log(err)
			testutil.RequireFlat(t, before, "every received descriptor is closed; nothing stays mapped")
		})
	}
	t.Run("accepted", func(t *testing.T) {
		pc, cc := poolConns(t, unix.SOCK_SEQPACKET)
		require.NoError(t, pc.SendFiles(hello, slots(t), rawRingMemfd(t, 2, 64, ringSeals)))
		r, err := pool.Accept(cc)
		require.NoError(t, err)
		require.True(t, r.Futex())
		require.NoError(t, r.Close())
	})
}

// hostileRingProducer is a raw producer of a futex pool: a properly sealed
// pool memfd and ring, the ring mapped writable, and the other end of the
// consumer's Conn.
func hostileRingProducer(t *testing.T, typ, slots, slotSize int) (*sealbuf.Conn, *rawRing, *pool.Reader) {
	t.Helper()
	a, b := testutil.UnixPair(t, typ)
	return hostileRingProducerOn(t, a, b, slots, slotSize)
}

// hostileRingProducerOn is hostileRingProducer on a given socket pair: a
// is the producer's end, b the consumer's.
func hostileRingProducerOn(t *testing.T, a, b *net.UnixConn, slots, slotSize int, opts ...sealbuf.ConnOption) (*sealbuf.Conn, *rawRing, *pool.Reader) {
	t.Helper()
	pc, cc := sealbuf.NewConn(a), sealbuf.NewConn(b, opts...)
	ringFile := rawRingMemfd(t, slots, 64, ringSeals)
	ring := mapRawRing(t, ringFile, slots, 64)
	require.NoError(t, pc.SendFiles(poolHelloRing(slots, 64, slotSize, page), rawPoolMemfd(t, slots*page, poolSeals), ringFile))
	r, err := pool.Accept(cc)
	require.NoError(t, err)
	require.True(t, r.Futex())
	t.Cleanup(func() { r.Close() })
	return pc, ring, r
}

func TestPoolFutexHostileProducer(t *testing.T) {
	for _, st := range testutil.SockTypes {
		t.Run(st.Name, func(t *testing.T) {
			const slots = 2
			pc, ring, r := hostileRingProducer(t, st.Type, slots, 100)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			hdr := make([]byte, 64)
			var released uint32 // release entries the consumer published
			handedBack := func(slot, gen uint32) {
				t.Helper()
				require.Equal(t, released+1, ring.word(ringRelHead).Load(), "a release was published")
				require.Equal(t, poolRecord('R', slot, gen, 0), ring.releaseRecord(released))
				released++
			}
			refused := func(rec []byte, hlen uint32, want error) {
				t.Helper()
				ring.message(rec, hlen, "")
				_, _, err := r.Receive(ctx, hdr)
				require.ErrorIs(t, err, pool.ErrProtocol)
				require.ErrorIs(t, err, want)
				t.Log(err)
			}
			refused(poolRecord('M', slots, 1, 1), 0, pool.ErrBadSlot)
			refused(poolRecord('M', 1<<31, 1, 1), 0, pool.ErrBadSlot)
			refused(poolRecord('M', 0, 1, 101), 0, pool.ErrBadLength)
			handedBack(0, 1)
			refused(poolRecord('M', 0, 1, 1), 0, pool.ErrStaleGeneration)
			refused(poolRecord('R', 0, 2, 1), 0, pool.ErrProtocol)
			refused([]byte("M\x01\x00\x00"+string(make([]byte, 12))), 0, pool.ErrProtocol)
			refused(poolRecord('M', 1, 1, 1), 65, pool.ErrProtocol) // header past the announced 64
			handedBack(1, 1)
			refused(poolRecord('M', 1, 2, 1), 1<<31, pool.ErrProtocol)
			handedBack(1, 2)

			// A head that runs ahead of what the ring can hold.
			ring.pub += slots + 3
			ring.word(ringMsgHead).Store(ring.pub)
			_, _, err := r.Receive(ctx, hdr)
			require.ErrorIs(t, err, pool.ErrProtocol)
			t.Log(err)

			// A good message, with its header, and its release.
			ring.message(poolRecord('M', 0, 5, 100), 3, "hdr")
			v, hn, err := r.Receive(ctx, hdr)
			require.NoError(t, err)
			require.Equal(t, "hdr", string(hdr[:hn]))
			require.Len(t, v.Bytes(), 100)
			refused(poolRecord('M', 0, 6, 1), 0, pool.ErrSlotBusy)
			require.NoError(t, v.Release())
			handedBack(0, 5)

			// A consumer with nothing to read parks on the socket (state
			// 2) after its futex wait; a wake-up record brings it back.
			got := make(chan error, 1)
			go func() {
				v, _, err := r.Receive(ctx, hdr)
				if err == nil {
					err = v.Release()
				}
				got <- err
			}()
			requireWakeRecord(t, ring.word(ringConsState), r, got, func() { ring.message(poolRecord('M', 1, 7, 1), 0, "") }, pc)
			handedBack(1, 7)

			// Anything else on the socket is a violation; descriptors on it
			// are closed.
			require.NoError(t, pc.Send(poolRecord('M', 0, 8, 1)))
			_, _, err = r.Receive(ctx, hdr)
			require.ErrorIs(t, err, pool.ErrProtocol)
			extra := rawPoolMemfd(t, page, 0)
			fds := testutil.CountFDs(t)
			require.NoError(t, pc.SendFiles(poolRecord('W', 0, 0, 0), extra))
			_, _, err = r.Receive(ctx, hdr)
			require.ErrorIs(t, err, pool.ErrProtocol)
			require.Equal(t, fds, testutil.CountFDs(t))

			// Messages published before the hang-up come first, then io.EOF.
			ring.message(poolRecord('M', 0, 9, 2), 0, "")
			require.NoError(t, pc.Close())
			v, _, err = r.Receive(ctx, hdr)
			require.NoError(t, err)
			require.Equal(t, 2, v.Len())
			_, _, err = r.Receive(ctx, hdr)
			require.ErrorIs(t, err, io.EOF)
			require.NoError(t, v.Release(), "a release after the hang-up is harmless")
		})
	}
}

// hostileRingConsumer accepts a futex pool's hello by hand, maps its ring
// and returns the raw Conn.
func hostileRingConsumer(t *testing.T, typ, slots int) (*pool.Writer, *rawRing, *sealbuf.Conn) {
	t.Helper()
	pc, cc := poolConns(t, typ)
	p, err := pool.New(pc, slots, 64, pool.WithFutex(), pool.WithMaxHeader(64))
	require.NoError(t, err)
	require.True(t, p.Futex())
	t.Cleanup(func() { p.Close() })
	hb := make([]byte, 64)
	n, files, err := cc.ReceiveFiles(hb)
	require.NoError(t, err)
	require.Equal(t, poolHelloRing(slots, 64, 64, page), hb[:n])
	require.Len(t, files, 2)
	ring := mapRawRing(t, files[1], slots, 64)
	for _, f := range files {
		f.Close()
	}
	return p, ring, cc
}

func TestPoolFutexHostileConsumer(t *testing.T) {
	for _, st := range testutil.SockTypes {
		t.Run(st.Name, func(t *testing.T) {
			const slots = 2
			p, ring, cc := hostileRingConsumer(t, st.Type, slots)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var sent []pool.Slot
			for i := range slots {
				s, err := p.Acquire(ctx)
				require.NoError(t, err)
				require.NoError(t, s.Send(i+1, []byte("h")))
				sent = append(sent, s)
			}
			require.Equal(t, uint32(slots), ring.word(ringMsgHead).Load(), "both messages are in the ring")
			s0, s1 := sent[0], sent[1]
			idx0, idx1 := uint32(s0.Index()), uint32(s1.Index())
			forged := func(rec []byte, want error) {
				t.Helper()
				ring.release(rec)
				_, err := p.Acquire(ctx)
				require.ErrorIs(t, err, pool.ErrProtocol)
				require.ErrorIs(t, err, want)
				t.Log(err)
				require.Zero(t, p.Free())
			}
			forged(poolRecord('R', slots, 1, 0), pool.ErrBadSlot)
			forged(poolRecord('R', idx0, s0.Generation()+1, 0), pool.ErrStaleGeneration)
			forged(poolRecord('R', idx0, s0.Generation(), 5), pool.ErrProtocol)
			forged(poolRecord('M', idx0, s0.Generation(), 0), pool.ErrProtocol)

			// A head that runs ahead of the ring.
			ring.pub += slots + 1
			ring.word(ringRelHead).Store(ring.pub)
			_, err := p.Acquire(ctx)
			require.ErrorIs(t, err, pool.ErrProtocol)

			// Garbage on the socket; a descriptor on the socket (closed).
			require.NoError(t, cc.Send(poolRecord('R', idx0, s0.Generation(), 0)))
			_, err = p.Acquire(ctx)
			require.ErrorIs(t, err, pool.ErrProtocol)
			extra := rawPoolMemfd(t, page, 0)
			fds := testutil.CountFDs(t)
			require.NoError(t, cc.SendFiles(poolRecord('W', 0, 0, 0), extra))
			_, err = p.Acquire(ctx)
			require.ErrorIs(t, err, pool.ErrProtocol)
			require.Equal(t, fds, testutil.CountFDs(t))

			// A real release, then the same again (a double release).
			ring.release(poolRecord('R', idx0, s0.Generation(), 0))
			s, err := p.Acquire(ctx)
			require.NoError(t, err)
			forged(poolRecord('R', idx0, s0.Generation(), 0), pool.ErrStaleGeneration)
			require.NoError(t, s.Discard())
			s, err = p.Acquire(ctx)
			require.NoError(t, err)
			forged(poolRecord('R', idx0, s.Generation(), 0), pool.ErrDoubleRelease) // acquired, not sent

			// A producer that waits parks on the socket after its futex
			// wait; a release alone does not wake it there, the wake-up
			// record does.
			got := make(chan error, 1)
			go func() {
				s, err := p.Acquire(ctx)
				if err == nil {
					err = s.Discard()
				}
				got <- err
			}()
			requireWakeRecord(t, ring.word(ringProdState), p, got, func() { ring.release(poolRecord('R', idx1, s1.Generation(), 0)) }, cc)

			// Send of the slot in hand, then the hang-up: every slot back.
			require.NoError(t, s.Send(1, nil))
			s, err = p.Acquire(ctx) // the slot the waiter discarded
			require.NoError(t, err)
			require.NoError(t, s.Send(1, nil))
			require.NoError(t, cc.Close())
			_, err = p.Acquire(ctx)
			require.ErrorIs(t, err, io.EOF)
			require.Equal(t, slots, p.Free(), "every slot is back")
			_, err = p.TryAcquire()
			require.ErrorIs(t, err, io.EOF)
		})
	}
}

// TestPoolReceiveRacesClose: Receives queued behind one another while
// Close runs find the pool closed; none touches the unmapped ring (a
// review found they did: a fault, fatal).
func TestPoolReceiveRacesClose(t *testing.T) {
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			for range 50 {
				p, r := newPoolPair(t, st.Type, 2, 64)
				done := make(chan error, 4)
				for range 4 {
					go func() {
						hdr := make([]byte, 64)
						for {
							_, _, err := r.Receive(context.Background(), hdr)
							if errors.Is(err, os.ErrClosed) {
								done <- nil
								return
							}
							if err != nil {
								done <- err
								return
							}
						}
					}()
				}
				time.Sleep(time.Millisecond)
				require.NoError(t, r.Close())
				for range 4 {
					require.NoError(t, <-done)
				}
				require.NoError(t, p.Close())
			}
		})
	}
}

// TestPoolFutexStuckPeer: a producer that says it is parked on the socket
// (state 2) but never reads it. Wake-up records that find the socket full
// are dropped (those queued will wake it), so Release never blocks, and
// Close returns.
func TestPoolFutexStuckPeer(t *testing.T) {
	_, ring, r := hostileRingProducer(t, unix.SOCK_SEQPACKET, 2, 100)
	ring.word(ringProdState).Store(2)
	hdr := make([]byte, 64)
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		for g := uint32(1); g <= 3000; g++ { // far more than the socket holds
			ring.message(poolRecord('M', 0, g, 1), 0, "")
			v, _, err := r.Receive(ctx, hdr)
			if err == nil {
				err = v.Release()
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	requireDone(t, done, 30*time.Second, "Release blocked on a peer that does not read its socket")
	closed := make(chan error, 1)
	go func() { closed <- r.Close() }()
	requireDone(t, closed, 10*time.Second, "Close hangs")
}

// TestPoolCloseEndsBlockedRelease: over the socket, a Release blocked on a
// producer that never reads its releases (documented) ends when the
// consumer closes; Close does not wait for it.
func TestPoolCloseEndsBlockedRelease(t *testing.T) {
	pc, r := hostileProducer(t, unix.SOCK_SEQPACKET, 2, 100)
	defer pc.Close()
	ctx := context.Background()
	blocked := make(chan error, 1)
	go func() {
		for g := uint32(1); ; g++ {
			if err := pc.Send(poolRecord('M', 0, g, 1)); err != nil {
				blocked <- err
				return
			}
			v, _, err := r.Receive(ctx, nil)
			if err == nil {
				err = v.Release()
			}
			if err != nil {
				blocked <- err
				return
			}
		}
	}()
	testutil.WaitBlocked(t, "TestPoolCloseEndsBlockedRelease", "pool.View.Release") // the socket filled up with releases
	select {
	case err := <-blocked:
		t.Fatalf("the exchange ended before Close: %v", err)
	default:
	}
	closed := make(chan error, 1)
	go func() { closed <- r.Close() }()
	requireDone(t, closed, 10*time.Second, "Close waits for a Release blocked on a full socket")
	require.ErrorIs(t, <-blocked, os.ErrClosed)
}

// requireDone waits up to d for done, and fails with what if it does not
// come, or with the error it brings.
func requireDone(t *testing.T, done <-chan error, d time.Duration, what string) {
	t.Helper()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(d):
		t.Fatal(what)
	}
}

// requireWakeRecord checks the wake-up protocol from the side of a library
// wait running in another goroutine on pool (a *Writer or *Reader; its
// result comes on got): once its state word reads 2 and its read is
// blocked on the socket, what publish writes into the ring alone does not
// end the wait; a wake-up record from peer does.
func requireWakeRecord(t *testing.T, state *atomic.Uint32, side any, got <-chan error, publish func(), peer *sealbuf.Conn) {
	t.Helper()
	require.Eventually(t, func() bool { return state.Load() == 2 && pool.Blocked(side) }, 5*time.Second, time.Millisecond)
	publish()
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("the wait ended (%v) without a wake-up record", err)
	default:
	}
	require.NoError(t, peer.Send(poolRecord('W', 0, 0, 0)))
	requireDone(t, got, 10*time.Second, "a wake-up record did not end the wait")
}

// TestPoolFutexBrokenStream: a futex pool over a stream whose framing a
// peer broke still sees the peer's hang-up (the socket carries nothing
// else it needs): Receive returns io.EOF, it does not wait for ever.
func TestPoolFutexBrokenStream(t *testing.T) {
	a, b := testutil.UnixPair(t, unix.SOCK_STREAM)
	pc, _, r := hostileRingProducerOn(t, a, b, 1, 100)
	ctx := context.Background()
	require.NoError(t, pc.Send(poolRecord('W', 0, 0, 0)))
	_, err := a.Write([]byte("garbage!garbage!garbage!"))
	require.NoError(t, err)
	_, _, err = r.Receive(ctx, nil)
	require.ErrorIs(t, err, pool.ErrProtocol)
	require.NoError(t, pc.Close())
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, _, err = r.Receive(tctx, nil)
	require.ErrorIs(t, err, io.EOF)
}

// TestPoolFutexWokenWithNothingNew: a waiter woken in futex(2) with
// nothing new in the ring (what a peer's Close does before it hangs up)
// goes to the socket at once, to learn why; it does not sleep in futex(2)
// again (a review found it did: a peer's Close then took a whole wait to
// be seen). The waiter's state word shows where it is: 1 in futex(2), 2
// on the socket.
func TestPoolFutexWokenWithNothingNew(t *testing.T) {
	a, b := testutil.UnixPair(t, unix.SOCK_SEQPACKET)
	pc, ring, r := hostileRingProducerOn(t, a, b, 1, 100, sealbuf.WithWait(sealbuf.Wait{Kernel: sealbuf.MaxWait}))
	got := make(chan error, 1)
	go func() {
		_, _, err := r.Receive(context.Background(), nil)
		got <- err
	}()
	state := ring.word(ringConsState)
	for range 20 {
		require.Eventually(t, func() bool { return state.Load() == 1 }, 5*time.Second, 10*time.Microsecond)
		// Wake it as a peer does: take the state from 1 to 0, FUTEX_WAKE.
		if !state.CompareAndSwap(1, 0) {
			continue
		}
		_, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(state)), 1, 1, 0, 0, 0)
		require.Zero(t, errno)
		deadline := time.Now().Add(50 * time.Millisecond)
		for time.Now().Before(deadline) {
			require.NotEqual(t, uint32(1), state.Load(), "woken with nothing new, the waiter went back to futex(2)")
		}
		require.Equal(t, uint32(2), state.Load(), "woken with nothing new, the waiter parks on the socket")
		break
	}
	require.NoError(t, pc.Close())
	require.ErrorIs(t, <-got, io.EOF)
}
