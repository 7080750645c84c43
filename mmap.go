//go:build linux

package sealbuf

import (
	"errors"
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
// which refuse shared mappings of write-sealed memfds opened O_RDWR.
func mapReadOnly(file *memfd.File, size int) ([]byte, error) {
	mem, err := mapFile(file, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil && errors.Is(err, unix.EPERM) {
		mem, err = mapFile(file, size, unix.PROT_READ, unix.MAP_PRIVATE)
	}
	return mem, err
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
