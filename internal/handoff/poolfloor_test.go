//go:build linux

package handoff

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/pool"
)

// floorPair returns the two ends of a blocking unixpacket socketpair, as
// files, closed when the test ends (a second Close is harmless).
func floorPair(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := os.NewFile(uintptr(fds[0]), "floor-a"), os.NewFile(uintptr(fds[1]), "floor-b")
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func floorConn(t *testing.T, f *os.File) *sealbuf.Conn {
	t.Helper()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return sealbuf.NewConn(c.(*net.UnixConn))
}

const floorTestSlots, floorTestSize, floorTestMsgs = 3, 10000, 200

// TestPoolFloorToPoolReader: the floor speaks the pool's wire format, so a
// pool.Reader accepts its pool (seals and all) and reads its
// messages.
func TestPoolFloorToPoolReader(t *testing.T) {
	a, b := floorPair(t)
	bc := floorConn(t, b)
	done := make(chan error, 1)
	go func() {
		r, err := pool.Accept(bc)
		if err != nil {
			done <- err
			return
		}
		defer r.Close()
		for k := uint64(0); ; k++ {
			v, _, err := r.Receive(context.Background(), nil)
			if errors.Is(err, io.EOF) {
				if k != floorTestMsgs {
					err = errors.New("too few messages")
				} else {
					err = nil
				}
				done <- err
				return
			}
			if err == nil && v.Len() != floorTestSize {
				err = errors.New("wrong length")
			}
			if err == nil {
				err = Check(v.Bytes(), k)
			}
			if err != nil {
				done <- err
				return
			}
			if err := v.Release(); err != nil {
				done <- err
				return
			}
		}
	}()
	f, err := NewPoolFloor(a, floorTestSlots, floorTestSize)
	if err != nil {
		t.Fatal(err)
	}
	for k := range uint64(floorTestMsgs) {
		s, err := f.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		Fill(s, k)
		if err := f.Send(floorTestSize); err != nil {
			t.Fatal(err)
		}
		// One in flight: the PoolReader never falls behind, so it sends
		// one release per message, which is all the floor reads.
		if err := f.Drain(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestPoolToPoolFloorReader: the floor's consumer reads a pool.Writer.
func TestPoolToPoolFloorReader(t *testing.T) {
	a, b := floorPair(t)
	done := make(chan error, 1)
	go func() {
		r, err := AcceptPoolFloor(b)
		if err != nil {
			done <- err
			return
		}
		defer r.Close()
		for k := uint64(0); ; k++ {
			m, err := r.Next()
			if err == io.EOF {
				if k != floorTestMsgs {
					err = errors.New("too few messages")
				} else {
					err = nil
				}
				done <- err
				return
			}
			if err == nil {
				err = Check(m, k)
			}
			if err == nil && len(m) != floorTestSize {
				err = errors.New("wrong length")
			}
			if err == nil {
				err = r.Release()
			}
			if err != nil {
				done <- err
				return
			}
		}
	}()
	p, err := pool.New(floorConn(t, a), floorTestSlots, floorTestSize)
	if err != nil {
		t.Fatal(err)
	}
	for k := range uint64(floorTestMsgs) {
		s, err := p.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		Fill(s.Bytes(), k)
		if err := s.Send(floorTestSize, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Every slot comes back: hold each one until all are acquired. (A
	// slot discarded at once is the next one acquired, the free list
	// being a stack, so acquiring and discarding in turn would not wait
	// for any release, and Close would come with messages in flight and
	// releases unread, which the consumer's read meets as ECONNRESET, end
	// of file, before the messages still queued.)
	var held [floorTestSlots]pool.Slot
	for i := range held {
		s, err := p.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		held[i] = s
	}
	for _, s := range held {
		if err := s.Discard(); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestPoolFloorRefusesUnsealed: AcceptPoolFloor checks the seals as
// AcceptPool does.
func TestPoolFloorRefusesUnsealed(t *testing.T) {
	a, b := floorPair(t)
	fd, err := unix.MemfdCreate("unsealed-pool", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		t.Fatal(err)
	}
	mfd := os.NewFile(uintptr(fd), "unsealed-pool")
	defer mfd.Close()
	page := os.Getpagesize()
	if err := mfd.Truncate(int64(page)); err != nil {
		t.Fatal(err)
	}
	if err := floorConn(t, a).SendFiles(floorHello(1, page, page), mfd); err != nil {
		t.Fatal(err)
	}
	if _, err := AcceptPoolFloor(b); !errors.Is(err, sealbuf.ErrNotSealed) {
		t.Fatalf("AcceptPoolFloor of an unsealed pool: %v, want ErrNotSealed", err)
	}
}

func floorHello(slots, slotSize, stride int) []byte {
	var h [poolFloorHelloLen]byte
	copy(h[:], poolFloorMagic)
	h[8] = byte(slots)
	for i := range 8 {
		h[16+i] = byte(slotSize >> (8 * i))
		h[24+i] = byte(stride >> (8 * i))
	}
	return h[:]
}
