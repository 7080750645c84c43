//go:build linux

package pool_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/handoff"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/pool"
)

// The pool's child processes play a consumer, a producer or a benchmark
// peer (internal/testutil runs the test binary again in a role); the
// socket to the parent is their descriptor 3.
var (
	_ = poolRole("consume", poolChildConsume)
	_ = poolRole("die-holding", poolChildDieHolding)
	_ = poolRole("produce-die", poolChildProduceDie)
	_ = poolRole("bench-pool", poolChildBenchPool)
	_ = poolRole("bench-floor", poolChildBenchFloor)
	_ = poolRole("bench-socket", poolChildBenchSocket)
)

// poolRole registers a role whose body gets the socket to the parent and
// the role's argument.
func poolRole(name string, fn func(sock *os.File, arg string) error) bool {
	return testutil.Role(name, func(arg string) int {
		sock := testutil.ChildFile(0, "pool-parent-socket")
		defer sock.Close()
		if err := fn(sock, arg); err != nil {
			return testutil.ChildFail(err)
		}
		return 0
	})
}

// startPoolChild starts a child in role over a new socketpair of typ and
// returns the parent's end. The child is killed and reaped when the test
// ends, if it still runs.
func startPoolChild(t testing.TB, role, arg string, typ int) (*os.File, *testutil.Child) {
	t.Helper()
	parent, child := testutil.Socketpair(t, typ&^poolFutex)
	return parent, testutil.StartChild(t, role, arg, child)
}

// poolConnOf wraps a socket as a Conn (the Conn owns a dup; f is closed).
func poolConnOf(t testing.TB, f *os.File) *sealbuf.Conn {
	t.Helper()
	c := testutil.UnixConn(t, f)
	require.NoError(t, f.Close())
	return sealbuf.NewConn(c)
}

func poolChildConn(f *os.File) (*sealbuf.Conn, error) {
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	return sealbuf.NewConn(c.(*net.UnixConn)), nil
}

// poolChildConsume receives messages until the producer hangs up and
// checks each: the header holds the sequence number, the length and the
// seed of the bytes.
func poolChildConsume(sock *os.File, _ string) error {
	c, err := poolChildConn(sock)
	if err != nil {
		return err
	}
	r, err := pool.Accept(c)
	if err != nil {
		c.Close()
		return err
	}
	defer r.Close()
	hdr := make([]byte, r.MaxHeader())
	want := make([]byte, r.SlotSize())
	for seq := uint64(0); ; seq++ {
		v, n, err := r.Receive(context.Background(), hdr)
		if errors.Is(err, io.EOF) {
			if seq == 0 {
				return errors.New("no messages")
			}
			return nil
		}
		if err != nil {
			return err
		}
		if n != 16 || binary.LittleEndian.Uint64(hdr) != seq {
			return fmt.Errorf("message %d: header %x", seq, hdr[:n])
		}
		length := int(binary.LittleEndian.Uint64(hdr[8:]))
		poolFill(want[:length], int(seq))
		if v.Len() != length || string(v.Bytes()) != string(want[:length]) {
			return fmt.Errorf("message %d: %d bytes, not the %d written", seq, v.Len(), length)
		}
		if err := v.Release(); err != nil {
			return err
		}
	}
}

// poolChildDieHolding receives arg messages, keeps them, and dies by
// SIGKILL: no Close, no release.
func poolChildDieHolding(sock *os.File, arg string) error {
	n, err := strconv.Atoi(arg)
	if err != nil {
		return err
	}
	c, err := poolChildConn(sock)
	if err != nil {
		return err
	}
	r, err := pool.Accept(c)
	if err != nil {
		return err
	}
	for range n {
		if _, _, err := r.Receive(context.Background(), nil); err != nil {
			return err
		}
	}
	return syscall.Kill(os.Getpid(), syscall.SIGKILL)
}

// poolChildProduceDie makes a pool of 4 slots (a futex pool if arg, a
// socket type, asks for it), sends three one-byte messages 'a', 'b', 'c',
// and waits for the parent to kill it (SIGKILL: no Close).
func poolChildProduceDie(sock *os.File, arg string) error {
	typ, err := strconv.Atoi(arg)
	if err != nil {
		return err
	}
	c, err := poolChildConn(sock)
	if err != nil {
		return err
	}
	p, err := pool.New(c, 4, 64, poolOpts(typ)...)
	if err != nil {
		return err
	}
	for i := range 3 {
		s, err := p.Acquire(context.Background())
		if err != nil {
			return err
		}
		s.Bytes()[0] = byte('a' + i)
		if err := s.Send(1, nil); err != nil {
			return err
		}
	}
	time.Sleep(time.Hour) // the parent kills it (SIGKILL) once it waits on the socket or the futex
	return errors.New("not killed")
}

// poolChildBenchPool consumes pool messages: it reads the first and the
// last byte of each and releases it, until the producer hangs up.
func poolChildBenchPool(sock *os.File, _ string) error {
	c, err := poolChildConn(sock)
	if err != nil {
		return err
	}
	r, err := pool.Accept(c)
	if err != nil {
		return err
	}
	defer r.Close()
	var sum byte
	cpu0 := testutil.ProcessCPU()
	for {
		v, _, err := r.Receive(context.Background(), nil)
		if errors.Is(err, io.EOF) {
			poolSink = sum
			poolReportCPU(cpu0)
			return nil
		}
		if err != nil {
			return err
		}
		if b := v.Bytes(); len(b) > 0 {
			sum += b[0] + b[len(b)-1]
		}
		if err := v.Release(); err != nil {
			return err
		}
	}
}

// poolChildBenchFloor is poolChildBenchPool on the raw floor.
func poolChildBenchFloor(sock *os.File, _ string) error {
	r, err := handoff.AcceptPoolFloor(sock)
	if err != nil {
		return err
	}
	defer r.Close()
	var sum byte
	cpu0 := testutil.ProcessCPU()
	for {
		b, err := r.Next()
		if errors.Is(err, io.EOF) {
			poolSink = sum
			poolReportCPU(cpu0)
			return nil
		}
		if err != nil {
			return err
		}
		if len(b) > 0 {
			sum += b[0] + b[len(b)-1]
		}
		if err := r.Release(); err != nil {
			return err
		}
	}
}

// poolChildBenchSocket reads messages of arg bytes with read(2) until end
// of file, then acknowledges with one byte.
func poolChildBenchSocket(sock *os.File, arg string) error {
	size, err := strconv.Atoi(arg)
	if err != nil {
		return err
	}
	buf := make([]byte, size)
	var sum byte
	cpu0 := testutil.ProcessCPU()
	for {
		if _, err := io.ReadFull(sock, buf); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return err
		}
		sum += buf[0] + buf[size-1]
	}
	poolSink = sum
	poolReportCPU(cpu0)
	_, err = sock.Write([]byte{1})
	return err
}

var poolSink byte

// poolReportCPU tells the parent, on stdout, the CPU time used since cpu0.
func poolReportCPU(cpu0 time.Duration) {
	fmt.Printf("poolcpu=%d\n", int64(testutil.ProcessCPU()-cpu0))
}

// poolChildCPU returns the CPU time child reported (0 if none).
func poolChildCPU(child *testutil.Child) time.Duration {
	m := regexp.MustCompile(`poolcpu=(\d+)`).FindStringSubmatch(child.Stdout())
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return time.Duration(n)
}
