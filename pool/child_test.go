//go:build linux

package pool_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/handoff"
	"github.com/sealbuf/sealbuf/pool"
)

// The pool's child processes are this test binary run again with
// -test.run=^TestPoolChild$ and poolChildEnv naming the role; the socket
// to the parent is descriptor 3. TestMain (main_test.go) runs the tests as
// usual, so TestPoolChild is a plain test that skips unless it is a child.
const (
	poolChildEnv    = "SEALBUF_POOL_CHILD"
	poolChildArgEnv = "SEALBUF_POOL_CHILD_ARG"
)

// poolChildRoles are the child bodies. Each gets the socket to the parent
// and the role's argument.
var poolChildRoles = map[string]func(sock *os.File, arg string) error{
	"consume":      poolChildConsume,
	"die-holding":  poolChildDieHolding,
	"produce-die":  poolChildProduceDie,
	"bench-pool":   poolChildBenchPool,
	"bench-floor":  poolChildBenchFloor,
	"bench-socket": poolChildBenchSocket,
}

func TestPoolChild(t *testing.T) {
	role := os.Getenv(poolChildEnv)
	if role == "" {
		t.Skip("runs only as a child process of the pool tests")
	}
	fn := poolChildRoles[role]
	require.NotNil(t, fn, "unknown pool child role %q", role)
	//iosafety:allow newfile descriptor 3 is ExtraFiles[0] from the parent test, adopted once
	sock := os.NewFile(3, "pool-parent-socket")
	defer sock.Close()
	require.NoError(t, fn(sock, os.Getenv(poolChildArgEnv)))
}

// poolChild is a running child process.
type poolChild struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

// Wait waits for the child and returns its failure with its output.
func (c *poolChild) Wait() error {
	if err := c.cmd.Wait(); err != nil {
		return fmt.Errorf("pool child: %w\n%s", err, c.out.Bytes())
	}
	return nil
}

// startPoolChild starts a child in role over a new socketpair of typ and
// returns the parent's end.
func startPoolChild(t testing.TB, role, arg string, typ int) (*os.File, *poolChild) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ&^poolFutex|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	parent, child := os.NewFile(uintptr(fds[0]), "pool-child-socket"), os.NewFile(uintptr(fds[1]), "pool-child-end")
	c := &poolChild{cmd: exec.Command(os.Args[0], "-test.run=^TestPoolChild$", "-test.count=1", "-test.timeout=10m")}
	c.cmd.Env = append(os.Environ(), poolChildEnv+"="+role, poolChildArgEnv+"="+arg)
	c.cmd.ExtraFiles = []*os.File{child}
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	require.NoError(t, c.cmd.Start())
	require.NoError(t, child.Close())
	return parent, c
}

// poolConnOf wraps a socket as a Conn (the Conn owns a dup; f is closed).
func poolConnOf(t testing.TB, f *os.File) *sealbuf.Conn {
	t.Helper()
	c, err := net.FileConn(f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	return sealbuf.NewConn(c.(*net.UnixConn))
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
// and dies by SIGKILL: no Close.
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
	time.Sleep(20 * time.Millisecond) // let the parent wait on the socket or the futex
	return syscall.Kill(os.Getpid(), syscall.SIGKILL)
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
	cpu0 := poolCPU()
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
	cpu0 := poolCPU()
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
	cpu0 := poolCPU()
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

// poolCPU returns the CPU time (user and system) this process has used.
func poolCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// poolReportCPU tells the parent, on stdout, the CPU time used since cpu0.
func poolReportCPU(cpu0 time.Duration) {
	fmt.Printf("poolcpu=%d\n", int64(poolCPU()-cpu0))
}

// CPU returns the CPU time the child reported (0 if none).
func (c *poolChild) CPU() time.Duration {
	m := regexp.MustCompile(`poolcpu=(\d+)`).FindSubmatch(c.out.Bytes())
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return time.Duration(n)
}
