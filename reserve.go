//go:build linux

package sealbuf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/sealbuf/sealbuf/memfd"
	"golang.org/x/sys/unix"
)

// Reserve keeps fresh memfds of one size ready ahead of need, their pages
// already allocated (fallocate(2)), so that allocating them leaves the
// message's path. A background goroutine makes them (same options as New)
// and keeps up to depth waiting. Two ways to use one:
//
//   - FromBytes writes bytes the caller already has into one with pwrite
//     (into existing pages: no allocation) and seals it;
//   - Take maps one writable with its pages mapped at once (MAP_POPULATE:
//     no fault while filling) as a *Buffer to fill in place and Seal. Seal
//     then unmaps the pages one by one, which at 1 MiB costs more than the
//     pwrite path saves: prefer FromBytes unless the data is produced in
//     place.
//
// Measured on a 2-core VM (BenchmarkBuild in the bench module, the reserve
// full before each build) it does not pay there, and a user should measure
// before using it: with the process on one CPU, Reserve.FromBytes is 1.8x
// faster than the package's FromBytes at 64 KiB, level at 1 MiB and 1.8x
// slower at 16 MiB; on two CPUs it is slower at every size (1 MiB: 488
// against 304 µs). Two reasons, both seen in strace: a fresh memfd reuses
// pages just freed, still in the CPU's cache, while reserved pages went cold
// (a 1 MiB pwrite took 307 µs into reserved pages, 178 µs into fresh ones);
// and pages the goroutine allocated on another CPU still sit in that CPU's
// LRU batch, whose extra reference makes the write seal wait for a drain of
// every CPU (memfd_wait_for_pins: 75 µs against 6 µs). It may pay where
// page allocation is dearer than here. A producer that never waits gains
// nothing in any case: the goroutine spends the same CPU time, only
// earlier. Huge pages are not offered (hugetlbfs has no pwrite): use New
// with WithHugePages, which measured 1.4–1.8x faster than a socket copy at
// 16–64 MiB.
//
// A Reserve holds up to depth+1 memfds of size bytes until Close; it is
// safe for concurrent use.
type Reserve struct {
	size  int
	name  string
	ready chan *memfd.File
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once

	// The goroutine's last failure, until it next succeeds; failed wakes
	// a waiting take to report it.
	errMu  sync.Mutex
	err    error
	failed chan struct{}
}

// reserveRetry is how long the goroutine pauses after a failure (such as
// running out of descriptors or memory) before it tries again.
const reserveRetry = 10 * time.Millisecond

// NewReserve makes the first memfd of size bytes at once (so that a size
// that cannot work fails here), then starts the goroutine that keeps depth
// of them ready. depth must be at least 1; of the options only WithName
// applies (WithHugePages is refused). The caller must Close the Reserve.
func NewReserve(size, depth int, opts ...Option) (*Reserve, error) {
	o := newOptions(opts)
	switch {
	case depth < 1:
		return nil, fmt.Errorf("sealbuf: new reserve: depth %d, want at least 1", depth)
	case size < 0:
		return nil, fmt.Errorf("sealbuf: new reserve: negative size %d", size)
	case int64(size) > maxMappable:
		return nil, fmt.Errorf("sealbuf: new reserve: %d bytes is more than can be mapped: %w", size, ErrTooLarge)
	case o.huge:
		return nil, errors.New("sealbuf: new reserve: no huge pages in a Reserve (hugetlbfs has no pwrite); use New with WithHugePages")
	}
	r := &Reserve{
		size:  size,
		name:  o.name,
		ready: make(chan *memfd.File, depth),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),

		failed: make(chan struct{}, 1),
	}
	f, err := r.make()
	if err != nil {
		return nil, fmt.Errorf("sealbuf: new reserve: %w", err)
	}
	r.ready <- f
	go r.fill()
	return r, nil
}

