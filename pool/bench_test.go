//go:build linux

package pool_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/internal/handoff"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/pool"
)

// BenchmarkPool measures one message handed from this process to a
// consumer child process (this test binary run again), as throughput:
// the producer copies size bytes from a source buffer into the transport
// for every message and never waits for the consumer except when the
// transport is full; the clock stops once the consumer has taken
// everything. The consumer reads the first and the last byte of each
// message.
//
//	pool        Writer → Reader over unixpacket: copy into a slot, a
//	            16-byte message, a 16-byte release back (several in one
//	            message when the consumer is behind)
//	pool-futex  the same pool.WithFutex: records through the shared ring,
//	            futex wake-ups
//	pool-floor  handoff.PoolFloor: the pool's protocol with raw blocking
//	            read and write, no checks, no batching: the floor of slot
//	            reuse
//	socket      write(2) of the bytes into an AF_UNIX stream socket and
//	            read(2) into a buffer on the other side: the copy users
//	            would otherwise make
//	memcpy      the copy into a slot alone, in one process, no consumer:
//	            what no transport of these bytes can beat
//
// Pools and floors have poolBenchSlots(size) slots. Besides ns/op, every
// mode reports cpu-ns/op, the CPU time of both processes per message,
// which moves much less than ns/op when other work shares the machine.
//
// go test -run '^$' -bench BenchmarkPool -benchtime 2s -count 5 .
func BenchmarkPool(b *testing.B) {
	sizes := []struct {
		name string
		size int
	}{{"4KiB", 4 << 10}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}, {"16MiB", 16 << 20}, {"64MiB", 64 << 20}}
	modes := []struct {
		name string
		run  func(b *testing.B, src []byte)
	}{
		{"pool", func(b *testing.B, src []byte) { benchPool(b, src) }},
		{"pool-futex", func(b *testing.B, src []byte) { benchPool(b, src, pool.WithFutex()) }},
		{"pool-floor", benchPoolFloor},
		{"socket", benchPoolSocket},
		{"memcpy", benchPoolMemcpy},
	}
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			for _, sz := range sizes {
				b.Run(sz.name, func(b *testing.B) {
					src := make([]byte, sz.size)
					poolFill(src, 1)
					b.SetBytes(int64(sz.size))
					b.ReportAllocs()
					m.run(b, src)
				})
			}
		})
	}
}

// poolBenchSlots is the number of slots of the pools and floors: 1 MiB
// worth, 4 to 64 slots, so that small messages have a pipeline a few
// times as deep as a socket buffer (which holds about 200 KiB) and large
// ones a slot being filled while others are read.
func poolBenchSlots(size int) int { return max(4, min(64, (1<<20)/size)) }

func benchPool(b *testing.B, src []byte, opts ...pool.Option) {
	sock, cmd := startPoolChild(b, "bench-pool", "", unix.SOCK_SEQPACKET)
	slots := poolBenchSlots(len(src))
	p, err := pool.New(poolConnOf(b, sock), slots, len(src), opts...)
	require.NoError(b, err)
	ctx := context.Background()
	send := func() {
		s, err := p.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		copy(s.Bytes(), src)
		if err := s.Send(len(src), nil); err != nil {
			b.Fatal(err)
		}
	}
	drain := func() {
		held := make([]pool.Slot, slots)
		for i := range held {
			var err error
			held[i], err = p.Acquire(ctx)
			require.NoError(b, err)
		}
		for _, s := range held {
			require.NoError(b, s.Discard())
		}
	}
	for range 2 * slots { // warm up: the consumer has mapped the pool
		send()
	}
	drain()
	b.ResetTimer()
	cpu0 := testutil.ProcessCPU()
	for range b.N {
		send()
	}
	drain()
	b.StopTimer()
	cpu := testutil.ProcessCPU() - cpu0
	require.NoError(b, p.Close())
	require.NoError(b, cmd.Wait())
	reportPoolCPU(b, cpu+poolChildCPU(cmd))
}

func benchPoolFloor(b *testing.B, src []byte) {
	sock, cmd := startPoolChild(b, "bench-floor", "", unix.SOCK_SEQPACKET)
	slots := poolBenchSlots(len(src))
	f, err := handoff.NewPoolFloor(sock, slots, len(src))
	require.NoError(b, err)
	send := func() {
		s, err := f.Acquire()
		if err != nil {
			b.Fatal(err)
		}
		copy(s, src)
		if err := f.Send(len(src)); err != nil {
			b.Fatal(err)
		}
	}
	for range 2 * slots {
		send()
	}
	require.NoError(b, f.Drain())
	b.ResetTimer()
	cpu0 := testutil.ProcessCPU()
	for range b.N {
		send()
	}
	require.NoError(b, f.Drain())
	b.StopTimer()
	cpu := testutil.ProcessCPU() - cpu0
	require.NoError(b, f.Close())
	require.NoError(b, sock.Close())
	require.NoError(b, cmd.Wait())
	reportPoolCPU(b, cpu+poolChildCPU(cmd))
}

func benchPoolSocket(b *testing.B, src []byte) {
	sock, cmd := startPoolChild(b, "bench-socket", strconv.Itoa(len(src)), unix.SOCK_STREAM)
	defer sock.Close()
	_, err := sock.Write(src) // warm up
	require.NoError(b, err)
	b.ResetTimer()
	cpu0 := testutil.ProcessCPU()
	for range b.N {
		if _, err := sock.Write(src); err != nil {
			b.Fatal(err)
		}
	}
	benchSocketDone(b, sock, cmd)
	b.StopTimer()
	reportPoolCPU(b, testutil.ProcessCPU()-cpu0+poolChildCPU(cmd))
}

// reportPoolCPU reports the CPU time both processes spent per message:
// unlike ns/op it hardly moves when other work shares the machine.
func reportPoolCPU(b *testing.B, cpu time.Duration) {
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// benchSocketDone shuts the socket down for writing and waits for the
// child's acknowledgement that it read everything.
func benchSocketDone(b *testing.B, sock *os.File, cmd *testutil.Child) {
	rc, err := sock.SyscallConn()
	require.NoError(b, err)
	var serr error
	require.NoError(b, rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_WR) }))
	require.NoError(b, serr)
	var ack [1]byte
	_, err = sock.Read(ack[:])
	require.NoError(b, err)
	b.StopTimer()
	require.NoError(b, cmd.Wait())
}

// benchPoolMemcpy copies into the slots of a pool with no consumer: the
// cost of the bytes alone.
func benchPoolMemcpy(b *testing.B, src []byte) {
	pc, _ := poolConns(b, unix.SOCK_SEQPACKET)
	slots := poolBenchSlots(len(src))
	p, err := pool.New(pc, slots, len(src))
	require.NoError(b, err)
	defer p.Close()
	mem := make([][]byte, slots)
	for i := range mem {
		s, err := p.Acquire(context.Background())
		require.NoError(b, err)
		mem[i] = s.Bytes()
		copy(mem[i], src)
	}
	b.ResetTimer()
	cpu0 := testutil.ProcessCPU()
	for i := range b.N {
		copy(mem[i%slots], src)
	}
	b.StopTimer()
	reportPoolCPU(b, testutil.ProcessCPU()-cpu0)
}
