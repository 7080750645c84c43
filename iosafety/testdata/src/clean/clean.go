// Package clean holds idiomatic descriptor code, modelled on sealbuf's
// memfd package and on the standard library's own patterns: nothing here
// is reported.
package clean

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// File owns one memfd descriptor through an *os.File.
type File struct {
	f    *os.File
	name string
}

func Create(name string) (*File, error) {
	fd, err := memfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	return &File{f: os.NewFile(uintptr(fd), "memfd:"+name), name: name}, nil
}

func memfdCreate(name string, flags int) (int, error) {
	fd, err := unix.MemfdCreate(name, flags)
	if !errors.Is(err, syscall.EINVAL) {
		return fd, err
	}
	return unix.MemfdCreate(name, flags)
}

func FromFile(f *os.File) (*File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var name string
	var checkErr error
	if err := rc.Control(func(fd uintptr) { name, checkErr = inspect(int(fd)) }); err != nil {
		return nil, err
	}
	return &File{f: f, name: name}, checkErr
}

func inspect(fd int) (string, error) {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil {
		return "", err
	}
	var st unix.Stat_t
	return "", unix.Fstat(fd, &st)
}

func (m *File) Size() (int64, error) {
	var st unix.Stat_t
	err := m.control(func(fd int) error { return unix.Fstat(fd, &st) })
	return st.Size, err
}

func (m *File) Seals() (int, error) {
	var s int
	err := m.control(func(fd int) error {
		v, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
		s = v
		return err
	})
	return s, err
}

func (m *File) ReopenReadOnly() (*File, error) {
	var f *os.File
	err := m.control(func(fd int) error {
		nfd, err := unix.Open("/proc/self/fd/N", unix.O_RDONLY|unix.O_CLOEXEC, 0)
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

func (m *File) ReadAt(p []byte, off int64) (int, error)  { return m.f.ReadAt(p, off) }
func (m *File) WriteAt(p []byte, off int64) (int, error) { return m.f.WriteAt(p, off) }
func (m *File) Close() error                             { return m.f.Close() }

// Control borrows the descriptor for the length of fn.
func (m *File) Control(fn func(fd int) error) error { return m.control(fn) }

func (m *File) control(fn func(fd int) error) error {
	rc, err := m.f.SyscallConn()
	if err != nil {
		return err
	}
	var opErr error
	if err := rc.Control(func(fd uintptr) { opErr = fn(int(fd)) }); err != nil {
		return err
	}
	return opErr
}

func Map(m *File, n int) (data []byte, err error) {
	cerr := m.Control(func(fd int) error {
		data, err = unix.Mmap(fd, 0, n, unix.PROT_READ, unix.MAP_SHARED)
		return nil
	})
	if cerr != nil {
		return nil, cerr
	}
	return data, err
}

// Sending and receiving descriptors the net way.

func Send(c *net.UnixConn, f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var oob []byte
	if err := rc.Control(func(fd uintptr) { oob = unix.UnixRights(int(fd)) }); err != nil {
		return err
	}
	_, _, err = c.WriteMsgUnix([]byte{0}, oob, nil)
	return err
}

func Receive(c *net.UnixConn) ([]*os.File, error) {
	oob := make([]byte, 64)
	_, oobn, _, _, err := c.ReadMsgUnix(make([]byte, 1), oob)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			return nil, err
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "received"))
		}
	}
	return files, nil
}

func ReadNonblocking(c *net.UnixConn, p []byte) (n int, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	rerr := rc.Read(func(fd uintptr) bool {
		n, err = unix.Read(int(fd), p)
		return err != syscall.EAGAIN
	})
	if rerr != nil {
		return 0, rerr
	}
	return n, err
}

func Copy(dst io.Writer, f *os.File) (int64, error) {
	return io.Copy(dst, io.NewSectionReader(f, 0, 1<<20))
}

func IsTerminal() bool {
	var st unix.Stat_t
	return unix.Fstat(int(os.Stdin.Fd()), &st) == nil
}
