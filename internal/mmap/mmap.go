//go:build linux

// Package mmap maps memfds for sealbuf's packages, with unix.MmapPtr and
// MunmapPtr rather than unix.Mmap or mmap-go: they need MAP_FIXED (to patch
// a truncated Mapping in place) and MAP_POPULATE, and the global mapper of
// unix.Mmap serialises every munmap behind one mutex. Every mapping made
// here is released with Unmap, never with unix.Munmap.
package mmap

import (
	"os"
	"unsafe"

	"github.com/sealbuf/sealbuf/memfd"
	"golang.org/x/sys/unix"
)

// MaxMappable is the largest size sealbuf tries to map: 128 TiB, the whole
// user address space of x86-64 with 4-level page tables.
const MaxMappable int64 = 1 << 47

// PageSize is the size of a normal page.
var PageSize = os.Getpagesize()

// PageUp rounds n up to a whole number of pages.
func PageUp(n int) int { return (n + PageSize - 1) &^ (PageSize - 1) }

// File maps the first size bytes of file. Size 0 maps nothing and returns
// an empty, non-nil slice.
func File(file *memfd.File, size int, prot, flags int) ([]byte, error) {
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

// Unmap releases a mapping made by File. Empty slices map nothing.
func Unmap(mem []byte) error {
	if len(mem) == 0 {
		return nil
	}
	return os.NewSyscallError("munmap", unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(mem)), uintptr(len(mem))))
}
