//go:build linux

package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sealbuf/sealbuf"
)

// demoConsumer is the demo's consumer process: it receives sealed buffers,
// checks them in place, and survives the producer's misbehaviour.
func demoConsumer() int {
	if err := consume(); err != nil {
		fmt.Fprintf(os.Stderr, "consumer: %v\n", err)
		return 1
	}
	return 0
}

func consume() error {
	f, err := sealbuf.ExtraFile(0) // the producer's cmd.ExtraFiles[0]: descriptor 3
	if err != nil {
		return err
	}
	conn, err := sealbuf.FileConn(f, sealbuf.WithReceivePolicy(sealbuf.MaxSize(256<<20)))
	if err != nil {
		f.Close()
		return err
	}
	defer conn.Close()
	say := func(format string, a ...any) { fmt.Printf("  consumer: "+format+"\n", a...) }
	header := make([]byte, 64)
	for {
		n, bufs, err := conn.Receive(header)
		switch {
		case errors.Is(err, sealbuf.ErrNotSealed):
			say("refused the buffer: %v", err)
			if err := conn.Send([]byte("refused: errors.Is(err, sealbuf.ErrNotSealed) is true; nothing was mapped")); err != nil {
				return err
			}
			continue
		case err != nil:
			return err
		}
		switch string(header[:n]) {
		case "sealed":
			b := bufs[0]
			sum := sha256.Sum256(b.Bytes()) // reads the producer's pages in place: no copy, no guard needed
			say("got %d bytes, seals %s; read in place", b.Len(), b.Seals())
			b.Close()
			if err := conn.Send(fmt.Appendf(nil, "sha256 %x", sum)); err != nil {
				return err
			}
		case "map":
			if err := readWhileTruncated(conn); err != nil {
				return err
			}
		case "bye":
			return nil
		default:
			return fmt.Errorf("unexpected message %q", header[:n])
		}
	}
}

// readWhileTruncated receives an unsealed memfd, maps it with sealbuf.Map and
// keeps reading it until the producer truncates it under the reader.
func readWhileTruncated(conn *sealbuf.Conn) error {
	header := make([]byte, 64)
	// The Conn's default policy refuses unsealed memfds, so the producer
	// announced this one, and it is received raw and mapped as untrusted.
	_, files, err := conn.ReceiveFiles(header)
	if err != nil {
		return err
	}
	if len(files) != 1 {
		for _, f := range files {
			f.Close()
		}
		return fmt.Errorf("want 1 descriptor, got %d", len(files))
	}
	m, err := sealbuf.Map(files[0])
	if err != nil {
		files[0].Close()
		return err
	}
	defer m.Close()
	say := func(format string, a ...any) { fmt.Printf("  consumer: "+format+"\n", a...) }
	say("mapped %d bytes with sealbuf.Map (seals %s: the size may change under us)", m.Len(), m.Seals())
	if err := conn.Send([]byte("reading")); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	passes := 0
	for {
		err = m.Access(func(b []byte) error {
			_ = sha256.Sum256(b) // every byte, in place, under the fault guard
			return nil
		})
		if err != nil || time.Now().After(deadline) {
			break
		}
		passes++
	}
	switch {
	case errors.Is(err, sealbuf.ErrTruncated):
		when := "during the first pass over the buffer"
		if passes > 0 {
			when = fmt.Sprintf("after %d complete passes over the buffer", passes)
		}
		say("OK: the truncation came back as an error, not a SIGBUS (%s): %v", when, err)
		say("errors.Is(err, sealbuf.ErrTruncated) = true, and this process is still running")
	case err == nil:
		say("FAILED: read the buffer %d times in 10s and never saw the truncation", passes)
	default:
		say("FAILED: reading returned %v, not sealbuf.ErrTruncated", err)
	}
	p := make([]byte, 4096)
	_, rerr := m.ReadAt(p, 0)
	say("the first 4 KiB, still inside the file, read fine: err = %v", rerr)
	if _, _, err := conn.Receive(header); err != nil { // "truncated"
		return err
	}
	verdict := "alive, ErrTruncated reported, no SIGBUS"
	if !errors.Is(err, sealbuf.ErrTruncated) {
		verdict = fmt.Sprintf("unexpected result %v", err)
	}
	return conn.Send([]byte(verdict))
}
