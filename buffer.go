//go:build linux

package sealbuf

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/sealbuf/sealbuf/memfd"
	"golang.org/x/sys/unix"
)

// Buffer is a writable shared-memory buffer on the producer side: a memfd of
// fixed size (sealed against shrinking and growing from the start) with a
// writable mapping. Fill Bytes, then Seal it into an immutable *Sealed that
// can be handed to other processes.
//
// A Buffer is safe for concurrent use, but Bytes is a plain slice: writing it
// while Seal or Close runs is the caller's race.
type Buffer struct {
	mu      sync.Mutex
	file    *memfd.File // nil once sealed or closed
	mem     []byte      // writable MAP_SHARED view; nil after Seal or Close
	size    int
	sealed  bool
	huge    bool
	hugeWhy error
}

// New creates a Buffer of exactly size bytes (no rounding), zero-filled. A
// negative size, or one too large to map (such as 1<<62), fails and returns
// a nil Buffer. Size 0 is valid: Bytes is then empty.
//
// The caller owns the Buffer: Seal it or Close it.
func New(size int, opts ...Option) (*Buffer, error) {
	if size < 0 {
		return nil, fmt.Errorf("sealbuf: new buffer: negative size %d", size)
	}
	if int64(size) > maxMappable {
		return nil, fmt.Errorf("sealbuf: new buffer: %d bytes is more than can be mapped: %w", size, ErrTooLarge)
	}
	o := newOptions(opts)
	b := &Buffer{size: size}
	if o.huge {
		file, mem, err := newHuge(o.name, size, o.hugeSize)
		if err == nil {
			b.file, b.mem, b.huge = file, mem, true
			return b, nil
		}
		b.hugeWhy = err
	}
	file, mem, err := newMapped(o.name, size)
	if err != nil {
		return nil, err
	}
	b.file, b.mem = file, mem
	return b, nil
}

// newMapped creates a memfd of size bytes, seals its size and maps it
// writable. For huge pages the mapping is populated at once, so an exhausted
// pool fails here rather than as a SIGBUS on first touch.
func newMapped(name string, size int, opts ...memfd.Option) (*memfd.File, []byte, error) {
	file, err := memfd.Create(name, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("sealbuf: new buffer: %w", err)
	}
	flags := unix.MAP_SHARED
	if len(opts) > 0 {
		flags |= unix.MAP_POPULATE
	}
	mem, err := func() ([]byte, error) {
		if err := file.Truncate(int64(size)); err != nil {
			return nil, err
		}
		if err := file.AddSeals(sealSize); err != nil {
			return nil, err
		}
		return mapFile(file, size, unix.PROT_READ|unix.PROT_WRITE, flags)
	}()
	if err != nil {
		file.Close()
		if errors.Is(err, unix.ENOMEM) {
			err = fmt.Errorf("%w (%w)", err, ErrTooLarge)
		}
		return nil, nil, fmt.Errorf("sealbuf: new buffer of %d bytes: %w", size, err)
	}
	return file, mem, nil
}

// Bytes returns the writable view of the buffer: exactly Len bytes, valid
// until Seal or Close. It cannot fault: the memfd is sealed against
// shrinking. After Seal or Close it returns nil.
func (b *Buffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mem
}

// Len returns the size of the buffer in bytes.
func (b *Buffer) Len() int { return b.size }

// HugePages reports whether the buffer is backed by huge pages, and, when
// they were asked for (WithHugePages) but could not be had, why not.
func (b *Buffer) HugePages() (bool, error) { return b.huge, b.hugeWhy }

// Seal makes the buffer immutable and returns it as a *Sealed: it unmaps the
// writable view (Bytes is invalid from here on), then adds the write and
// seal seals (shrink and grow are set since New). The Buffer is consumed:
// Seal again fails, and Close becomes a no-op that leaves the Sealed open.
//
// If sealing fails (for example with an error matching unix.EBUSY because
// the memfd is still mapped writable elsewhere), the Buffer keeps its
// contents, gets its writable view back where possible, and stays closable.
func (b *Buffer) Seal() (*Sealed, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.file == nil {
		if b.sealed {
			return nil, errors.New("sealbuf: seal: the Buffer was already sealed; use the *Sealed that Seal returned")
		}
		return nil, fmt.Errorf("sealbuf: seal: %w", os.ErrClosed)
	}
	if err := unmap(b.mem); err != nil {
		return nil, fmt.Errorf("sealbuf: seal: %w", err)
	}
	b.mem = nil
	if err := sealWrite(b.file, sealFinal); err != nil {
		if mem, merr := mapFile(b.file, b.size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); merr == nil {
			b.mem = mem
		}
		return nil, fmt.Errorf("sealbuf: seal: %w", err)
	}
	seals, err := b.file.Seals()
	if err != nil {
		return nil, fmt.Errorf("sealbuf: seal: %w", err)
	}
	s := newSealed(b.file, b.size, seals)
	b.file, b.sealed = nil, true
	return s, nil
}

// Close releases the buffer: its mapping and its descriptor. After Seal it
// does nothing and returns nil (the Sealed owns the memfd). A second Close
// returns an error wrapping os.ErrClosed.
func (b *Buffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.file == nil {
		if b.sealed {
			return nil
		}
		return fmt.Errorf("sealbuf: close buffer: %w", os.ErrClosed)
	}
	err := unmap(b.mem)
	b.mem = nil
	if cerr := b.file.Close(); err == nil {
		err = cerr
	}
	b.file = nil
	return err
}
