//go:build linux

package sealbuf_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
)

// ReceiveContext waits for a message for as long as its context allows; a
// context that ends leaves the Conn usable for the next message.
func ExampleConn_ReceiveContext() {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		log.Fatal(err)
	}
	producer, consumer := sealbuf.NewConn(exampleUnixConn(fds[0])), sealbuf.NewConn(exampleUnixConn(fds[1]))
	defer producer.Close()
	defer consumer.Close()

	header := make([]byte, 64)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, _, err = consumer.ReceiveContext(ctx, header)
	fmt.Println("nothing sent yet:", errors.Is(err, context.DeadlineExceeded))

	frame, err := sealbuf.FromBytes([]byte("late frame"))
	if err != nil {
		log.Fatal(err)
	}
	if err := producer.SendAndClose([]byte("frame 1"), frame); err != nil {
		log.Fatal(err)
	}
	n, bufs, err := consumer.ReceiveContext(context.Background(), header)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %s\n", header[:n], bufs[0].Bytes())
	bufs[0].Close()
	// Output:
	// nothing sent yet: true
	// frame 1: late frame
}

// ReceiveMappings takes buffers from a peer that does not seal them against
// writes (or at all): each arrives as a Mapping whose every access runs
// under the fault guard, so a peer that truncates its memfd produces an
// error, never a SIGBUS.
func ExampleConn_ReceiveMappings() {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		log.Fatal(err)
	}
	producer, consumer := sealbuf.NewConn(exampleUnixConn(fds[0])), sealbuf.NewConn(exampleUnixConn(fds[1]))
	defer producer.Close()
	defer consumer.Close()

	// A peer's unsealed memfd (here made with raw calls, as a C or Python
	// producer would).
	fd, err := unix.MemfdCreate("peer-frame", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		log.Fatal(err)
	}
	peer := os.NewFile(uintptr(fd), "peer-frame")
	defer peer.Close()
	if _, err := peer.WriteAt([]byte("mutable frame"), 0); err != nil {
		log.Fatal(err)
	}
	if err := producer.SendFiles([]byte("frame"), peer); err != nil {
		log.Fatal(err)
	}

	header := make([]byte, 64)
	_, maps, err := consumer.ReceiveMappings(header, sealbuf.MapMaxSize(1<<20))
	if err != nil {
		log.Fatal(err)
	}
	m := maps[0]
	defer m.Close()
	err = m.Access(func(b []byte) error {
		fmt.Printf("%s\n", b)
		return nil
	})
	fmt.Println("read:", err)

	peer.Truncate(0) // the peer cheats
	err = m.Access(func(b []byte) error { _ = b[0]; return nil })
	fmt.Println("after the truncation:", errors.Is(err, sealbuf.ErrTruncated))
	// Output:
	// mutable frame
	// read: <nil>
	// after the truncation: true
}
