//go:build linux

// Package policy holds the checks every receiver applies to a memfd before
// it maps it — required seals, size limits — and the errors they return,
// shared by package sealbuf (Open, Map, Conn) and package pool (Accept).
// sealbuf re-exports the errors: sealbuf.ErrNotSealed is ErrNotSealed.
package policy

import (
	"errors"
	"fmt"
	"math"

	"github.com/sealbuf/sealbuf/internal/mmap"
	"github.com/sealbuf/sealbuf/memfd"
)

var (
	// ErrNotSealed: a memfd lacks seals the policy requires.
	ErrNotSealed = errors.New("memfd is not sealed as required")

	// ErrTooLarge: a memfd is larger than the policy allows, or too large
	// to map at all.
	ErrTooLarge = errors.New("memfd is too large")
)

// NoLimit is the size limit of a policy without one.
const NoLimit = math.MaxInt64

// Verify applies a policy to what adoption observed, before anything is
// mapped: the seals present must include require (required ⊆ present, never
// equality: kernels add seals such as exec on their own), and the size must
// fit maxSize (NoLimit when none was set; limit names the option that set
// it, for the error) and the address space. The seals were read before the
// size, so for a memfd sealed against shrinking and growing the size
// checked here is the size for good. fix says, in an error, what the sender
// must do about missing seals.
func Verify(name string, info memfd.Info, require memfd.Seals, maxSize int64, limit, fix string) (int, error) {
	if missing := info.Seals.Missing(require); missing != 0 {
		return 0, NotSealed(name, missing, info.Seals, fix)
	}
	if info.Size > maxSize {
		return 0, fmt.Errorf("memfd %q has %d bytes, more than the %d allowed (%s): %w", name, info.Size, maxSize, limit, ErrTooLarge)
	}
	if info.Size > mmap.MaxMappable || info.Size > math.MaxInt {
		return 0, fmt.Errorf("memfd %q has %d bytes, more than can be mapped: %w", name, info.Size, ErrTooLarge)
	}
	return int(info.Size), nil
}

// NotSealed is the error for a memfd whose seals fall short: it names each
// missing seal, what is there, and fix.
func NotSealed(name string, missing, has memfd.Seals, fix string) error {
	return fmt.Errorf("memfd %q is not sealed against %s (has %s): %s: %w", name, missing, has, fix, ErrNotSealed)
}
