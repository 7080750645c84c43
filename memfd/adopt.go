//go:build linux

package memfd

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// FromFile adopts f, a descriptor that should be a memfd (typically one just
// received over a UNIX socket). It checks, without reading, writing or
// changing f, that f is a regular file on tmpfs or hugetlbfs, opened for I/O
// (not O_PATH), whose seals can be queried.
//
// On success the returned File owns f: close the File, not f. On error f
// stays the caller's, open and unchanged; the error matches ErrNotMemfd when
// f is another kind of file (pipe, socket, device, directory, disk file,
// O_PATH descriptor).
func FromFile(f *os.File) (*File, error) {
	if f == nil {
		return nil, fmt.Errorf("memfd: adopt: nil *os.File: %w", ErrNotMemfd)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, opError(f.Name(), "adopt", err)
	}
	var name string
	var checkErr error
	err = rc.Control(func(fd uintptr) {
		name, checkErr = inspect(int(fd))
	})
	if err != nil {
		return nil, opError(f.Name(), "adopt", err)
	}
	if checkErr != nil {
		return nil, fmt.Errorf("memfd: adopt %s: %w", f.Name(), checkErr)
	}
	return &File{f: f, name: name}, nil
}

// inspect checks that fd is a memfd and returns its kernel name.
func inspect(fd int) (string, error) {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return "", os.NewSyscallError("fcntl F_GETFL", err)
	}
	if fl&unix.O_PATH != 0 {
		return "", fmt.Errorf("an O_PATH descriptor cannot be read or mapped: %w", ErrNotMemfd)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", os.NewSyscallError("fstat", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return "", fmt.Errorf("it is a %s, not a regular file: %w", fileKind(st.Mode), ErrNotMemfd)
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return "", os.NewSyscallError("fstatfs", err)
	}
	if sfs.Type != unix.TMPFS_MAGIC && sfs.Type != unix.HUGETLBFS_MAGIC {
		return "", fmt.Errorf("it is a regular file on a disk file system (magic %#x), not on tmpfs or hugetlbfs: %w", sfs.Type, ErrNotMemfd)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0); err != nil {
		return "", fmt.Errorf("its seals cannot be queried (%v): %w", err, ErrNotMemfd)
	}
	link, err := os.Readlink(procFdPath(fd))
	if err != nil {
		return "", nil // nameless, but a memfd all the same (no /proc)
	}
	return kernelName(link), nil
}

// kernelName turns /proc/self/fd's "/memfd:NAME (deleted)" into NAME; other
// tmpfs files keep their path.
func kernelName(link string) string {
	if rest, ok := strings.CutPrefix(link, "/memfd:"); ok {
		return strings.TrimSuffix(rest, " (deleted)")
	}
	return link
}

func fileKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "pipe"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symbolic link"
	}
	return "file of unknown type"
}
