//go:build linux

package memfd

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Option configures Create.
type Option func(*createConfig)

type createConfig struct {
	hugeTLB  bool
	pageSize int64
	exec     bool
}

// WithHugeTLB backs the memfd with huge pages of pageSize bytes (a power of
// two the kernel supports, such as 2 MiB or 1 GiB; 0 means the default huge
// page size). Create then returns a hugetlbfs memfd or an error, never a
// silent fallback to normal pages. The memfd's size must be a multiple of the
// page size, and mappings need free pages in the pool
// (/proc/sys/vm/nr_hugepages).
func WithHugeTLB(pageSize int64) Option {
	return func(c *createConfig) { c.hugeTLB, c.pageSize = true, pageSize }
}

// WithExec keeps the memfd's exec permission bits (MFD_EXEC) instead of
// making it no-exec. Where vm.memfd_noexec=2 forbids executable memfds,
// Create fails with an error matching unix.EACCES.
func WithExec() Option { return func(c *createConfig) { c.exec = true } }

// noexecUnsupported caches the probe: set once the kernel has refused
// MFD_NOEXEC_SEAL (kernels before 6.3), so later Creates skip the retry.
var noexecUnsupported atomic.Bool

// Create makes a new, empty memfd called name (for /proc and debugging; at
// most 249 bytes, need not be unique). It is always close-on-exec
// (MFD_CLOEXEC) and allows sealing (MFD_ALLOW_SEALING). Unless WithExec is
// given it is also no-exec (MFD_NOEXEC_SEAL, which sets SealExec) where the
// kernel has it; on older kernels that flag alone is dropped.
//
// The caller owns the result and must Close it.
func Create(name string, opts ...Option) (*File, error) {
	var c createConfig
	if len(opts) > 0 {
		c = configure(opts)
	}
	flags := unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING
	if c.hugeTLB {
		f, err := hugeFlags(c.pageSize)
		if err != nil {
			return nil, fmt.Errorf("memfd %q: create: %w", name, err)
		}
		flags |= f
	}
	fd, err := memfdCreate(name, flags, c.exec)
	if err != nil {
		return nil, opError(name, "create", os.NewSyscallError("memfd_create", err))
	}
	// The *os.File's own name never reaches the caller (opError names the
	// memfd itself): a constant spares building "memfd:"+name each time.
	return &File{f: os.NewFile(uintptr(fd), "memfd"), name: name}, nil
}

// configure applies opts. Apart from Create, so that Create's config does
// not escape to the heap (the options take a pointer to it) when there are
// none.
func configure(opts []Option) createConfig {
	var c createConfig
	for _, o := range opts {
		o(&c)
	}
	return c
}

// memfdCreate runs the creation ladder: never without MFD_ALLOW_SEALING; on
// EINVAL drop only MFD_NOEXEC_SEAL (or MFD_EXEC), which kernels before 6.3 do
// not know. EACCES (vm.memfd_noexec=2) is returned as is.
func memfdCreate(name string, flags int, exec bool) (int, error) {
	mode := unix.MFD_NOEXEC_SEAL
	if exec {
		mode = unix.MFD_EXEC
	}
	if !noexecUnsupported.Load() {
		fd, err := unix.MemfdCreate(name, flags|mode)
		if !errors.Is(err, unix.EINVAL) {
			return fd, err
		}
		// EINVAL is also a bad name or huge page size: only cache the probe
		// when the call without the flag succeeds.
		fd, err = unix.MemfdCreate(name, flags)
		if err == nil {
			noexecUnsupported.Store(true)
		}
		return fd, err
	}
	return unix.MemfdCreate(name, flags)
}

// hugeFlags returns MFD_HUGETLB with the encoded page size.
func hugeFlags(pageSize int64) (int, error) {
	if pageSize == 0 {
		return unix.MFD_HUGETLB, nil
	}
	if pageSize < 0 || pageSize&(pageSize-1) != 0 {
		return 0, fmt.Errorf("huge page size %d is not a power of two", pageSize)
	}
	if pageSize <= int64(os.Getpagesize()) {
		return 0, fmt.Errorf("huge page size %d is not larger than a normal page (0 asks for the default huge page size)", pageSize)
	}
	shift := bits.TrailingZeros64(uint64(pageSize))
	if shift > unix.MFD_HUGE_MASK {
		return 0, fmt.Errorf("huge page size %d is too large", pageSize)
	}
	return unix.MFD_HUGETLB | shift<<unix.MFD_HUGE_SHIFT, nil
}
