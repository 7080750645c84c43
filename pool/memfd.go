//go:build linux

package pool

import (
	"github.com/sealbuf/sealbuf/internal/policy"
	"github.com/sealbuf/sealbuf/memfd"
)

// noLimit is the size limit when none was set.
const noLimit = policy.NoLimit

// sealFix is what a producer must do about missing seals.
const sealFix = "the producer must be a sealbuf pool (or add these seals)"

// verify applies the pool's checks to what adoption observed, before
// anything is mapped (policy.Verify).
func verify(name string, info memfd.Info, require memfd.Seals, maxSize int64) (int, error) {
	return policy.Verify(name, info, require, maxSize, "WithMaxSize, the Conn's MaxSize", sealFix)
}

func notSealed(name string, missing, has memfd.Seals) error {
	return policy.NotSealed(name, missing, has, sealFix)
}
