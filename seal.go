//go:build linux

package sealbuf

import (
	"fmt"
	"math"

	"github.com/sealbuf/sealbuf/memfd"
)

// maxMappable is the largest size sealbuf tries to map: 128 TiB, the whole
// user address space of x86-64 with 4-level page tables.
const maxMappable = 1 << 47

// verify applies a policy before anything is mapped: the seals present must
// include require (required ⊆ present, never equality: kernels add seals such
// as exec on their own), and the size must fit maxSize (< 0: no limit) and
// the address space. It returns the seals present and the size.
func verify(file *memfd.File, require memfd.Seals, maxSize int64) (memfd.Seals, int, error) {
	seals, err := file.Seals()
	if err != nil {
		return 0, 0, err
	}
	if missing := seals.Missing(require); missing != 0 {
		return 0, 0, notSealedError(file.Name(), missing, seals)
	}
	size, err := file.Size()
	if err != nil {
		return 0, 0, err
	}
	if maxSize >= 0 && size > maxSize {
		return 0, 0, fmt.Errorf("sealbuf: memfd %q has %d bytes, more than the %d allowed (MaxSize): %w", file.Name(), size, maxSize, ErrTooLarge)
	}
	if size > maxMappable || size > math.MaxInt {
		return 0, 0, fmt.Errorf("sealbuf: memfd %q has %d bytes, more than can be mapped: %w", file.Name(), size, ErrTooLarge)
	}
	return seals, int(size), nil
}

func notSealedError(name string, missing, has memfd.Seals) error {
	return fmt.Errorf("sealbuf: memfd %q is not sealed against %s (has %s): the sender must Seal the buffer (or add these seals) before sending it: %w",
		name, missing, has, ErrNotSealed)
}

// sealStages are the seals Buffer.Seal adds, in order: size first (at New),
// then, once the writable view is gone, write and finally seal.
const (
	sealSize  = memfd.SealShrink | memfd.SealGrow
	sealFinal = memfd.SealWrite | memfd.SealSeal
)