// take returns a prepared memfd, waiting for one when none is ready.
func (r *Reserve) take(ctx context.Context, op string) (*memfd.File, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for {
		select {
		case <-r.stop:
			return nil, fmt.Errorf("sealbuf: reserve: %s: %w", op, os.ErrClosed)
		default:
		}
		select {
		case f := <-r.ready:
			return f, nil
		default:
		}
		// Nothing ready: report the goroutine's failure, if it is
		// failing, rather than wait for it to recover.
		if err := r.lastErr(); err != nil {
			return nil, fmt.Errorf("sealbuf: reserve: %s: %w", op, err)
		}
		select {
		case f := <-r.ready:
			return f, nil
		case <-r.failed:
		case <-r.stop:
			return nil, fmt.Errorf("sealbuf: reserve: %s: %w", op, os.ErrClosed)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// lastErr returns the goroutine's failure, nil once it succeeded again.
func (r *Reserve) lastErr() error {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.err
}

func (r *Reserve) setErr(err error) {
	r.errMu.Lock()
	r.err = err
	r.errMu.Unlock()
	if err != nil {
		select {
		case r.failed <- struct{}{}:
		default:
		}
	}
}

// FromBytes returns a sealed copy of b, exactly len(b) bytes, written into
// a ready memfd with pwrite and sealed shrink|grow|write|seal, like the
// package's FromBytes. len(b) must not exceed Size (ErrTooLarge); a
// shorter b gives a smaller buffer (the memfd is cut to len(b) first). It
// waits for a ready memfd when none is (until ctx is done). The caller owns
// the result and must Close it; b is not retained.
//
// Waiting, ctx and errors are as for Take.
func (r *Reserve) FromBytes(ctx context.Context, b []byte) (*Sealed, error) {
	select {
	case <-r.stop:
		return nil, fmt.Errorf("sealbuf: reserve: from bytes: %w", os.ErrClosed)
	default:
	}
	if len(b) > r.size {
		return nil, fmt.Errorf("sealbuf: reserve: from bytes: %d bytes, more than the reserve's %d: %w", len(b), r.size, ErrTooLarge)
	}
	file, err := r.take(ctx, "from bytes")
	if err != nil {
		return nil, err
	}
	if len(b) < r.size {
		err = file.Truncate(int64(len(b)))
	}
	var seals memfd.Seals
	if err == nil {
		seals, err = fill(file, b)
	}
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("sealbuf: reserve: from bytes: %w", err)
	}
	return newSealed(file, len(b), seals), nil
}

// Take returns a ready memfd as a writable *Buffer of Size bytes, its pages
// mapped at once (no page fault while filling), zero-filled and sealed
// against shrinking and growing, as New's. The caller owns it: Seal it or
// Close it. It waits for a ready memfd when none is, until ctx is done; a
// ctx already done fails at once, also when one is ready. After Close it
// fails with an error wrapping os.ErrClosed. While the background goroutine
// is failing (such as ENOMEM or EMFILE) and nothing is ready, calls return
// its error instead of waiting; it tries again every 10 ms, and calls wait
// and succeed again once it has.
func (r *Reserve) Take(ctx context.Context) (*Buffer, error) {
	file, err := r.take(ctx, "take")
	if err != nil {
		return nil, err
	}
	mem, err := func() ([]byte, error) {
		if err := file.AddSeals(sealSize); err != nil {
			return nil, err
		}
		// MAP_POPULATE, which mmap-go cannot pass: the pages exist, so
		// this only maps them, in one call instead of a fault each.
		return mapFile(file, r.size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	}()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("sealbuf: reserve: take: %w", err)
	}
	return &Buffer{file: file, mem: mem, size: r.size}, nil
}

// Ready returns how many memfds are ready, to Take or FromBytes without
// waiting.
func (r *Reserve) Ready() int { return len(r.ready) }

// Size returns the size of every memfd the Reserve makes.
func (r *Reserve) Size() int { return r.size }

// Close stops the goroutine, waits for it, and closes every memfd not
// taken (what Take and FromBytes returned stays the caller's). A second Close returns
// an error wrapping os.ErrClosed.
func (r *Reserve) Close() error {
	closed := false
	r.once.Do(func() { close(r.stop); closed = true })
	if !closed {
		return fmt.Errorf("sealbuf: reserve: close: %w", os.ErrClosed)
	}
	<-r.done
	for {
		select {
		case x := <-r.ready:
			x.Close()
		default:
			return nil
		}
	}
}

// fill keeps the channel full until Close.
func (r *Reserve) fill() {
	defer close(r.done)
	for {
		select {
		case <-r.stop:
			return
		default:
		}
		f, err := r.make()
		r.setErr(err)
		if err != nil {
			select {
			case <-time.After(reserveRetry):
				continue
			case <-r.stop:
				return
			}
		}
		select {
		case r.ready <- f:
		case <-r.stop:
			f.Close()
			return
		}
	}
}

// make creates one memfd of r.size bytes with every page allocated.
func (r *Reserve) make() (*memfd.File, error) {
	file, err := memfd.Create(r.name)
	if err != nil {
		return nil, err
	}
	err = file.Truncate(int64(r.size))
	if err == nil && r.size > 0 {
		err = file.Control(func(fd int) error {
			return os.NewSyscallError("fallocate", unix.Fallocate(fd, 0, 0, int64(r.size)))
		})
	}
	if err != nil {
		file.Close()
		if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.ENOMEM) {
			err = fmt.Errorf("%w (%w)", err, ErrTooLarge)
		}
		return nil, fmt.Errorf("%d-byte memfd: %w", r.size, err)
	}
	return file, nil
}
