//go:build linux

package memfd

import (
	"io"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// File owns one memfd descriptor. It is safe for concurrent use. All I/O is
// positional: File never reads or moves the shared file offset.
//
// After Close every method returns an error wrapping os.ErrClosed, except
// Name, which never fails.
type File struct {
	f    *os.File // the owner of the descriptor
	name string
}

// Name returns the name given to Create, or the name the kernel reports for
// an adopted memfd (without the "memfd:" prefix). It never fails, also after
// Close.
func (m *File) Name() string { return m.name }

// Size returns the current size of the memfd in bytes. Unless the memfd is
// sealed against shrinking and growing, another holder of the descriptor may
// change it at any time.
func (m *File) Size() (int64, error) {
	var st unix.Stat_t
	err := m.control("stat", func(fd int) error { return unix.Fstat(fd, &st) })
	return st.Size, err
}

// Truncate sets the size of the memfd. It fails with an error matching
// unix.EPERM when a seal forbids the change.
func (m *File) Truncate(size int64) error {
	return opError(m.name, "truncate", m.f.Truncate(size))
}

// ReadAt reads len(p) bytes at offset off with pread(2). It behaves as
// (*os.File).ReadAt: at or past the end it returns 0, io.EOF; a read
// crossing the end returns the bytes up to it and io.EOF.
func (m *File) ReadAt(p []byte, off int64) (int, error) {
	n, err := m.f.ReadAt(p, off)
	if err != nil && err != io.EOF {
		return n, opError(m.name, "read", err)
	}
	return n, err
}

// WriteAt writes p at offset off with pwrite(2), growing the file if needed.
// It fails with an error matching unix.EPERM when the memfd is sealed against
// writing (or, to grow it, against growing).
func (m *File) WriteAt(p []byte, off int64) (int, error) {
	n, err := m.f.WriteAt(p, off)
	return n, opError(m.name, "write", err)
}

// Seals returns the seals now set on the memfd (F_GET_SEALS).
func (m *File) Seals() (Seals, error) {
	var s Seals
	err := m.control("get seals", func(fd int) error {
		v, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
		s = Seals(v)
		return err
	})
	return s, err
}

// AddSeals adds seals (F_ADD_SEALS); seals already set stay set. It fails
// with an error matching unix.EPERM once SealSeal is set, and with one
// matching unix.EBUSY when SealWrite is asked for while a writable shared
// mapping of the memfd exists.
func (m *File) AddSeals(s Seals) error {
	return m.control("add seals", func(fd int) error {
		_, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, int(s))
		return err
	})
}

// SyscallConn returns a raw connection for borrowing the descriptor in a
// callback (Control). The number must not be kept after the callback
// returns, must not be closed, and must be used only for positional I/O,
// mmap and fcntl seal calls: the open file description may be shared.
func (m *File) SyscallConn() (syscall.RawConn, error) {
	rc, err := m.f.SyscallConn()
	if err != nil {
		return nil, opError(m.name, "syscall conn", err)
	}
	if err := rc.Control(func(uintptr) {}); err != nil {
		return nil, opError(m.name, "syscall conn", err)
	}
	return rawConn{rc: rc, name: m.name}, nil
}

// rawConn translates the poll package's "use of closed file" into an error
// wrapping os.ErrClosed, as every other method of File does.
type rawConn struct {
	rc   syscall.RawConn
	name string
}

func (c rawConn) Control(fn func(fd uintptr)) error {
	return opError(c.name, "control", c.rc.Control(fn))
}

func (c rawConn) Read(fn func(fd uintptr) bool) error {
	return opError(c.name, "raw read", c.rc.Read(fn))
}

func (c rawConn) Write(fn func(fd uintptr) bool) error {
	return opError(c.name, "raw write", c.rc.Write(fn))
}

// ReopenReadOnly opens the memfd again, read-only and close-on-exec, through
// /proc/self/fd. The result is a new open file description with its own
// lifetime: closing either File does not affect the other. Hand the
// read-only one to peers that must not write.
func (m *File) ReopenReadOnly() (*File, error) {
	var f *os.File
	err := m.control("reopen read-only", func(fd int) error {
		nfd, err := unix.Open(procFdPath(fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		f = os.NewFile(uintptr(nfd), "memfd:"+m.name)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &File{f: f, name: m.name}, nil
}

// Close closes the descriptor. Mappings made from it stay valid until they
// are unmapped. A second Close returns an error wrapping os.ErrClosed.
func (m *File) Close() error {
	return opError(m.name, "close", m.f.Close())
}

// Control borrows the descriptor for the length of fn, which must not keep,
// close or dup the number (see SyscallConn). It returns fn's error, naming
// the memfd; after Close it returns an error wrapping os.ErrClosed without
// calling fn.
func (m *File) Control(fn func(fd int) error) error {
	return m.control("control", fn)
}

// control is Control with the operation named in the error.
func (m *File) control(op string, fn func(fd int) error) error {
	rc, err := m.f.SyscallConn()
	if err != nil {
		return opError(m.name, op, err)
	}
	var opErr error
	if err := rc.Control(func(fd uintptr) { opErr = fn(int(fd)) }); err != nil {
		return opError(m.name, op, err)
	}
	return opError(m.name, op, opErr)
}

func procFdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }
