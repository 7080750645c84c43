//go:build linux

package bench

import (
	"fmt"
	"os"
	"testing"

	"github.com/sealbuf/sealbuf/internal/handoff"
)

func TestMain(m *testing.M) {
	// The consumer of BenchmarkHandoff is this test binary, re-executed.
	if os.Getenv(handoff.RoleEnv) == handoff.Role {
		os.Exit(handoff.Child())
	}
	os.Exit(m.Run())
}

// handoffModes maps benchmark names to handoff modes, in run order: socket
// first, as every other mode's vs_socket is relative to it.
var handoffModes = []struct{ bench, mode string }{
	{"socket", "socket"},
	{"seqpacket", "seqpacket"},
	{"sealbuf", "sealed"},
	{"floor", "sealed-floor"},
	{"floor-netpoll", "floor-netpoll"},
	{"hugetlb", "sealed-hugetlb"},
	{"prefault", "sealed-prefault"},
	{"mmap-go", "mmap-go"},
	{"pool", "pool"},
	{"pool-netpoll", "pool-netpoll"},
	{"pool-floor", "pool-floor"},
	{"pool-futex-floor", "pool-futex-floor"},
}

var sizes = []int{4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

func handoffOptions() handoff.Options {
	if os.Getenv("SEALBUF_BENCH_PIN") == "none" {
		return handoff.Options{CPU: -1}
	}
	return handoff.Options{CPU: handoff.PickCPU()}
}

// BenchmarkHandoff hands one message at a time from this process to a
// child process and waits for its ack; both write or read every byte. ns/op
// is one message, both sides included; allocs/op counts the producer only.
// vs_socket is socket's ns/op at the same size divided by this mode's (run
// the socket sub-benchmarks too, or it is missing).
//
// sealbuf is the library (FromBytes or New+fill+Seal, whichever is faster
// at the size; Conn over unixpacket; Receive, Bytes, Close), floor the same
// steps in raw calls on blocking sockets, floor-netpoll the floor waiting
// through Go's netpoller as sealbuf.Conn does, hugetlb the library with
// huge pages, prefault the sealed-prefault mode (memfds populated ahead by
// handoff.Reserve, sent raw with Conn.SendFiles to the library's Receive,
// paced: each message once the consumer is idle), mmap-go a
// /dev/shm file per message mapped with mmap-go, pool one reused slot of a
// pool.Writer (the release is the ack; Conns with WithWait),
// pool-netpoll the same without it, pool-floor the same in raw calls,
// pool-futex-floor that with a futex in shared memory instead of the socket.
func BenchmarkHandoff(b *testing.B) {
	opt := handoffOptions()
	if opt.CPU >= 0 {
		unpin, err := handoff.PinProcess(opt.CPU)
		if err != nil {
			b.Fatal(err)
		}
		defer unpin()
	}
	socketNs := map[int]float64{}
	restoreHuge := func() {}
	defer func() { restoreHuge() }()
	hugeErr := error(nil)
	hugeDone := false
	for _, hm := range handoffModes {
		mode, ok := handoff.Lookup(hm.mode)
		if !ok {
			b.Fatalf("mode %s not registered", hm.mode)
		}
		for _, size := range sizes {
			b.Run(hm.bench+"/"+sizeName(size), func(b *testing.B) {
				if mode.Supports != nil {
					if err := mode.Supports(size); err != nil {
						b.Skip(err)
					}
				}
				if hm.mode == "sealed-hugetlb" {
					if !hugeDone {
						hugeDone = true
						restoreHuge, hugeErr = handoff.EnsureHugePages(2*sizes[len(sizes)-1]/handoff.HugePageSize(), os.Stderr)
					}
					if hugeErr != nil {
						b.Skip(hugeErr)
					}
				}
				s, err := handoff.Start(mode, size, opt)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				// Warm up: page cache, socket buffers, the consumer's first faults.
				if err := s.Run(3); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				if s.Paced() {
					// Latency with the producer not saturated: each
					// message is timed alone, after an untimed Ready.
					for range b.N {
						b.StopTimer()
						if err := s.Ready(); err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
						if err := s.Run(1); err != nil {
							b.Fatal(err)
						}
					}
				} else if err := s.Run(b.N); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				if hm.mode == "socket" {
					socketNs[size] = ns
				}
				if ref, ok := socketNs[size]; ok {
					b.ReportMetric(ref/ns, "vs_socket")
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}
