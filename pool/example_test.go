//go:build linux

package pool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/pool"
)

// A producer that keeps writing: the pool's memfd is handed over once,
// then every message is a copy into a slot and a 16-byte notification.
// Producer and consumer would normally be two processes; here they are two
// goroutines on the two ends of a socketpair.
func ExampleNew() {
	producerEnd, consumerEnd := examplePoolSocketpair()

	done := make(chan struct{})
	go func() { // the consumer
		defer close(done)
		r, err := pool.Accept(sealbuf.NewConn(consumerEnd), pool.WithMaxSize(64<<20))
		if err != nil {
			fmt.Println(err)
			return
		}
		defer r.Close()
		header := make([]byte, r.MaxHeader())
		for {
			v, n, err := r.Receive(context.Background(), header)
			if errors.Is(err, io.EOF) {
				return // the producer closed the pool
			}
			if err != nil {
				fmt.Println(err)
				return
			}
			// v.Bytes() is the producer's slot, mapped read-only: no copy.
			fmt.Printf("%s: %q\n", header[:n], v.Bytes())
			v.Release() // the producer may reuse the slot
		}
	}()

	w, err := pool.New(sealbuf.NewConn(producerEnd), 4, 1<<20)
	if err != nil {
		fmt.Println(err)
		return
	}
	for i, frame := range []string{"first", "second", "third"} {
		slot, err := w.Acquire(context.Background()) // waits while all 4 slots are in use
		if err != nil {
			fmt.Println(err)
			return
		}
		n := copy(slot.Bytes(), frame)
		if err := slot.Send(n, fmt.Appendf(nil, "frame %d", i)); err != nil {
			fmt.Println(err)
			return
		}
	}
	w.Close() // the consumer reads what was sent, then io.EOF
	<-done
	// Output:
	// frame 0: "first"
	// frame 1: "second"
	// frame 2: "third"
}

// A futex pool, for latency: records travel through a ring in a second
// shared memfd, and a side that waits is woken by futex(2); the consumer
// follows the producer's hello. With a Wait on both Conns a waiting side
// spins, then stays in the kernel, before it parks in Go's netpoller (it
// keeps its thread meanwhile: use it between processes that answer at
// once).
func ExampleWithFutex() {
	wait := sealbuf.WithWait(sealbuf.Wait{Spin: 20 * time.Microsecond, Kernel: time.Millisecond})
	producerEnd, consumerEnd := examplePoolSocketpair()

	done := make(chan struct{})
	go func() { // the consumer
		defer close(done)
		r, err := pool.Accept(sealbuf.NewConn(consumerEnd, wait))
		if err != nil {
			fmt.Println(err)
			return
		}
		defer r.Close()
		fmt.Println("futex pool:", r.Futex())
		for {
			v, _, err := r.Receive(context.Background(), nil)
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				fmt.Println(err)
				return
			}
			fmt.Printf("%q\n", v.Bytes())
			v.Release() // no system call unless the producer waits
		}
	}()

	w, err := pool.New(sealbuf.NewConn(producerEnd, wait), 2, 4096, pool.WithFutex())
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, frame := range []string{"ping", "pong"} {
		slot, err := w.Acquire(context.Background())
		if err != nil {
			fmt.Println(err)
			return
		}
		if err := slot.Send(copy(slot.Bytes(), frame), nil); err != nil {
			fmt.Println(err)
			return
		}
	}
	w.Close()
	<-done
	// Output:
	// futex pool: true
	// "ping"
	// "pong"
}

// examplePoolSocketpair returns the two ends of a connected unixpacket
// socketpair.
func examplePoolSocketpair() (*net.UnixConn, *net.UnixConn) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		panic(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			panic(err)
		}
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}
