//go:build linux

package sealbuf

import (
	"errors"
	"fmt"
	"math"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/internal/mmap"
	"github.com/sealbuf/sealbuf/memfd"
)

// maxMappable is the largest size sealbuf tries to map (mmap.MaxMappable).
const maxMappable = mmap.MaxMappable

// verifyInfo applies a policy to what adoption observed, before anything is
// mapped: the seals present must include require (required ⊆ present, never
// equality: kernels add seals such as exec on their own), and the size must
// fit maxSize (noLimit when none was set) and the address space. The seals were read
// before the size, so for a memfd sealed against shrinking and growing the
// size checked here is the size for good.
func verifyInfo(name string, info memfd.Info, require memfd.Seals, maxSize int64) (int, error) {
	if missing := info.Seals.Missing(require); missing != 0 {
		return 0, notSealedError(name, missing, info.Seals)
	}
	if info.Size > maxSize {
		return 0, fmt.Errorf("memfd %q has %d bytes, more than the %d allowed (MaxSize): %w", name, info.Size, maxSize, ErrTooLarge)
	}
	if info.Size > maxMappable || info.Size > math.MaxInt {
		return 0, fmt.Errorf("memfd %q has %d bytes, more than can be mapped: %w", name, info.Size, ErrTooLarge)
	}
	return int(info.Size), nil
}

// faultFree reports whether a mapping of a memfd's first info.Size bytes
// can never fault, whatever the memfd's other holders do, so that reading
// it needs no guard. Sealed against shrinking, the file never ends before
// the mapping does. A page can still be punched out of it (fallocate
// PUNCH_HOLE, refused only under a write or future_write seal): on tmpfs
// the next access gets a fresh zero page, but on hugetlbfs it needs a free
// huge page and raises SIGBUS when the pool has none, and anyone on the
// machine can empty the pool. So on hugetlbfs shrink alone is not enough.
func faultFree(info memfd.Info) bool {
	if !info.Seals.Has(memfd.SealShrink) {
		return false
	}
	return !info.HugeTLB || info.Seals&(memfd.SealWrite|memfd.SealFutureWrite) != 0
}

func notSealedError(name string, missing, has memfd.Seals) error {
	return fmt.Errorf("memfd %q is not sealed against %s (has %s): the sender must Seal the buffer (or add these seals) before sending it: %w",
		name, missing, has, ErrNotSealed)
}

// sealStages are the seals Buffer.Seal adds, in order: size first (at New),
// then, once the writable view is gone, write and finally seal.
const (
	sealSize  = memfd.SealShrink | memfd.SealGrow
	sealFinal = memfd.SealWrite | memfd.SealSeal
)

// sealWrite adds seals that include SealWrite. The kernel refuses the write
// seal with EBUSY at once while a writable shared mapping exists, but also,
// after waiting about 75 ms, while some page still has an extra reference
// (memfd_wait_for_pins): seen once in about a million seals under load, on a
// memfd never mapped at all. That second kind passes, so EBUSY is retried a
// few times; the first kind comes back at once each time and costs nothing.
func sealWrite(file *memfd.File, seals memfd.Seals) error {
	var err error
	for range 3 {
		if err = file.AddSeals(seals); !errors.Is(err, unix.EBUSY) {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	return err
}
