//go:build linux

package sealbuf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/sealbuf/sealbuf/memfd"
)

// Sealed is an immutable shared-memory buffer: a memfd sealed at least
// against shrinking, growing and writing. Nobody — not this process, not the
// peer that made it — can change its bytes or its size, so its mapping never
// faults and its bytes never change: Bytes is a plain []byte, with no guard.
//
// Sealed owns its memfd. It is safe for concurrent use; the slice from Bytes
// is valid until Close, and must not be used after it.
type Sealed struct {
	mu     sync.RWMutex // held for reading by ReadAt, for writing by Close and the first Bytes
	file   *memfd.File
	size   int
	seals  memfd.Seals
	mem    []byte // read-only mapping; nil until first needed
	closed bool
	// mapped is the MappedBytes counter of the Conn that received this
	// buffer (nil otherwise): Close takes Len off it.
	mapped *atomic.Uint64
}

// newSealed wraps a sealed memfd; its mapping is made when first needed, so a
// producer that only sends the buffer never maps it.
func newSealed(file *memfd.File, size int, seals memfd.Seals) *Sealed {
	return &Sealed{file: file, size: size, seals: seals}
}

// FromBytes returns a sealed copy of b, exactly len(b) bytes. It writes b
// into a fresh memfd with pwrite (no producer mapping, and the kernel does
// not zero pages it overwrites whole), then seals it. With WithHugePages or
// WithTransparentHugePages it goes through a huge-page mapping instead
// (hugetlbfs has no write, and a write takes no transparent huge pages
// under the advise policy), falling back to the pwrite path when huge
// pages cannot be had.
//
// The caller owns the result and must Close it; b is not retained.
func FromBytes(b []byte, opts ...Option) (*Sealed, error) {
	o := newOptions(opts)
	if o.huge && len(b) > 0 {
		if s, err := fromBytesMapped(b, opts); err == nil {
			return s, nil
		}
	}
	file, err := memfd.Create(o.name)
	if err != nil {
		return nil, fmt.Errorf("sealbuf: from bytes: %w", err)
	}
	seals, err := fill(file, b)
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("sealbuf: from bytes: %w", err)
	}
	return newSealed(file, len(b), seals), nil
}

func fill(file *memfd.File, b []byte) (memfd.Seals, error) {
	// Write and seal on one thread: the write leaves up to a batch of
	// pages in this CPU's LRU cache, which the write seal drains where it
	// runs; run elsewhere (the goroutine moved to another thread, on
	// another CPU), it must drain every CPU's and wait for them
	// (memfd_wait_for_pins: measured 75 µs to milliseconds, against 4 µs).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if _, err := file.WriteAt(b, 0); err != nil {
		return 0, err
	}
	if err := sealWrite(file, sealSize|sealFinal); err != nil {
		return 0, err
	}
	return file.Seals()
}

func fromBytesMapped(b []byte, opts []Option) (*Sealed, error) {
	buf := newHugeOnly(len(b), opts)
	if buf == nil {
		return nil, errors.New("no huge pages")
	}
	copy(buf.Bytes(), b)
	s, err := buf.Seal()
	if err != nil {
		buf.Close()
		return nil, err
	}
	return s, nil
}

// Bytes returns the buffer's bytes: a read-only mapping, valid until Close.
// Writing to it crashes the process (the pages are read-only). It returns an
// empty slice for a 0-byte buffer, and nil after Close or when the mapping
// cannot be made (use ReadAt to see the error).
func (s *Sealed) Bytes() []byte {
	mem, _ := s.mapping()
	return mem
}

// mapping returns the read-only mapping, making it on first use.
func (s *Sealed) mapping() ([]byte, error) {
	s.mu.RLock()
	mem, closed := s.mem, s.closed
	s.mu.RUnlock()
	if mem != nil {
		return mem, nil
	}
	if closed {
		return nil, s.closedError("bytes")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, s.closedError("bytes")
	}
	if s.mem == nil {
		mem, err := mapReadOnly(s.file, s.size)
		if err != nil {
			return nil, fmt.Errorf("sealbuf: map sealed buffer %q: %w", s.file.Name(), err)
		}
		s.mem = mem
	}
	return s.mem, nil
}

// Len returns the size in bytes (fixed: the memfd is sealed).
func (s *Sealed) Len() int { return s.size }

// Seals returns the seals present on the memfd, read when it was sealed or
// opened (they can only grow, and an immutable memfd has them all).
func (s *Sealed) Seals() memfd.Seals { return s.seals }

// File returns the memfd, borrowed: it stays owned by the Sealed and is
// closed by its Close. Use it to send the descriptor or to inspect it.
func (s *Sealed) File() *memfd.File { return s.file }

// ReadAt copies bytes at off into p, as io.ReaderAt: at or past the end it
// returns 0, io.EOF; a read crossing the end returns the bytes up to it and
// io.EOF. It cannot fault, and is safe to call concurrently with Close
// (which then waits for it).
func (s *Sealed) ReadAt(p []byte, off int64) (int, error) {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return 0, s.closedError("read")
	}
	if off < 0 {
		return 0, fmt.Errorf("sealbuf: read sealed buffer at %d: negative offset", off)
	}
	mem, err := s.mapping()
	if err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, s.closedError("read")
	}
	if off >= int64(len(mem)) {
		return 0, io.EOF
	}
	n := copy(p, mem[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Close unmaps the buffer and closes its memfd. Slices from Bytes must not
// be used after it. A second Close returns an error wrapping os.ErrClosed.
func (s *Sealed) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.closedError("close")
	}
	s.closed = true
	untrack(s.mapped, s.size)
	err := unmap(s.mem)
	s.mem = nil
	if cerr := s.file.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *Sealed) closedError(op string) error {
	return fmt.Errorf("sealbuf: %s sealed buffer %q: %w", op, s.file.Name(), os.ErrClosed)
}
