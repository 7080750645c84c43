//go:build linux

package handoff

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
)

// sealed-prefault is the sealed mode with its memfds from a Reserve (this
// package's; it was sealbuf.Reserve until issue #14 took it out of the
// library), which makes them ahead of time in a background goroutine,
// pages allocated and zeroed (fallocate). Sending then costs the fill,
// Reserve.FromBytes (a pwrite into existing pages, the seals) and the
// sendmsg. The library cannot wrap such a memfd in a *sealbuf.Sealed, so
// it goes out as a raw sealed memfd through Conn.SendFiles; the consumer
// is the sealed mode's, whose Receive verifies it like any buffer.
//
// It measures latency with the producer not saturated, as the speed issue
// asks: before each message (untimed, see Readier) it waits until the
// consumer has closed the last message (its unmapping and the freeing of
// the pages, after its ack) and the Reserve is full again, so that work,
// which runs on the same CPU when the bench pins, falls between messages
// and not inside them. Its ns/msg is the time from the fill to the
// consumer's ack.

func init() {
	Register(Mode{
		Name:     "sealed-prefault",
		Socket:   unix.SOCK_SEQPACKET,
		Producer: func(sock *os.File, size int) (Producer, error) { return newPrefaultProducer(sock, size, true) },
		Consume:  func(sock *os.File, size int) error { return consumeSealedOpts(sock, size, true) },
	})
	// sealed-paced is sealed-prefault without the Reserve (the library's
	// FromBytes and Conn.SendAndClose), paced the same way: the difference
	// between the two is what the Reserve saves (and, since #14, the
	// F_GET_SEALS read-back and the Sealed wrapper sealed-prefault skips),
	// the difference to sealed what idle gaps between messages cost (a
	// CPU that idles wakes up slower). A diagnostic mode.
	Register(Mode{
		Name:     "sealed-paced",
		Socket:   unix.SOCK_SEQPACKET,
		Producer: func(sock *os.File, size int) (Producer, error) { return newPrefaultProducer(sock, size, false) },
		Consume:  func(sock *os.File, size int) error { return consumeSealedOpts(sock, size, true) },
	})
}

const prefaultDepth = 2

type prefaultProducer struct {
	conn *sealbuf.Conn
	res  *Reserve
	buf  []byte
	hdr  [8]byte
	ack  [8]byte
	sent bool // a message went out: the consumer's idle byte is due
}

func newPrefaultProducer(sock *os.File, size int, reserve bool) (Producer, error) {
	var res *Reserve
	if reserve {
		var err error
		if res, err = NewReserve(size, prefaultDepth); err != nil {
			return nil, err
		}
	}
	conn, err := newConn(sock)
	if err != nil {
		if res != nil {
			res.Close()
		}
		return nil, err
	}
	return &prefaultProducer{conn: conn, res: res, buf: make([]byte, size)}, nil
}

func (p *prefaultProducer) Note() string {
	if p.res == nil {
		return "FromBytes; latency: each message once the consumer is idle"
	}
	return fmt.Sprintf("harness Reserve(depth %d).FromBytes, raw memfd via SendFiles; latency: each message once the consumer is idle and the reserve is full", prefaultDepth)
}

// Ready waits until the consumer is idle and the Reserve is full.
func (p *prefaultProducer) Ready() error {
	if p.sent {
		if err := receiveAck(p.conn, p.ack[:]); err != nil {
			return fmt.Errorf("consumer idle: %w", err)
		}
		p.sent = false
	}
	for end := time.Now().Add(10 * time.Second); p.res != nil && p.res.Ready() < prefaultDepth; {
		if time.Now().After(end) {
			return fmt.Errorf("the reserve has %d of %d buffers ready after 10 s", p.res.Ready(), prefaultDepth)
		}
		time.Sleep(20 * time.Microsecond)
	}
	return nil
}

func (p *prefaultProducer) Send(k uint64) error {
	Fill(p.buf, k)
	binary.LittleEndian.PutUint64(p.hdr[:], k)
	if p.res != nil {
		f, err := p.res.FromBytes(p.buf)
		if err != nil {
			return err
		}
		err = p.conn.SendFiles(p.hdr[:], f)
		f.Close() // the receiver's copy is the only one left, as with SendAndClose
		if err != nil {
			return err
		}
	} else {
		s, err := sealbuf.FromBytes(p.buf)
		if err != nil {
			return err
		}
		if err := p.conn.SendAndClose(p.hdr[:], s); err != nil {
			return err
		}
	}
	p.sent = true
	return receiveAck(p.conn, p.ack[:])
}

func (p *prefaultProducer) Close() error {
	var err error
	if p.res != nil {
		err = p.res.Close()
	}
	return errors.Join(err, p.conn.Close())
}
