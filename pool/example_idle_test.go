//go:build linux

package pool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/pool"
)

// A producer that finishes cleanly: before it closes the pool, WaitIdle
// waits until the consumer has released every message, under a deadline.
// A consumer that dies instead makes WaitIdle fail with io.EOF; one that
// keeps a slot past the deadline, with context.DeadlineExceeded.
func ExampleWriter_WaitIdle() {
	producerEnd, consumerEnd := examplePoolSocketpair()

	done := make(chan struct{})
	go func() { // the consumer
		defer close(done)
		r, err := pool.Accept(sealbuf.NewConn(consumerEnd))
		if err != nil {
			fmt.Println(err)
			return
		}
		defer r.Close()
		for {
			v, _, err := r.Receive(context.Background(), nil)
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				fmt.Println(err)
				return
			}
			fmt.Printf("consumer: %q\n", v.Bytes())
			v.Release()
		}
	}()

	w, err := pool.New(sealbuf.NewConn(producerEnd), 4, 4096)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, frame := range []string{"one", "two", "three"} {
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

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.WaitIdle(ctx); err != nil {
		fmt.Println("the consumer did not finish:", err)
	} else {
		fmt.Printf("producer: all %d slots are back\n", w.Free())
	}
	w.Close()
	<-done
	// Output:
	// consumer: "one"
	// consumer: "two"
	// consumer: "three"
	// producer: all 4 slots are back
}

// Both sides of a pool keep counters a service can export (with expvar,
// Prometheus, or a log line): messages and bytes, releases, back-pressure,
// protocol violations, mapped memory.
func ExampleWriter_Stats() {
	producerEnd, consumerEnd := examplePoolSocketpair()
	w, err := pool.New(sealbuf.NewConn(producerEnd), 2, 4096)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Close()
	r, err := pool.Accept(sealbuf.NewConn(consumerEnd))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()

	ctx := context.Background()
	for _, frame := range []string{"hello", "world"} {
		slot, err := w.Acquire(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		if err := slot.Send(copy(slot.Bytes(), frame), []byte("hdr")); err != nil {
			fmt.Println(err)
			return
		}
		v, _, err := r.Receive(ctx, make([]byte, 16))
		if err != nil {
			fmt.Println(err)
			return
		}
		v.Release()
	}
	if err := w.WaitIdle(ctx); err != nil {
		fmt.Println(err)
		return
	}

	ws, rs := w.Stats(), r.Stats()
	fmt.Printf("producer: %d messages, %d bytes, %d header bytes, %d releases, waited %d times\n",
		ws.Messages, ws.Bytes, ws.HeaderBytes, ws.Releases, ws.Full)
	fmt.Printf("consumer: %d messages, %d bytes, %d releases, %d protocol errors\n",
		rs.Messages, rs.Bytes, rs.Releases, rs.ProtocolErrors)
	fmt.Println("both map the same slots:", ws.MappedBytes == rs.MappedBytes)
	// Output:
	// producer: 2 messages, 10 bytes, 6 header bytes, 2 releases, waited 0 times
	// consumer: 2 messages, 10 bytes, 2 releases, 0 protocol errors
	// both map the same slots: true
}
