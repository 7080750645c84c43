//go:build linux

package sealbuf

import (
	"github.com/sealbuf/sealbuf/internal/policy"
	"github.com/sealbuf/sealbuf/memfd"
)

// noLimit is the size limit of a policy without MaxSize.
const noLimit = policy.NoLimit

// Option configures the producer side: New and FromBytes.
type Option func(*options)

type options struct {
	name     string
	huge     bool
	hugeSize int64
	thpOnly  bool // WithTransparentHugePages: no hugetlbfs
}

// WithName names the memfd (visible in /proc/PID/fd and `sealbuf inspect`;
// at most 249 bytes). The default is "sealbuf".
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithHugePages asks for a memfd backed by huge pages of pageSize bytes (0:
// the kernel's default huge page size). Huge pages make building and reading
// large buffers cheaper. They come from the hugetlbfs pool
// (/proc/sys/vm/nr_hugepages) when it has free pages and the size is a
// multiple of the huge page size; otherwise from shmem transparent huge
// pages where the kernel allows them for memfds (see
// WithTransparentHugePages). When neither can be had, the buffer falls back
// to normal pages and HugePages reports why.
func WithHugePages(pageSize int64) Option {
	return func(o *options) { o.huge, o.hugeSize, o.thpOnly = true, pageSize, false }
}

// WithTransparentHugePages asks for a memfd backed by shmem transparent
// huge pages only (never the hugetlbfs pool): PMD-sized pages (2 MiB on
// x86-64) for every whole huge page of the buffer, the tail past the last
// one in normal pages. The kernel allows them for memfds when
// /sys/kernel/mm/transparent_hugepage/shmem_enabled is always, within_size,
// advise or force (or, on kernels with per-size controls, when
// hugepages-2048kB/shmem_enabled says so); the mapping is advised
// (MADV_HUGEPAGE) and populated, and HugePages reports whether the pages
// the kernel gave are huge, and if not why. Unlike hugetlbfs pages they
// need no reserved pool, but each is zeroed whole when allocated and may
// be unavailable when memory is fragmented. The size need not be a
// multiple of the huge page size.
func WithTransparentHugePages() Option {
	return func(o *options) { o.huge, o.hugeSize, o.thpOnly = true, 0, true }
}

func newOptions(opts []Option) options {
	if len(opts) == 0 {
		// Not through a pointer: the loop below makes o escape to the
		// heap, an allocation per FromBytes and New.
		return options{name: "sealbuf"}
	}
	o := options{name: "sealbuf"}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// OpenOption sets the policy Open checks before it maps a memfd.
type OpenOption func(*openPolicy)

type openPolicy struct {
	require memfd.Seals
	maxSize int64 // noLimit unless MaxSize was given
}

// Require adds seals to the set Open requires. It never weakens the default
// set, shrink|grow|write: Require(memfd.SealSeal) asks for seal as well.
func Require(s memfd.Seals) OpenOption { return func(p *openPolicy) { p.require |= s } }

// MaxSize refuses memfds larger than n bytes with ErrTooLarge; exactly n is
// fine (a negative n refuses every memfd). Set it on every Open of a descriptor from a peer you do not control,
// so a peer cannot make you map more than you planned for.
func MaxSize(n int64) OpenOption { return func(p *openPolicy) { p.maxSize = n } }

func newOpenPolicy(opts []OpenOption) openPolicy {
	p := openPolicy{require: memfd.SealImmutable, maxSize: noLimit}
	for _, opt := range opts {
		opt(&p)
	}
	p.require |= memfd.SealImmutable
	return p
}

// MapOption sets the policy Map checks before it maps a memfd.
type MapOption func(*mapPolicy)

type mapPolicy struct {
	require  memfd.Seals
	maxSize  int64
	readOnly bool
}

// MapRequire makes Map refuse memfds that lack any of the seals s (with
// ErrNotSealed). By default Map requires none.
func MapRequire(s memfd.Seals) MapOption { return func(p *mapPolicy) { p.require |= s } }

// MapMaxSize refuses memfds larger than n bytes with ErrTooLarge.
func MapMaxSize(n int64) MapOption { return func(p *mapPolicy) { p.maxSize = n } }

// MapReadOnly maps the memfd read-only even when the descriptor allows
// writing; WriteAt then fails.
func MapReadOnly() MapOption { return func(p *mapPolicy) { p.readOnly = true } }

func newMapPolicy(opts []MapOption) mapPolicy {
	p := mapPolicy{maxSize: noLimit}
	for _, opt := range opts {
		opt(&p)
	}
	return p
}
