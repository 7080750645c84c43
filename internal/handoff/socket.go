//go:build linux

package handoff

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// The copy modes: the payload goes through the socket, copied in by the
// producer's write and out by the consumer's read, through Go's net
// package (what a Go program would use).

func init() {
	Register(Mode{
		Name:     "socket",
		Socket:   unix.SOCK_STREAM,
		Producer: func(sock *os.File, size int) (Producer, error) { return newCopyProducer([]*os.File{sock}, size, false) },
		Consume:  func(sock *os.File, size int) error { return consumeCopy(sock, size, false) },
		FanOut:   func(socks []*os.File, size int) (Producer, error) { return newCopyProducer(socks, size, false) },
	})
	Register(Mode{
		Name:     "seqpacket",
		Socket:   unix.SOCK_SEQPACKET,
		Supports: fitsDatagram,
		Producer: func(sock *os.File, size int) (Producer, error) { return newCopyProducer([]*os.File{sock}, size, true) },
		Consume:  func(sock *os.File, size int) error { return consumeCopy(sock, size, true) },
		FanOut:   func(socks []*os.File, size int) (Producer, error) { return newCopyProducer(socks, size, true) },
	})
}

// fitsDatagram reports whether size bytes fit one SOCK_SEQPACKET packet
// with the default socket buffers, by trying.
func fitsDatagram(size int) error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socketpair", err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	err = unix.Send(fds[0], make([]byte, size), unix.MSG_DONTWAIT)
	if err == nil {
		return nil
	}
	sndbuf, _ := unix.GetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF)
	return fmt.Errorf("a %d-byte packet does not fit one datagram (SO_SNDBUF %d): %w", size, sndbuf, err)
}

// unixConn converts a socket from Start or Child to a *net.UnixConn.
func unixConn(sock *os.File) (*net.UnixConn, error) {
	c, err := net.FileConn(sock)
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("%T is not a UNIX socket", c)
	}
	return uc, nil
}

// copyProducer writes each message to every consumer in turn (a copy
// each), then reads their acks.
type copyProducer struct {
	conns  []*net.UnixConn
	buf    []byte
	packet bool
}

func newCopyProducer(socks []*os.File, size int, packet bool) (*copyProducer, error) {
	p := &copyProducer{buf: make([]byte, size), packet: packet}
	for _, sock := range socks {
		c, err := unixConn(sock)
		if err != nil {
			p.Close()
			return nil, err
		}
		p.conns = append(p.conns, c)
	}
	return p, nil
}

func (p *copyProducer) Send(k uint64) error {
	Fill(p.buf, k)
	for _, c := range p.conns {
		n, err := c.Write(p.buf)
		if err != nil {
			return err
		}
		if n != len(p.buf) {
			return fmt.Errorf("short write: %d of %d bytes", n, len(p.buf))
		}
	}
	for _, c := range p.conns {
		if err := readAck(c); err != nil {
			return err
		}
	}
	return nil
}

func (p *copyProducer) Close() error {
	var errs []error
	for _, c := range p.conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

func (p *copyProducer) Note() string {
	note := "net.UnixConn write, read"
	if p.packet {
		note = "net.UnixConn, one packet a message"
	}
	if len(p.conns) > 1 {
		note += fmt.Sprintf("; written to each of %d consumers in turn, then their acks", len(p.conns))
	}
	return note
}

func readAck(r io.Reader) error {
	var ack [1]byte
	n, err := r.Read(ack[:])
	if n == 1 {
		return nil
	}
	if err == nil || err == io.EOF {
		err = errors.New("consumer hung up before it acked")
	}
	return fmt.Errorf("read ack: %w", err)
}

func consumeCopy(sock *os.File, size int, packet bool) error {
	c, err := unixConn(sock)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, size+1) // one spare byte: a longer packet shows
	ack := []byte{'a'}
	for k := uint64(0); ; k++ {
		if packet {
			var n int
			n, err = c.Read(buf)
			if n == 0 && (err == nil || err == io.EOF) {
				return nil
			}
			if err == nil && n != size {
				err = fmt.Errorf("message %d: %d-byte packet, want %d", k, n, size)
			}
		} else {
			_, err = io.ReadFull(c, buf[:size])
			if err == io.EOF {
				return nil
			}
		}
		if err != nil {
			return err
		}
		if err := Check(buf[:size], k); err != nil {
			return err
		}
		if _, err := c.Write(ack); err != nil {
			return err
		}
	}
}
