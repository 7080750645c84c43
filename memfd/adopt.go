//go:build linux

package memfd

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

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
	file, _, err := Adopt(f)
	return file, err
}

// Info is what Adopt observed while checking a descriptor. The seals are
// read before the size, so when they include SealShrink and SealGrow the
// size is final: nobody can change it any more.
type Info struct {
	Seals   Seals
	Size    int64
	HugeTLB bool // on hugetlbfs: sizes and mappings are whole huge pages
}

// Adopt is FromFile that also returns what it observed, so a caller can
// apply a policy (seals, size) without asking the kernel again. Ownership is
// as for FromFile.
func Adopt(f *os.File) (*File, Info, error) {
	if f == nil {
		return nil, Info{}, fmt.Errorf("memfd: adopt: nil *os.File: %w", ErrNotMemfd)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, Info{}, opError(f.Name(), "adopt", err)
	}
	var name string
	var info Info
	var checkErr error
	err = rc.Control(func(fd uintptr) {
		name, info, checkErr = inspect(int(fd))
	})
	if err != nil {
		return nil, Info{}, opError(f.Name(), "adopt", err)
	}
	if checkErr != nil {
		return nil, Info{}, fmt.Errorf("memfd: adopt %s: %w", f.Name(), checkErr)
	}
	return &File{f: f, name: name}, info, nil
}

// inspect checks that fd is a memfd and returns its kernel name and state.
// The common case costs three system calls: F_GET_SEALS, fstat and the
// readlink of the name; diagnose explains a refusal.
//
// F_GET_SEALS answers only for shmem (tmpfs) and hugetlbfs files (the
// kernel's memfd_file_seals_ptr; anything else gets EINVAL, and O_PATH
// descriptors EBADF), so its success is the file-system check. fstatfs
// then only tells hugetlbfs from tmpfs, and is needed only when st_blksize
// is not the normal page size: hugetlbfs reports its huge page size there,
// never the normal page size.
func inspect(fd int) (string, Info, error) {
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		return "", Info{}, diagnose(fd, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", Info{}, os.NewSyscallError("fstat", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return "", Info{}, fmt.Errorf("it is a %s, not a regular file: %w", fileKind(st.Mode), ErrNotMemfd)
	}
	info := Info{Seals: Seals(seals), Size: st.Size}
	if int64(st.Blksize) != int64(normalPageSize) {
		var sfs unix.Statfs_t
		if err := unix.Fstatfs(fd, &sfs); err != nil {
			return "", Info{}, os.NewSyscallError("fstatfs", err)
		}
		if m := fsMagic(&sfs); m != unix.TMPFS_MAGIC && m != unix.HUGETLBFS_MAGIC {
			return "", Info{}, fmt.Errorf("it is a regular file on a disk file system (magic %#x), not on tmpfs or hugetlbfs: %w", m, ErrNotMemfd)
		}
		info.HugeTLB = fsMagic(&sfs) == unix.HUGETLBFS_MAGIC
	}
	var buf [512]byte
	n, err := readFdLink(fd, &buf)
	if err != nil || n == len(buf) {
		return "", info, nil // nameless (no /proc, or a long name): a memfd all the same
	}
	return kernelName(string(buf[:n])), info, nil
}

// fsMagic returns a file system's magic number. Statfs_t.Type is an int32
// on 32-bit ports, where hugetlbfs's magic (0x958458f6) overflows it: the
// magic is the type's low 32 bits everywhere.
func fsMagic(sfs *unix.Statfs_t) uint32 { return uint32(sfs.Type) }

// diagnose says why a descriptor whose seals cannot be queried is no memfd.
func diagnose(fd int, sealErr error) error {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return os.NewSyscallError("fcntl F_GETFL", err)
	}
	if fl&unix.O_PATH != 0 {
		return fmt.Errorf("an O_PATH descriptor cannot be read or mapped: %w", ErrNotMemfd)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return os.NewSyscallError("fstat", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("it is a %s, not a regular file: %w", fileKind(st.Mode), ErrNotMemfd)
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err == nil {
		if m := fsMagic(&sfs); m != unix.TMPFS_MAGIC && m != unix.HUGETLBFS_MAGIC {
			return fmt.Errorf("it is a regular file on a disk file system (magic %#x), not on tmpfs or hugetlbfs: %w", m, ErrNotMemfd)
		}
	}
	return fmt.Errorf("its seals cannot be queried (%v): %w", sealErr, ErrNotMemfd)
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

// readFdLink reads /proc/self/fd/FD into buf, with the path built on the
// stack: unix.Readlink would allocate twice (the path string and its
// NUL-terminated copy) on every adoption.
func readFdLink(fd int, buf *[512]byte) (int, error) {
	var path [32]byte
	p := strconv.AppendInt(append(path[:0], "/proc/self/fd/"...), int64(fd), 10)
	p = append(p, 0)
	cwd := unix.AT_FDCWD // ignored: the path is absolute
	n, _, errno := unix.Syscall6(unix.SYS_READLINKAT, uintptr(cwd), uintptr(unsafe.Pointer(&p[0])),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// normalPageSize is the size of a normal (not huge) page.
var normalPageSize = os.Getpagesize()
