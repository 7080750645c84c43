//go:build linux

package pool

import (
	"fmt"
	"math"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/mmap"
	"github.com/sealbuf/sealbuf/memfd"
)

// noLimit is the size limit when none was set.
const noLimit = math.MaxInt64

// verify applies the pool's checks to what adoption observed, before
// anything is mapped: the seals present include require (required ⊆
// present), and the size fits maxSize and the address space.
func verify(name string, info memfd.Info, require memfd.Seals, maxSize int64) (int, error) {
	if missing := info.Seals.Missing(require); missing != 0 {
		return 0, notSealed(name, missing, info.Seals)
	}
	if info.Size > maxSize {
		return 0, fmt.Errorf("memfd %q has %d bytes, more than the %d allowed (WithMaxSize, the Conn's MaxSize): %w", name, info.Size, maxSize, sealbuf.ErrTooLarge)
	}
	if info.Size > mmap.MaxMappable || info.Size > math.MaxInt {
		return 0, fmt.Errorf("memfd %q has %d bytes, more than can be mapped: %w", name, info.Size, sealbuf.ErrTooLarge)
	}
	return int(info.Size), nil
}

func notSealed(name string, missing, has memfd.Seals) error {
	return fmt.Errorf("memfd %q is not sealed against %s (has %s): the producer must be a sealbuf pool (or add these seals): %w",
		name, missing, has, sealbuf.ErrNotSealed)
}
