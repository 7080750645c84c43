//go:build linux

package sealbuf

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/sealbuf/sealbuf/memfd"
	"golang.org/x/sys/unix"
)

// The library maps with unix.MmapPtr/MunmapPtr rather than unix.Mmap or
// mmap-go: it needs MAP_FIXED (to patch a truncated Mapping in place) and
// MAP_POPULATE, and the global mapper of unix.Mmap serialises every munmap
// behind one mutex. Every mapping below is unmapped with unmap, never with
// unix.Munmap.

// mapFile maps the first size bytes of file. Size 0 maps nothing and
// returns an empty, non-nil slice.
func mapFile(file *memfd.File, size int, prot, flags int) ([]byte, error) {
	if size == 0 {
		return []byte{}, nil
	}
	var mem []byte
	err := file.Control(func(fd int) error {
		p, err := unix.MmapPtr(fd, 0, nil, uintptr(size), prot, flags)
		if err != nil {
			return os.NewSyscallError("mmap", err)
		}
		mem = unsafe.Slice((*byte)(p), size)
		return nil
	})
	return mem, err
}

// mapReadOnly maps a write-sealed memfd read-only and shared, falling back to
// a private read-only mapping (the same pages, no copy) on kernels before 6.7,
// which refuse shared mappings of write-sealed memfds opened O_RDWR. Its
// errors are explained as mapError's.
func mapReadOnly(file *memfd.File, size int) ([]byte, error) {
	mem, err := mapFile(file, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil && errors.Is(err, unix.EPERM) {
		mem, err = mapFile(file, size, unix.PROT_READ, unix.MAP_PRIVATE)
	}
	if err != nil {
		return nil, mapError(file, size, err)
	}
	return mem, nil
}

// mapError explains why a consumer's mmap of size bytes of file failed.
// ENOMEM means the mapping does not fit: in the address space the process
// may still use (RLIMIT_AS, vm.max_map_count, or no room at all), or, on
// hugetlbfs, in the huge page pool. The result matches ErrTooLarge, as
// New's does for a size it cannot map, and still the errno. EACCES from a
// descriptor opened O_WRONLY (which mmap cannot read) says so.
func mapError(file *memfd.File, size int, err error) error {
	if errors.Is(err, unix.EACCES) && writeOnly(file) {
		return fmt.Errorf("%w: the descriptor is open write-only (O_WRONLY), and mmap needs read access: the sender must pass one opened O_RDONLY or O_RDWR", err)
	}
	if !errors.Is(err, unix.ENOMEM) {
		return err
	}
	if onHugeTLBFS(file) {
		return fmt.Errorf("%w: the huge page pool has too few free pages to back %d bytes (raise /proc/sys/vm/nr_hugepages, or have the sender use normal pages): %w",
			err, size, ErrTooLarge)
	}
	return fmt.Errorf("%w: %d bytes do not fit in the address space this process may still use (RLIMIT_AS, ulimit -v, vm.max_map_count): "+
		"refuse memfds this large from peers (MaxSize, MapMaxSize), or raise the limit: %w", err, size, ErrTooLarge)
}

// writeOnly reports whether file's descriptor is open O_WRONLY.
func writeOnly(file *memfd.File) bool {
	var fl int
	err := file.Control(func(fd int) (err error) {
		fl, err = unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		return err
	})
	return err == nil && fl&unix.O_ACCMODE == unix.O_WRONLY
}

// onHugeTLBFS reports whether file is on hugetlbfs (false when it cannot
// tell).
func onHugeTLBFS(file *memfd.File) bool {
	var sfs unix.Statfs_t
	err := file.Control(func(fd int) error { return unix.Fstatfs(fd, &sfs) })
	return err == nil && uint32(sfs.Type) == unix.HUGETLBFS_MAGIC // Type is an int32 on 32-bit ports
}

// unmap releases a mapping made by mapFile. Empty slices map nothing.
func unmap(mem []byte) error {
	if len(mem) == 0 {
		return nil
	}
	return os.NewSyscallError("munmap", unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(mem)), uintptr(len(mem))))
}

// pageSize is the size of a normal page.
var pageSize = os.Getpagesize()

func pageUp(n int) int { return (n + pageSize - 1) &^ (pageSize - 1) }
