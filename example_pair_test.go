//go:build linux

package sealbuf_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/memfd"
)

// A parent starts its consumer with one end of a socket pair as the child's
// descriptor 3, and sends it sealed buffers. The consumer adopts the socket
// with ExtraFile, wraps it with FileConn, and reads the buffers in place.
// Neither side touches a descriptor number, so the iosafety checker has
// nothing to report.
func ExamplePair() {
	conn, theirs, err := sealbuf.Pair()
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	// In a real program: exec.Command("/path/to/consumer"). Here this
	// example's own binary plays the consumer (see init below).
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SEALBUF_EXAMPLE_CONSUMER=1")
	cmd.ExtraFiles = []*os.File{theirs} // the child's descriptor 3: sealbuf.ExtraFile(0)
	cmd.Stdout = os.Stdout
	err = cmd.Start()
	theirs.Close() // the child holds its own copy; ours would hide its hang-up
	if err != nil {
		log.Fatal(err)
	}

	for _, text := range []string{"hello", "zero-copy"} {
		sealed, err := sealbuf.FromBytes([]byte(text))
		if err != nil {
			log.Fatal(err)
		}
		if err := conn.SendAndClose([]byte("frame"), sealed); err != nil {
			log.Fatal(err)
		}
	}
	conn.Close() // the consumer reads io.EOF and exits
	if err := cmd.Wait(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// consumer: frame "hello" (5 bytes, immutable: true)
	// consumer: frame "zero-copy" (9 bytes, immutable: true)
	// consumer: the producer hung up
}

// The consumer's main function would call consume; here the test binary,
// run again with SEALBUF_EXAMPLE_CONSUMER=1, does so before anything else.
func init() {
	if os.Getenv("SEALBUF_EXAMPLE_CONSUMER") == "1" {
		if err := consume(); err != nil {
			log.Fatal("consumer: ", err)
		}
		os.Exit(0)
	}
}

func consume() error {
	f, err := sealbuf.ExtraFile(0) // the parent's cmd.ExtraFiles[0], checked: an inherited UNIX socket
	if err != nil {
		return err
	}
	conn, err := sealbuf.FileConn(f, sealbuf.WithReceivePolicy(sealbuf.MaxSize(1<<20)))
	if err != nil {
		f.Close() // still ours on error
		return err
	}
	defer conn.Close()
	header := make([]byte, 64)
	for {
		n, bufs, err := conn.Receive(header)
		if errors.Is(err, io.EOF) {
			fmt.Println("consumer: the producer hung up")
			return nil
		}
		if err != nil {
			return err
		}
		for _, b := range bufs {
			fmt.Printf("consumer: %s %q (%d bytes, immutable: %t)\n", header[:n], b.Bytes(), b.Len(), b.Seals().Has(memfd.SealImmutable))
			b.Close()
		}
	}
}
