//go:build linux

package sealbuf

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/internal/mmap"
	"github.com/sealbuf/sealbuf/memfd"
)

// The root maps through internal/mmap (unix.MmapPtr: MAP_FIXED and
// MAP_POPULATE, and no global mapper serialising munmap), which the pool
// shares; every mapping is released with unmap, never unix.Munmap.

// mapFile maps the first size bytes of file. Size 0 maps nothing and
// returns an empty, non-nil slice.
func mapFile(file *memfd.File, size int, prot, flags int) ([]byte, error) {
	return mmap.File(file, size, prot, flags)
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
func unmap(mem []byte) error { return mmap.Unmap(mem) }

func pageUp(n int) int { return mmap.PageUp(n) }
