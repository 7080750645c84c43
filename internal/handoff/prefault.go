//go:build linux

package handoff

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/memfd"
	"golang.org/x/sys/unix"
)

// sealed-prefault takes its memfds from a background goroutine that makes
// them ahead of time: created, sized, sealed against shrink and grow,
// mapped writable and populated with MADV_POPULATE_WRITE (pages allocated,
// zeroed and mapped before the producer needs them). Sending then costs the
// fill, an munmap, the write seal and the sendmsg. The library has no pool
// API yet; this is what one would do.
//
// The preparing goroutine runs on the same CPU as everything else when the
// bench pins: its page zeroing is not free, only off the message's path.

func init() {
	Register(Mode{
		Name:     "sealed-prefault",
		Socket:   unix.SOCK_SEQPACKET,
		Producer: newPrefaultProducer,
		Consume:  consumeSealed,
	})
}

// prepared is a memfd ready to fill: f owns the descriptor, file borrows
// it (memfd's methods), mem is its populated writable mapping.
type prepared struct {
	f    *os.File
	file *memfd.File
	mem  []byte
	err  error
}

const prefaultDepth = 2

type prefaultProducer struct {
	conn *sealbuf.Conn
	size int
	pool chan prepared
	stop chan struct{}
	hdr  [8]byte
	ack  [8]byte
}

func newPrefaultProducer(sock *os.File, size int) (Producer, error) {
	conn, err := newConn(sock)
	if err != nil {
		return nil, err
	}
	p := &prefaultProducer{conn: conn, size: size, pool: make(chan prepared, prefaultDepth), stop: make(chan struct{})}
	go p.prepare()
	return p, nil
}

func (p *prefaultProducer) Note() string {
	return fmt.Sprintf("%d memfds populated ahead (MADV_POPULATE_WRITE)", prefaultDepth)
}

func (p *prefaultProducer) prepare() {
	defer close(p.pool)
	for {
		m := prepareMemfd(p.size)
		select {
		case p.pool <- m:
			if m.err != nil {
				return
			}
		case <-p.stop:
			m.release()
			return
		}
	}
}

func prepareMemfd(size int) (m prepared) {
	fd, err := unix.MemfdCreate("sealbuf-prefault", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_NOEXEC_SEAL)
	if err == unix.EINVAL {
		fd, err = unix.MemfdCreate("sealbuf-prefault", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return prepared{err: os.NewSyscallError("memfd_create", err)}
	}
	m.f = os.NewFile(uintptr(fd), "memfd:sealbuf-prefault")
	defer func() {
		if m.err != nil {
			m.release()
		}
	}()
	if m.file, m.err = memfd.FromFile(m.f); m.err != nil {
		return m
	}
	if m.err = m.file.Truncate(int64(size)); m.err != nil {
		return m
	}
	if m.err = m.file.AddSeals(memfd.SealShrink | memfd.SealGrow); m.err != nil {
		return m
	}
	if size == 0 {
		return m
	}
	m.err = m.file.Control(func(fd int) error {
		ptr, err := unix.MmapPtr(fd, 0, nil, uintptr(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return os.NewSyscallError("mmap", err)
		}
		m.mem = unsafe.Slice((*byte)(ptr), size)
		return nil
	})
	if m.err != nil {
		return m
	}
	if err := unix.Madvise(m.mem, unix.MADV_POPULATE_WRITE); err != nil {
		m.err = os.NewSyscallError("madvise MADV_POPULATE_WRITE", err)
	}
	return m
}

func (m *prepared) unmap() error {
	if len(m.mem) == 0 {
		return nil
	}
	err := unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(m.mem)), uintptr(len(m.mem)))
	m.mem = nil
	return os.NewSyscallError("munmap", err)
}

func (m *prepared) release() {
	m.unmap()
	if m.f != nil {
		m.f.Close()
	}
}

func (p *prefaultProducer) Send(k uint64) error {
	m, ok := <-p.pool
	if !ok {
		return fmt.Errorf("prefault pool closed")
	}
	if m.err != nil {
		return fmt.Errorf("prepare memfd: %w", m.err)
	}
	defer m.release()
	Fill(m.mem, k)
	if err := m.unmap(); err != nil {
		return err
	}
	if err := m.file.AddSeals(memfd.SealWrite | memfd.SealSeal); err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(p.hdr[:], k)
	if err := p.conn.SendFiles(p.hdr[:], m.f); err != nil {
		return err
	}
	m.f.Close()
	return receiveAck(p.conn, p.ack[:])
}

func (p *prefaultProducer) Close() error {
	close(p.stop) // Session.Close calls this once
	for m := range p.pool {
		m.release()
	}
	return p.conn.Close()
}
