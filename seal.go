//go:build linux

package sealbuf

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/internal/mmap"
	"github.com/sealbuf/sealbuf/internal/policy"
	"github.com/sealbuf/sealbuf/memfd"
)

// maxMappable is the largest size sealbuf tries to map (mmap.MaxMappable).
const maxMappable = mmap.MaxMappable

// sealFix is what a sender must do about missing seals.
const sealFix = "the sender must Seal the buffer (or add these seals) before sending it"

// verifyInfo applies a policy to what adoption observed, before anything is
// mapped (policy.Verify).
func verifyInfo(name string, info memfd.Info, require memfd.Seals, maxSize int64) (int, error) {
	return policy.Verify(name, info, require, maxSize, "MaxSize", sealFix)
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
