//go:build linux

package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	mmap "github.com/edsrzf/mmap-go"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/internal/handoff"
)

// The mmap-go mode is what a Go program without sealbuf might do: a fresh
// file in /dev/shm (tmpfs) per message, mapped with mmap-go on both sides;
// the producer sends its name over a unixpacket socket, the consumer maps
// it, reads and checks it, unmaps it and removes the file. No seals: the
// consumer trusts the producer not to truncate or rewrite the file.

func init() {
	handoff.Register(handoff.Mode{
		Name:     "mmap-go",
		Socket:   unix.SOCK_SEQPACKET,
		Producer: newMmapGoProducer,
		Consume:  consumeMmapGo,
	})
}

const shmDir = "/dev/shm"

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

type mmapGoProducer struct {
	c    *net.UnixConn
	size int
	msg  []byte
	last string
}

func newMmapGoProducer(sock *os.File, size int) (handoff.Producer, error) {
	c, err := unixConn(sock)
	if err != nil {
		return nil, err
	}
	return &mmapGoProducer{c: c, size: size}, nil
}

func (p *mmapGoProducer) Send(k uint64) error {
	f, err := os.CreateTemp(shmDir, "sealbuf-bench-*")
	if err != nil {
		return err
	}
	p.last = f.Name()
	defer f.Close()
	if err := f.Truncate(int64(p.size)); err != nil {
		return err
	}
	m, err := mmap.MapRegion(f, p.size, mmap.RDWR, 0, 0)
	if err != nil {
		return fmt.Errorf("mmap-go map: %w", err)
	}
	handoff.Fill(m, k)
	if err := m.Unmap(); err != nil {
		return err
	}
	p.msg = binary.LittleEndian.AppendUint64(p.msg[:0], k)
	p.msg = append(p.msg, f.Name()...)
	if _, err := p.c.Write(p.msg); err != nil {
		return err
	}
	var ack [1]byte
	if n, err := p.c.Read(ack[:]); n != 1 {
		return fmt.Errorf("read ack: %v", err)
	}
	return nil
}

// Close removes the last file in case the consumer died before it could.
func (p *mmapGoProducer) Close() error {
	if p.last != "" {
		os.Remove(p.last)
	}
	return p.c.Close()
}

func consumeMmapGo(sock *os.File, size int) error {
	c, err := unixConn(sock)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 8+4096)
	ack := []byte{'a'}
	for k := uint64(0); ; k++ {
		n, err := c.Read(buf)
		if n == 0 && (err == nil || errors.Is(err, io.EOF)) {
			return nil
		}
		if err != nil {
			return err
		}
		if n < 9 || binary.LittleEndian.Uint64(buf) != k {
			return fmt.Errorf("message %d: bad %d-byte message", k, n)
		}
		name := string(buf[8:n])
		if filepath.Dir(name) != shmDir {
			return fmt.Errorf("message %d: %q is not in %s", k, name, shmDir)
		}
		if err := readMmapGo(name, size, k); err != nil {
			return err
		}
		if _, err := c.Write(ack); err != nil {
			return err
		}
	}
}

func readMmapGo(name string, size int, k uint64) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	defer os.Remove(name)
	m, err := mmap.Map(f, mmap.RDONLY, 0)
	if err != nil {
		return fmt.Errorf("mmap-go map: %w", err)
	}
	if len(m) != size {
		m.Unmap()
		return fmt.Errorf("message %d: %d bytes, want %d", k, len(m), size)
	}
	cerr := handoff.Check(m, k)
	if err := m.Unmap(); err != nil {
		return err
	}
	return cerr
}
