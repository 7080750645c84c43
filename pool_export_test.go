//go:build linux

package sealbuf

import "time"

// SetPoolHoldBack sets how long a consumer holds releases back, for tests
// that need a release to stay held (or to go quickly), and returns a
// function restoring the previous value.
func SetPoolHoldBack(d time.Duration) (restore func()) {
	old := poolHoldBack
	poolHoldBack = d
	return func() { poolHoldBack = old }
}
