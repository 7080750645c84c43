//go:build linux

package handoff

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Reserve is an experiment, not part of the library: it keeps fresh memfds
// of one size ready ahead of need, their pages already allocated
// (fallocate), so that allocating them leaves the message's path. A
// background goroutine makes them and keeps up to depth waiting; FromBytes
// writes a message into one with pwrite (into existing pages) and seals it.
// sealed-prefault and BenchmarkBuild/reserve (bench module) measure it.
//
// It was sealbuf.Reserve until issue #14 removed it from the library, for
// it measured no end-to-end gain. It is written here with raw calls only:
// the library cannot wrap a memfd it did not create in a *sealbuf.Sealed
// without sealbuf.Open (which maps it, a cost the producer would not pay),
// so FromBytes returns the sealed memfd as an *os.File for
// sealbuf.Conn.SendFiles; the consumer's Receive verifies it as it does
// any buffer. Compared with what the library's Reserve did, it skips the
// F_GET_SEALS read-back and the Sealed wrapper (one fcntl and one
// allocation a message), and it has no Take (a writable mapping of a
// reserved memfd, MAP_POPULATE, which lost to FromBytes: Seal unmaps the
// pages one by one).
//
// What it taught, measured on a 2-core VM with the library's version
// (BenchmarkBuild, the reserve full before each build): with the process
// on one CPU, FromBytes from a reserve was 1.8x faster than
// sealbuf.FromBytes at 64 KiB, level at 1 MiB and 1.8x slower at 16 MiB;
// on two CPUs it was slower at every size (1 MiB: 488 against 304 µs).
// Two reasons, both seen in strace: a fresh memfd reuses pages just freed,
// still in the CPU's cache, while reserved pages went cold (a 1 MiB pwrite
// took 307 µs into reserved pages, 178 µs into fresh ones); and pages the
// goroutine allocated on another CPU still sit in that CPU's LRU batch,
// whose extra reference makes the write seal wait for a drain of every CPU
// (memfd_wait_for_pins: 75 µs against 6 µs). It may pay where page
// allocation is dearer than here. A producer that never waits gains
// nothing in any case: the goroutine spends the same CPU time, only
// earlier.
//
// A Reserve holds up to depth+1 memfds until Close. FromBytes and Ready
// may be called from one goroutine at a time, not concurrently with Close.
type Reserve struct {
	size  int
	flags int // memfd_create flags (floorMemfdFlags)
	ready chan *os.File
	stop  chan struct{}
	done  chan struct{} // closed when the goroutine has returned
	err   error         // why the goroutine stopped early; read after done
	shut  bool          // Close was called
}

// NewReserve makes the first memfd of size bytes at once (so that a size
// that cannot work fails here), then starts the goroutine that keeps depth
// of them ready. depth must be at least 1. The caller must Close it.
func NewReserve(size, depth int) (*Reserve, error) {
	if depth < 1 || size < 0 {
		return nil, fmt.Errorf("new reserve: size %d, depth %d: want size ≥ 0, depth ≥ 1", size, depth)
	}
	flags, err := floorMemfdFlags()
	if err != nil {
		return nil, fmt.Errorf("new reserve: %w", err)
	}
	r := &Reserve{
		size:  size,
		flags: flags,
		ready: make(chan *os.File, depth),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	f, err := r.make()
	if err != nil {
		return nil, fmt.Errorf("new reserve: %w", err)
	}
	r.ready <- f
	go r.fill()
	return r, nil
}

// Size returns the size of every memfd the Reserve makes.
func (r *Reserve) Size() int { return r.size }

// Ready returns how many memfds are ready, to use without waiting.
func (r *Reserve) Ready() int { return len(r.ready) }

// FromBytes writes b, exactly Size bytes, into a ready memfd (waiting for
// one when none is) with pwrite and seals it shrink|grow|write|seal, as
// sealbuf.FromBytes does a fresh one. The caller owns the result (an
// O_RDWR, close-on-exec memfd) and must close it; b is not retained.
func (r *Reserve) FromBytes(b []byte) (*os.File, error) {
	if len(b) != r.size {
		return nil, fmt.Errorf("reserve: from bytes: %d bytes, the reserve makes %d", len(b), r.size)
	}
	f, err := r.take()
	if err != nil {
		return nil, fmt.Errorf("reserve: from bytes: %w", err)
	}
	if err := writeAndSeal(f, b); err != nil {
		f.Close()
		return nil, fmt.Errorf("reserve: from bytes: %w", err)
	}
	return f, nil
}

// writeAndSeal is sealbuf.FromBytes's fill: pwrite, then the seals, on one
// thread (the write leaves up to a batch of pages in this CPU's LRU cache,
// which the write seal drains where it runs; from another CPU it must
// drain every CPU's).
func writeAndSeal(f *os.File, b []byte) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if _, err := f.WriteAt(b, 0); err != nil {
		return err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = floorSeal(int(fd), floorSeals) }); err != nil {
		return err
	}
	return serr
}

// take returns a ready memfd, waiting for one when none is.
func (r *Reserve) take() (*os.File, error) {
	if r.shut {
		return nil, os.ErrClosed
	}
	select {
	case f := <-r.ready:
		return f, nil
	case <-r.done:
	}
	select {
	case f := <-r.ready: // made before the goroutine stopped
		return f, nil
	default:
		return nil, r.err
	}
}

// Close stops the goroutine, waits for it, and closes every memfd not
// taken. A second Close returns an error wrapping os.ErrClosed.
func (r *Reserve) Close() error {
	if r.shut {
		return fmt.Errorf("reserve: close: %w", os.ErrClosed)
	}
	r.shut = true
	close(r.stop)
	<-r.done
	for {
		select {
		case f := <-r.ready:
			f.Close()
		default:
			return nil
		}
	}
}

// fill keeps the channel full until Close, or until making a memfd fails
// (out of memory or descriptors): then takes report the failure once
// nothing is ready.
func (r *Reserve) fill() {
	defer close(r.done)
	for {
		select {
		case <-r.stop:
			return
		default:
		}
		f, err := r.make()
		if err != nil {
			r.err = err
			return
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
func (r *Reserve) make() (*os.File, error) {
	mfd, err := unix.MemfdCreate("sealbuf-reserve", r.flags)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	f := os.NewFile(uintptr(mfd), "memfd:sealbuf-reserve")
	err = f.Truncate(int64(r.size))
	if err == nil && r.size > 0 {
		err = fallocate(f, int64(r.size))
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%d-byte memfd: %w", r.size, err)
	}
	return f, nil
}

// fallocate allocates (and the kernel zeroes) f's first size bytes.
func fallocate(f *os.File, size int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = unix.Fallocate(int(fd), 0, 0, size) }); err != nil {
		return err
	}
	if ferr != nil {
		return os.NewSyscallError("fallocate", ferr)
	}
	return nil
}
