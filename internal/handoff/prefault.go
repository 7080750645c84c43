//go:build linux

package handoff

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sealbuf/sealbuf"
	"golang.org/x/sys/unix"
)

// sealed-prefault is the sealed mode with its memfds from a
// sealbuf.Reserve, which makes them ahead of time in a background
// goroutine, pages allocated and zeroed (fallocate). Sending then costs
// the fill, Reserve.FromBytes (a pwrite into existing pages, the seals)
// and the sendmsg.
//
// It measures latency with the producer not saturated, as the speed issue
// asks: before each message (untimed, see Readier) it waits until the
// Reserve is full again, so the background work, which runs on the same
// CPU when the bench pins, falls between messages and not inside them.
// Its ns/msg is the time from Take to the consumer's ack.

func init() {
	Register(Mode{
		Name:     "sealed-prefault",
		Socket:   unix.SOCK_SEQPACKET,
		Producer: newPrefaultProducer,
		Consume:  consumeSealed,
	})
}

const prefaultDepth = 2

type prefaultProducer struct {
	conn *sealbuf.Conn
	res  *sealbuf.Reserve
	buf  []byte
	hdr  [8]byte
	ack  [8]byte
}

func newPrefaultProducer(sock *os.File, size int) (Producer, error) {
	res, err := sealbuf.NewReserve(size, prefaultDepth)
	if err != nil {
		return nil, err
	}
	conn, err := newConn(sock)
	if err != nil {
		res.Close()
		return nil, err
	}
	return &prefaultProducer{conn: conn, res: res, buf: make([]byte, size)}, nil
}

func (p *prefaultProducer) Note() string {
	return fmt.Sprintf("Reserve(depth %d).FromBytes; latency: each message once the reserve is full", prefaultDepth)
}

// Ready waits until the Reserve is full.
func (p *prefaultProducer) Ready() error {
	for end := time.Now().Add(10 * time.Second); p.res.Ready() < prefaultDepth; {
		if time.Now().After(end) {
			return fmt.Errorf("the reserve has %d of %d buffers ready after 10 s", p.res.Ready(), prefaultDepth)
		}
		time.Sleep(20 * time.Microsecond)
	}
	return nil
}

func (p *prefaultProducer) Send(k uint64) error {
	Fill(p.buf, k)
	s, err := p.res.FromBytes(context.Background(), p.buf)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(p.hdr[:], k)
	if err := p.conn.SendAndClose(p.hdr[:], s); err != nil {
		return err
	}
	return receiveAck(p.conn, p.ack[:])
}

func (p *prefaultProducer) Close() error {
	return errors.Join(p.res.Close(), p.conn.Close())
}
