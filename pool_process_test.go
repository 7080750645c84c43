//go:build linux

package sealbuf_test

import (
	"context"
	"encoding/binary"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
)

// TestPoolAcrossProcesses hands messages of every length to a consumer in
// another process, which checks each byte and header.
func TestPoolAcrossProcesses(t *testing.T) {
	for _, st := range poolSockTypes {
		t.Run(st.name, func(t *testing.T) {
			const slots, size, count = 4, 3*4096 + 5, 3000
			fds, maps := poolCountFDs(t), poolCountMaps(t)
			sock, child := startPoolChild(t, "consume", "", st.typ)
			p, err := sealbuf.NewPool(poolConnOf(t, sock), slots, size, sealbuf.WithPoolMaxHeader(16))
			require.NoError(t, err)
			var hdr [16]byte
			for seq := range count {
				s, err := p.Acquire(context.Background())
				require.NoError(t, err)
				n := (seq * 7919) % (size + 1)
				poolFill(s.Bytes()[:n], seq)
				binary.LittleEndian.PutUint64(hdr[:], uint64(seq))
				binary.LittleEndian.PutUint64(hdr[8:], uint64(n))
				require.NoError(t, s.Send(n, hdr[:]))
			}
			for range slots { // every slot comes back
				s, err := p.Acquire(context.Background())
				require.NoError(t, err)
				require.NoError(t, s.Discard())
			}
			require.NoError(t, p.Close())
			require.NoError(t, child.Wait())
			require.Equal(t, fds, poolCountFDs(t), "descriptors leaked")
			require.Equal(t, maps, poolCountMaps(t), "memfd mappings leaked")
		})
	}
}

// TestPoolConsumerDies: a consumer killed while it holds slots (and with
// more queued for it) gives every slot back, and the producer learns it
// is gone.
func TestPoolConsumerDies(t *testing.T) {
	for _, st := range poolSockTypes {
		t.Run(st.name, func(t *testing.T) {
			const slots, held = 5, 3
			sock, child := startPoolChild(t, "die-holding", strconv.Itoa(held), st.typ)
			p, err := sealbuf.NewPool(poolConnOf(t, sock), slots, 4096)
			require.NoError(t, err)
			defer p.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for range slots {
				s, err := p.Acquire(ctx)
				require.NoError(t, err)
				require.NoError(t, s.Send(1, nil))
			}
			_, err = p.Acquire(ctx) // blocks until the child dies
			require.ErrorIs(t, err, io.EOF)
			require.Equal(t, slots, p.Free(), "every slot is back")
			_, err = p.TryAcquire()
			require.ErrorIs(t, err, io.EOF)
			err = child.Wait()
			require.ErrorContains(t, err, "killed")
		})
	}
}

// TestPoolWithReleaseBatch: releases wait until the batch is full or the
// consumer is about to wait for a message, and Flush sends them at once.
func TestPoolWithReleaseBatch(t *testing.T) {
	for _, st := range poolSockTypes {
		t.Run(st.name, func(t *testing.T) {
			const slots = 6
			pc, cc := poolConns(t, st.typ)
			p, err := sealbuf.NewPool(pc, slots, 64)
			require.NoError(t, err)
			defer p.Close()
			r, err := sealbuf.AcceptPool(cc, sealbuf.WithReleaseBatch(4))
			require.NoError(t, err)
			defer r.Close()
			ctx := context.Background()
			send := func(k int) {
				for range k {
					s, err := p.Acquire(ctx)
					require.NoError(t, err)
					require.NoError(t, s.Send(1, nil))
				}
			}
			receiveRelease := func(k int) {
				for range k {
					v, _, err := r.Receive(ctx, nil)
					require.NoError(t, err)
					require.NoError(t, v.Release())
				}
			}
			requireFree := func(n int) {
				t.Helper()
				var got []sealbuf.Slot
				for {
					s, err := p.TryAcquire()
					if err != nil {
						require.ErrorIs(t, err, sealbuf.ErrPoolFull)
						break
					}
					got = append(got, s)
				}
				require.Len(t, got, n)
				for _, s := range got {
					require.NoError(t, s.Discard())
				}
			}
			send(slots)
			receiveRelease(3) // held back: fewer than 4
			requireFree(0)
			receiveRelease(1) // the fourth sends all four
			requireFree(4)
			receiveRelease(1)
			requireFree(4)
			require.NoError(t, r.Flush())
			requireFree(5)

			// Receive flushes before it waits.
			v, _, err := r.Receive(ctx, nil) // the sixth message, queued
			require.NoError(t, err)
			require.NoError(t, v.Release())
			got := make(chan error, 1)
			go func() {
				v, _, err := r.Receive(ctx, nil)
				if err == nil {
					err = v.Release()
				}
				got <- err
			}()
			var s []sealbuf.Slot
			for range slots { // succeeds only once the waiting Receive flushed
				x, err := p.Acquire(ctx)
				require.NoError(t, err)
				s = append(s, x)
			}
			require.NoError(t, s[0].Send(1, nil))
			require.NoError(t, <-got)
		})
	}
}

// TestPoolFloor runs the benchmark floor through a few messages, and
// checks it refuses an unsealed pool like AcceptPool.
func TestPoolFloor(t *testing.T) {
	sock, child := startPoolChild(t, "bench-floor", "", unix.SOCK_SEQPACKET)
	f, err := sealbuf.NewPoolFloor(sock, 3, 10000)
	require.NoError(t, err)
	src := make([]byte, 10000)
	for range 1000 {
		require.NoError(t, f.Send(src))
	}
	require.NoError(t, f.Drain())
	require.NoError(t, f.Close())
	require.NoError(t, sock.Close())
	require.NoError(t, child.Wait())

	a, b := poolSocketpair(t, unix.SOCK_SEQPACKET)
	require.NoError(t, sealbuf.NewConn(a).SendFiles(poolHello(1, 0, page, page), rawPoolMemfd(t, page, 0)))
	bf, err := b.File()
	require.NoError(t, err)
	defer bf.Close()
	_, err = sealbuf.AcceptPoolFloor(bf)
	require.ErrorIs(t, err, sealbuf.ErrNotSealed)
}
