//go:build linux

package sealbuf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/sealbuf/sealbuf/memfd"
	"github.com/sealbuf/sealbuf/sigbus"
	"golang.org/x/sys/unix"
)

// Mapping is a shared view of a memfd that its peer may resize or rewrite:
// the untrusted consumer's view. Every access runs on the calling goroutine
// under a fault guard (package sigbus), and is checked against the file's
// size afterwards, so a peer that truncates the file turns the access into
// an error matching ErrTruncated instead of a SIGBUS that kills the process.
//
// Where the memfd is sealed against shrinking, no access can fault and the
// guard is skipped; the contents may still change unless it is also sealed
// against writing. On hugetlbfs that takes a write or future_write seal as
// well: without one, the peer can punch a page out, and touching it faults
// once the huge page pool is empty; such a fault matches ErrTruncated too,
// although the file's size did not change.
//
// Bytes of the mapping are never handed out: use ReadAt, WriteAt, or Access,
// whose callback gets the window for its own duration only. After a fault
// the part of the mapping past the file's end is replaced by zero pages
// (MAP_FIXED), so a stray read cannot crash the process; accesses touching
// it keep failing with ErrTruncated until the file grows back.
//
// A Mapping is safe for concurrent use. Close refuses new accesses at once,
// waits for running ones, and unmaps.
type Mapping struct {
	life   sync.RWMutex // read: an access is running; write: Close
	closed atomic.Bool

	file     *memfd.File
	mem      []byte
	seals    memfd.Seals
	writable atomic.Bool // cleared when healing finds the memfd future-write sealed
	fixed    bool        // faultFree: no access can fault, none is guarded
	huge     bool        // on hugetlbfs

	patch    sync.Mutex    // serialises poisoning and healing
	faults   atomic.Uint64 // number of faults so far; an access that sees it change failed
	poisonAt atomic.Int64  // mem[poisonAt:] is anonymous zero pages; len(mem) when healthy

	// mapped is the MappedBytes counter of the Conn that received this
	// Mapping (nil otherwise): Close takes Len off it.
	mapped *atomic.Uint64
}

// Map maps the memfd f, shared: the peer's writes are visible, and WriteAt
// reaches the memfd (when f is writable and not write-sealed). Len is fixed
// at the file's size now. A non-memfd fails matching memfd.ErrNotMemfd;
// MapRequire and MapMaxSize add checks (ErrNotSealed, ErrTooLarge). A memfd
// that mmap cannot take (ENOMEM) fails matching ErrTooLarge, as for Open.
//
// On success the Mapping owns f; on error f stays the caller's, open and
// unchanged.
func Map(f *os.File, opts ...MapOption) (*Mapping, error) {
	p := newMapPolicy(opts)
	file, info, err := memfd.Adopt(f)
	if err != nil {
		return nil, fmt.Errorf("sealbuf: map: %w", err)
	}
	seals := info.Seals
	size, err := verifyInfo(file.Name(), info, p.require, p.maxSize)
	if err != nil {
		return nil, fmt.Errorf("sealbuf: map: %w", err)
	}
	writable := !p.readOnly && !seals.Has(memfd.SealWrite) && !seals.Has(memfd.SealFutureWrite)
	if writable {
		writable, err = openedReadWrite(file)
		if err != nil {
			return nil, fmt.Errorf("sealbuf: map: %w", err)
		}
	}
	var mem []byte
	if writable {
		mem, err = mapFile(file, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			err = mapError(file, size, err)
		}
	} else {
		mem, err = mapReadOnly(file, size)
	}
	if err != nil {
		return nil, fmt.Errorf("sealbuf: map: %w", err)
	}
	m := &Mapping{file: file, mem: mem, seals: seals, fixed: faultFree(info), huge: info.HugeTLB}
	m.writable.Store(writable)
	m.poisonAt.Store(int64(size))
	return m, nil
}

