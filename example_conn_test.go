//go:build linux

package sealbuf_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/memfd"
)

// A producer fills and seals buffers and hands them to a consumer over a
// unixpacket socketpair (in real use, a socket between two processes). The
// consumer gets each header with its buffers, verified immutable, and reads
// their bytes in place.
func ExampleConn() {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		log.Fatal(err)
	}
	producer, consumer := sealbuf.NewConn(exampleUnixConn(fds[0])), sealbuf.NewConn(exampleUnixConn(fds[1]))
	defer consumer.Close()

	go func() {
		defer producer.Close() // the consumer sees io.EOF after the last message
		for i, text := range []string{"hello", "zero-copy", "world"} {
			buf, err := sealbuf.New(len(text))
			if err != nil {
				log.Fatal(err)
			}
			copy(buf.Bytes(), text)
			sealed, err := buf.Seal()
			if err != nil {
				log.Fatal(err)
			}
			// SendAndClose hands the buffer over: the consumer becomes
			// the only holder of the memfd.
			if err := producer.SendAndClose(fmt.Appendf(nil, "message %d", i), sealed); err != nil {
				log.Fatal(err)
			}
		}
	}()

	header := make([]byte, 64)
	for {
		n, bufs, err := consumer.Receive(header)
		if errors.Is(err, io.EOF) {
			fmt.Println("producer hung up")
			return
		}
		if err != nil {
			log.Fatal(err)
		}
		for _, b := range bufs {
			fmt.Printf("%s: %q (%d bytes, immutable: %t)\n", header[:n], b.Bytes(), b.Len(), b.Seals().Has(memfd.SealImmutable))
			b.Close()
		}
	}
	// Output:
	// message 0: "hello" (5 bytes, immutable: true)
	// message 1: "zero-copy" (9 bytes, immutable: true)
	// message 2: "world" (5 bytes, immutable: true)
	// producer hung up
}

// exampleUnixConn turns one end of a socketpair into a *net.UnixConn.
func exampleUnixConn(fd int) *net.UnixConn {
	f := os.NewFile(uintptr(fd), "socketpair")
	defer f.Close() // net.FileConn made its own copy
	c, err := net.FileConn(f)
	if err != nil {
		log.Fatal(err)
	}
	return c.(*net.UnixConn)
}
