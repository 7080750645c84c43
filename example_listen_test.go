//go:build linux

package sealbuf_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/sealbuf/sealbuf"
)

// A consumer listens on a socket path; a producer, usually another process,
// dials it and sends sealed buffers. Listen takes a file system path (the
// socket file is removed by Close, and a stale one left by a listener that
// died is replaced) or "@name" in Linux's abstract namespace.
func ExampleListen() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "frames.sock")

	l, err := sealbuf.Listen(path, sealbuf.WithReceivePolicy(sealbuf.MaxSize(1<<20)))
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	fmt.Println("listening on", filepath.Base(l.Addr().String()))

	// The producer: in real use another process.
	go func() {
		conn, err := sealbuf.Dial(path)
		if err != nil {
			log.Fatal(err)
		}
		defer conn.Close() // the consumer reads io.EOF after the last message
		for _, text := range []string{"hello", "over a named socket"} {
			sealed, err := sealbuf.FromBytes([]byte(text))
			if err != nil {
				log.Fatal(err)
			}
			if err := conn.SendAndClose([]byte("frame"), sealed); err != nil {
				log.Fatal(err)
			}
		}
	}()

	conn, err := l.Accept() // each Dial gives one Conn, with Listen's options
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	header := make([]byte, 64)
	for {
		n, bufs, err := conn.Receive(header)
		if errors.Is(err, io.EOF) {
			fmt.Println("producer hung up")
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		for _, b := range bufs {
			fmt.Printf("%s: %q\n", header[:n], b.Bytes())
			b.Close()
		}
	}
	l.Close()
	_, err = os.Stat(path)
	fmt.Println("socket file removed:", errors.Is(err, os.ErrNotExist))
	// Output:
	// listening on frames.sock
	// frame: "hello"
	// frame: "over a named socket"
	// producer hung up
	// socket file removed: true
}

// FileConn wraps a connected UNIX socket in a Conn. Its usual input is the
// socket a parent made with Pair and passed in exec.Cmd.ExtraFiles, which
// the child finds with ExtraFile (see the Pair example); here both ends
// stay in one process.
func ExampleFileConn() {
	parent, theirs, err := sealbuf.Pair()
	if err != nil {
		log.Fatal(err)
	}
	defer parent.Close()

	child, err := sealbuf.FileConn(theirs) // owns theirs now (on error it stays ours)
	if err != nil {
		theirs.Close()
		log.Fatal(err)
	}
	defer child.Close()

	sealed, err := sealbuf.FromBytes([]byte("42"))
	if err != nil {
		log.Fatal(err)
	}
	if err := parent.SendAndClose([]byte("answer"), sealed); err != nil {
		log.Fatal(err)
	}
	header := make([]byte, 16)
	n, bufs, err := child.Receive(header)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %s\n", header[:n], bufs[0].Bytes())
	bufs[0].Close()
	// Output:
	// answer: 42
}