func openedReadWrite(file *memfd.File) (bool, error) {
	var rw bool
	err := file.Control(func(fd int) error {
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		rw = fl&unix.O_ACCMODE == unix.O_RDWR
		return err
	})
	return rw, err
}

// Len returns the size of the mapping, fixed at Map time.
func (m *Mapping) Len() int { return len(m.mem) }

// Seals returns the seals the memfd had at Map time.
func (m *Mapping) Seals() memfd.Seals { return m.seals }

// File returns the memfd, borrowed: the Mapping owns it and closes it.
func (m *Mapping) File() *memfd.File { return m.file }

// ReadAt copies bytes at off into p, as io.ReaderAt relative to Len: at or
// past Len it returns 0, io.EOF; a read crossing Len returns the bytes up to
// it and io.EOF. A read touching bytes past the file's current end returns
// 0 and an error matching ErrTruncated, never a short count or zeros.
func (m *Mapping) ReadAt(p []byte, off int64) (int, error) {
	if m.closed.Load() {
		return 0, m.closedError("read")
	}
	if off < 0 {
		return 0, fmt.Errorf("sealbuf: read mapping at %d: negative offset", off)
	}
	if off >= int64(len(m.mem)) {
		return 0, io.EOF
	}
	n := min(len(p), len(m.mem)-int(off))
	err := m.access("read", int(off), int(off)+n, false, func(mem []byte) error {
		copy(p[:n], mem[off:])
		return nil
	})
	if err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt copies p into the mapping at off; the peer sees the bytes. It never
// changes the file's size: a write past Len fails with n = 0, and one
// touching bytes past the file's current end fails matching ErrTruncated.
func (m *Mapping) WriteAt(p []byte, off int64) (int, error) {
	if m.closed.Load() {
		return 0, m.closedError("write")
	}
	if !m.writable.Load() {
		err := fmt.Errorf("sealbuf: write mapping %q: it is read-only (the descriptor is O_RDONLY, the memfd is write-sealed, or MapReadOnly was given)", m.file.Name())
		// A write inside the window touching bytes past the file's end
		// matches ErrTruncated too, as every such access does, read-only
		// or not (past the window it is only a write that cannot fit).
		end := off + int64(len(p))
		if size, serr := m.file.Size(); serr == nil && len(p) > 0 && off >= 0 && end <= int64(len(m.mem)) && end > size {
			err = fmt.Errorf("%w; the bytes are also past the file's end (%d bytes): %w", err, size, ErrTruncated)
		}
		return 0, err
	}
	if off < 0 || off > int64(len(m.mem)) || int64(len(p)) > int64(len(m.mem))-off {
		return 0, fmt.Errorf("sealbuf: write mapping %q: %d bytes at %d do not fit in its %d bytes (a Mapping never grows the file)", m.file.Name(), len(p), off, len(m.mem))
	}
	if len(p) == 0 {
		return 0, nil
	}
	err := m.access("write", int(off), int(off)+len(p), true, func(mem []byte) error {
		copy(mem[off:], p)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// Access runs fn with the whole Len-byte window of the mapping, on the
// calling goroutine, under the fault guard. It returns fn's error when
// nothing faulted, and an error matching ErrTruncated when the file ended
// before Len during the access (fn's results are then undefined; on a file
// already truncated fn may not run at all). A 0-byte Mapping returns nil.
//
// fn must not keep the slice, or anything that aliases it, after it returns,
// must not hand it to another goroutine (the guard covers only this one),
// and must not print it or use it as a map key (see package sigbus). fn must
// not write to a read-only mapping, nor call Close.
func (m *Mapping) Access(fn func([]byte) error) error {
	if len(m.mem) == 0 {
		if m.closed.Load() {
			return m.closedError("access")
		}
		return nil
	}
	return m.access("access", 0, len(m.mem), false, fn)
}

// access runs fn on the mapping for an access to mem[off:end]. A write
// checks the file's size first, so that a file already truncated gets no
// bytes at all (a truncation racing with the write can still leave part of
// it written; the error then says the result is undefined).
func (m *Mapping) access(op string, off, end int, write bool, fn func(mem []byte) error) error {
	if m.closed.Load() {
		return m.closedError(op)
	}
	m.life.RLock()
	defer m.life.RUnlock()
	if m.closed.Load() {
		return m.closedError(op)
	}
	if m.fixed {
		return fn(m.mem)
	}
	// Load the fault count before poisonAt: poison stores poisonAt before
	// it counts the fault (a seqlock), so an access either sees the mapping
	// poisoned and takes the slow path, or sees the count change at the end.
	epoch := m.faults.Load()
	if int64(end) > m.poisonAt.Load() {
		if err := m.heal(op, off, end); err != nil {
			return err
		}
		if write && !m.writable.Load() {
			return fmt.Errorf("sealbuf: write mapping %q: the peer sealed the memfd against future writes; the Mapping is read-only now", m.file.Name())
		}
	} else if write {
		if size, err := m.file.Size(); err != nil {
			return fmt.Errorf("sealbuf: %s mapping: %w", op, err)
		} else if size < int64(end) {
			return m.truncatedError(op, off, end, size, nil)
		}
	}
	var fnErr error
	if err := sigbus.Guard(m.mem, func() { fnErr = fn(m.mem) }); err != nil {
		return m.fault(op, off, end, err)
	}
	if m.faults.Load() != epoch {
		return m.concurrentFaultError(op, off, end)
	}
	size, err := m.file.Size()
	if err != nil {
		return fmt.Errorf("sealbuf: %s mapping: %w", op, err)
	}
	if size < int64(end) {
		return m.truncatedError(op, off, end, size, nil)
	}
	return fnErr
}

// fault handles a fault inside the mapping: it patches the mapping past the
// file's end with zero pages and counts the fault (failing every access
// running now), and returns the error. A fault in a read-only mapping is
// reported the same way: it cannot be told from a truncation undone at once.
// A fault below the file's end is no truncation: a page inside the mapping
// is gone (see lostPageError).
func (m *Mapping) fault(op string, off, end int, err error) error {
	size, serr := m.file.Size()
	if serr != nil {
		size = 0 // unknown: poison it all, heal will look again
	}
	m.poison(size)
	if serr != nil {
		size = -1
	}
	if fe, ok := errors.AsType[*sigbus.FaultError](err); ok && fe.Offset < size {
		if m.huge {
			return m.lostPageError(op, off, end, size, fe.Offset, err)
		}
		// On tmpfs a page below the end never faults (a hole gets a fresh
		// zero page): the file was cut and grown back since the fault.
		return m.regrownError(op, off, end, size, err)
	}
	return m.truncatedError(op, off, end, size, err)
}

// poison replaces mem[pageUp(size):] with private anonymous zero pages, so
// that stray reads of the truncated part no longer fault, and counts the
// fault. Under the patch lock, in this order: poisonAt is stored, the fault
// counted, then the pages swapped (atomically with respect to page faults;
// Close cannot unmap meanwhile, as the caller holds the lifetime lock). If
// the swap fails (hugetlb ranges cannot be split at normal pages), the
// mapping stays as it was: poisonAt still sends accesses through heal,
// which looks at the file's size before touching it.
func (m *Mapping) poison(size int64) {
	m.patch.Lock()
	defer m.patch.Unlock()
	start := int64(pageUp(int(min(max(size, 0), int64(len(m.mem))))))
	if start >= m.poisonAt.Load() {
		m.faults.Add(1)
		return
	}
	m.poisonAt.Store(start)
	m.faults.Add(1)
	_ = m.mapZeros(start)
}

// heal runs before an access to mem[off:end] that touches the poisoned part:
// if the file has grown back past end, it maps the file over the zero pages
// again; otherwise the access fails without running.
func (m *Mapping) heal(op string, off, end int) error {
	m.patch.Lock()
	defer m.patch.Unlock()
	at := m.poisonAt.Load()
	if int64(end) <= at {
		return nil
	}
	size, err := m.file.Size()
	if err != nil {
		return fmt.Errorf("sealbuf: %s mapping: %w", op, err)
	}
	if size < int64(end) {
		return m.truncatedError(op, off, end, size, nil)
	}
	err = m.file.Control(func(fd int) error {
		err := m.remapFile(at, fd)
		if errors.Is(err, unix.EPERM) && m.writable.Load() {
			// The peer sealed the memfd against future writes since Map:
			// the kernel refuses new writable mappings. Heal read-only,
			// and the Mapping is read-only from now on.
			m.writable.Store(false)
			err = m.remapFile(at, fd)
		}
		return err
	})
	if err != nil {
		return m.unhealedError(op, off, end, size, err)
	}
	m.poisonAt.Store(int64(len(m.mem)))
	return nil
}

// mapZeros maps private anonymous zero pages over mem[start:] with
// MAP_FIXED. Unlike a file (see remapFile), anonymous memory takes no
// reservation that the kernel could refuse after dropping the old pages.
func (m *Mapping) mapZeros(start int64) error {
	_, err := unix.MmapPtr(-1, 0, unsafe.Pointer(unsafe.SliceData(m.mem[start:])), m.tailLen(start), m.prot(),
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED)
	return err
}

// remapFile maps the file at offset start over mem[start:], shared, or
// fails leaving mem[start:] as it was. A MAP_FIXED mmap of a file can fail
// after the kernel has dropped what was mapped there: hugetlbfs reserves
// its pages only then, and fails when the pool cannot back them. That
// would leave a hole in the address space, free for the next mmap of
// anyone in the process, and the next heal would map the file over that
// memory. So the file is mapped once elsewhere first: the probe takes
// whatever the mapping needs (for a shared hugetlbfs mapping, the inode's
// reservation of the range), and the MAP_FIXED after it finds it taken.
// (A truncation landing between the two drops that reservation again; for
// the hole to reappear, the pool must also be empty at that moment, within
// a window of microseconds.)
func (m *Mapping) remapFile(start int64, fd int) error {
	length := m.tailLen(start)
	prot := m.prot()
	probe, err := unix.MmapPtr(fd, start, nil, length, prot, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	_, err = unix.MmapPtr(fd, start, unsafe.Pointer(unsafe.SliceData(m.mem[start:])), length, prot, unix.MAP_SHARED|unix.MAP_FIXED)
	if uerr := unix.MunmapPtr(probe, length); err == nil {
		err = uerr
	}
	return err
}

// tailLen is the length of the mapping from start on, in whole pages.
func (m *Mapping) tailLen(start int64) uintptr { return uintptr(pageUp(len(m.mem)) - int(start)) }

// prot is the protection of the mapping now.
func (m *Mapping) prot() int {
	if m.writable.Load() {
		return unix.PROT_READ | unix.PROT_WRITE
	}
	return unix.PROT_READ
}

// The errors of a failed access all match ErrTruncated, as the caller's
// answer is the same (drop what the access produced; bytes below the file's
// end stay usable), but each says what happened.

// accessPrefix starts the message of an access's error.
func (m *Mapping) accessPrefix(op string, off, end int) string {
	return fmt.Sprintf("sealbuf: %s mapping %q: bytes [%d, %d) of %d: ", op, m.file.Name(), off, end, len(m.mem))
}

// truncatedError reports an access touching bytes past the file's end,
// which is size bytes now (-1: unknown).
func (m *Mapping) truncatedError(op string, off, end int, size int64, cause error) error {
	now := "shorter"
	if size >= 0 {
		now = fmt.Sprintf("%d bytes", size)
	}
	return &truncatedError{
		msg:   m.accessPrefix(op, off, end) + "the file is now " + now + "; only bytes below its end can be used: " + ErrTruncated.Error(),
		cause: cause,
	}
}

// regrownError reports an access that faulted past the file's end, which
// is size bytes again by now.
func (m *Mapping) regrownError(op string, off, end int, size int64, cause error) error {
	return &truncatedError{
		msg:   m.accessPrefix(op, off, end) + fmt.Sprintf("the file was cut during the access (it has grown back to %d bytes since); what the access produced is invalid: ", size) + ErrTruncated.Error(),
		cause: cause,
	}
}

// lostPageError reports a fault at offset at, below the file's end (size
// bytes): the page was there when the mapping was made, and is no more.
func (m *Mapping) lostPageError(op string, off, end int, size, at int64, cause error) error {
	return &truncatedError{
		msg: m.accessPrefix(op, off, end) + fmt.Sprintf("the file's size did not change (it still has %d bytes; the access faulted at offset %d), "+
			"but a page inside the mapping is gone: a hole punched in a hugetlbfs memfd whose huge page pool is empty, or memory the kernel could not supply; "+
			"what the access produced is invalid, and the page faults again until the pool has a free page (it then reads as zeros)", size, at),
		cause: cause,
	}
}

// concurrentFaultError reports an access that did not fault itself but ran
// while another access to the mapping faulted.
func (m *Mapping) concurrentFaultError(op string, off, end int) error {
	size, err := m.file.Size()
	if err != nil || size < int64(end) {
		if err != nil {
			size = -1
		}
		return m.truncatedError(op, off, end, size, nil)
	}
	return &truncatedError{
		msg: m.accessPrefix(op, off, end) + fmt.Sprintf("another access faulted inside the mapping while this one ran, and the file (%d bytes now) covers these bytes: "+
			"it was cut and has grown back, or a page inside the mapping is gone (a hole punched in a hugetlbfs memfd whose huge page pool is empty); "+
			"what the access produced is invalid", size),
	}
}

// unhealedError reports an access to bytes below the file's end (size
// bytes) that cannot be mapped again after a truncation poisoned them:
// remapping the file failed with cause.
func (m *Mapping) unhealedError(op string, off, end int, size int64, cause error) error {
	why := "mapping them failed"
	if m.huge && errors.Is(cause, unix.ENOMEM) {
		why = "the huge page pool has too few free pages to back them (raise /proc/sys/vm/nr_hugepages)"
	}
	return &truncatedError{
		msg: m.accessPrefix(op, off, end) + fmt.Sprintf("the file was cut and has grown back to %d bytes, but its pages from offset %d on cannot be mapped again: %s (%v); "+
			"until they can, only bytes below offset %d can be used", size, m.poisonAt.Load(), why, cause, m.poisonAt.Load()),
		cause: cause,
	}
}

// truncatedError matches ErrTruncated and, when it has one, its cause (the
// *sigbus.FaultError of a fault, the error of a failed remap).
type truncatedError struct {
	msg   string
	cause error
}

func (e *truncatedError) Error() string { return e.msg }

func (e *truncatedError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrTruncated}
	}
	return []error{ErrTruncated, e.cause}
}

func (m *Mapping) closedError(op string) error {
	return fmt.Errorf("sealbuf: %s mapping %q: %w", op, m.file.Name(), os.ErrClosed)
}

// Close refuses new accesses at once, waits for running ones, then unmaps the
// memory and closes the memfd. A second Close returns an error wrapping
// os.ErrClosed.
func (m *Mapping) Close() error {
	if m.closed.Swap(true) {
		return m.closedError("close")
	}
	untrack(m.mapped, len(m.mem))
	m.life.Lock()
	defer m.life.Unlock()
	err := unmap(m.mem) // m.mem stays as is: nothing reads it once closed is set
	if cerr := m.file.Close(); err == nil {
		err = cerr
	}
	return err
}
