//go:build linux

package sealbuf_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/pool"
)

// TestPythonThroughput measures Go -> Python with 8 MiB buffers (not in
// CI: it runs with SEALBUF_PYTHON_BENCH=1), against the same bytes through
// a plain stream socket, the modes interleaved:
//
//   - socket: Go writes each message into a SOCK_STREAM socket, Python
//     reads it into one preallocated bytearray (two copies, the kernel's).
//   - sealed-fresh: Go makes each message a new Sealed (FromBytes: one
//     pwrite into a fresh memfd, then the seals) and sends it; Python's
//     Conn.receive checks and maps it.
//   - sealed-reused: Go sends the same Sealed each time: the handoff alone.
//   - pool: a Pool of 4 slots of 8 MiB; Go copies each message into a
//     slot (one copy), Python reads it in place and releases it.
//
// In every mode Python touches every page of every message (in the socket
// mode the kernel's copy did) and checks its sequence number. The clock
// runs from the first send to Python's "done", Python's start-up excluded.
//
//	SEALBUF_PYTHON_BENCH=1 go test -count=1 -run TestPythonThroughput -v .
func TestPythonThroughput(t *testing.T) {
	if testing.Short() || !pyBenchEnabled() {
		t.Skip("a measurement, not a test: set SEALBUF_PYTHON_BENCH=1")
	}
	const size, count, rounds = 8 << 20, 32, 5
	modes := []string{"socket", "sealed-fresh", "sealed-reused", "pool"}
	mibs := map[string][]float64{}
	for range rounds {
		for _, m := range modes {
			d := pyThroughputRun(t, m, size, count)
			mibs[m] = append(mibs[m], float64(size*count)/(1<<20)/d.Seconds())
		}
	}
	for _, m := range modes {
		v := slices.Clone(mibs[m])
		slices.Sort(v)
		t.Logf("%-14s %5.0f MiB/s best, %5.0f median (%d x %d MiB, %d rounds: %.0f)", m, v[len(v)-1], v[len(v)/2], count, size>>20, rounds, mibs[m])
	}
}

func pyBenchEnabled() bool { return os.Getenv("SEALBUF_PYTHON_BENCH") != "" }

// pyThroughputRun runs one Python consumer in mode and returns the time
// from the first send to its "done".
func pyThroughputRun(t *testing.T, mode string, size, count int) time.Duration {
	src := make([]byte, size)
	copy(src, connPattern("bench", size))
	ack := make([]byte, 16)
	if mode == "socket" {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		mine, theirs := os.NewFile(uintptr(fds[0]), "go-end"), os.NewFile(uintptr(fds[1]), "python-end")
		fc, err := net.FileConn(mine)
		require.NoError(t, err)
		require.NoError(t, mine.Close())
		defer fc.Close()
		py := pyStart(t, theirs, "bench", mode, fmt.Sprint(count), fmt.Sprint(size))
		_, err = io.ReadFull(fc, ack[:5])
		require.NoError(t, err, py.output(py.stderr))
		start := time.Now()
		for i := range count {
			binary.LittleEndian.PutUint64(src, uint64(i))
			_, err := fc.Write(src)
			require.NoError(t, err, py.output(py.stderr))
		}
		_, err = io.ReadFull(fc, ack[:4])
		d := time.Since(start)
		require.NoError(t, err, py.output(py.stderr))
		require.Equal(t, "done", string(ack[:4]))
		require.NoError(t, py.wait())
		return d
	}
	c, sock := pyPair(t, unix.SOCK_SEQPACKET)
	py := pyStart(t, sock, "bench", mode, fmt.Sprint(count), fmt.Sprint(size))
	if mode == "pool" {
		return pyThroughputPool(t, c, py, src, count)
	}
	n, _, err := c.Receive(ack)
	require.NoError(t, err, py.output(py.stderr))
	require.Equal(t, "ready", string(ack[:n]))
	binary.LittleEndian.PutUint64(src, 0)
	reused, err := sealbuf.FromBytes(src)
	require.NoError(t, err)
	defer reused.Close()
	start := time.Now()
	for i := range count {
		hdr := fmt.Appendf(nil, "%d", i)
		if mode == "sealed-reused" {
			require.NoError(t, c.Send(hdr, reused))
			continue
		}
		binary.LittleEndian.PutUint64(src, uint64(i))
		s, err := sealbuf.FromBytes(src)
		require.NoError(t, err)
		require.NoError(t, c.SendAndClose(hdr, s), py.output(py.stderr))
	}
	n, _, err = c.Receive(ack)
	d := time.Since(start)
	require.NoError(t, err, py.output(py.stderr))
	require.Equal(t, "done", string(ack[:n]))
	require.NoError(t, c.Close())
	require.NoError(t, py.wait())
	return d
}

// pyThroughputPool is pyThroughputRun's pool mode: the clock runs from the
// first Acquire after a warm-up message until every slot is back.
func pyThroughputPool(t *testing.T, c *sealbuf.Conn, py *pyProc, src []byte, count int) time.Duration {
	const slots = 4
	p, err := pool.New(c, slots, len(src))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	send := func(seq int) {
		s, err := p.Acquire(ctx)
		require.NoError(t, err, py.output(py.stderr))
		binary.LittleEndian.PutUint64(src, uint64(seq))
		copy(s.Bytes(), src)
		require.NoError(t, s.Send(len(src), fmt.Appendf(nil, "%d", seq)))
	}
	drain := func() { // every slot back: Python has read and released everything
		held := make([]pool.Slot, slots)
		for i := range held {
			held[i], err = p.Acquire(ctx)
			require.NoError(t, err, py.output(py.stderr))
		}
		for _, s := range held {
			require.NoError(t, s.Discard())
		}
	}
	send(-1)
	drain()
	start := time.Now()
	for i := range count {
		send(i)
	}
	drain()
	d := time.Since(start)
	require.NoError(t, p.Close())
	require.NoError(t, py.wait())
	return d
}
