//go:build linux

package sealbuf_test

import (
	"errors"
	"fmt"
	"log"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
)

// A Conn counts what it sends and receives, the messages it refuses by
// reason, and the bytes of the buffers it returned that are still open:
// counters a service can export (with expvar, Prometheus, or a log line),
// cheap enough to be always on.
func ExampleConn_Stats() {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		log.Fatal(err)
	}
	producer := sealbuf.NewConn(exampleUnixConn(fds[0]))
	defer producer.Close()
	// The consumer maps nothing larger than 4 KiB.
	consumer := sealbuf.NewConn(exampleUnixConn(fds[1]), sealbuf.WithReceivePolicy(sealbuf.MaxSize(4096)))
	defer consumer.Close()

	for _, size := range []int{1000, 3000, 8000} {
		buf, err := sealbuf.FromBytes(make([]byte, size))
		if err != nil {
			log.Fatal(err)
		}
		if err := producer.SendAndClose([]byte("frame"), buf); err != nil {
			log.Fatal(err)
		}
	}
	header := make([]byte, 64)
	var kept []*sealbuf.Sealed
	for range 3 {
		_, bufs, err := consumer.Receive(header)
		if err != nil {
			fmt.Println("refused as too large:", errors.Is(err, sealbuf.ErrTooLarge)) // the 8000-byte one
			continue
		}
		kept = append(kept, bufs...)
	}

	st := consumer.Stats()
	fmt.Printf("received %d messages, %d header bytes, %d buffers\n", st.MessagesReceived, st.BytesReceived, st.FilesReceived)
	fmt.Printf("refused %d (too large: %d)\n", st.Refused(), st.RefusedTooLarge)
	fmt.Println("mapped now:", st.MappedBytes)
	for _, b := range kept {
		b.Close()
	}
	fmt.Println("mapped after Close:", consumer.Stats().MappedBytes)
	fmt.Println("producer sent:", producer.Stats().MessagesSent)
	// Output:
	// refused as too large: true
	// received 2 messages, 10 header bytes, 2 buffers
	// refused 1 (too large: 1)
	// mapped now: 4000
	// mapped after Close: 0
	// producer sent: 3
}
