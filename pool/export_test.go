//go:build linux

package pool

import "time"

// SetHoldBack sets how long a consumer holds releases back, for tests
// that need a release to stay held (or to go quickly), and returns a
// function restoring the previous value.
func SetHoldBack(d time.Duration) (restore func()) {
	old := poolHoldBack
	poolHoldBack = d
	return func() { poolHoldBack = old }
}

// Blocked reports whether a *Writer or *Reader has a read blocked on
// its socket (past its last look at a futex pool's ring): only a socket
// event wakes it now.
func Blocked(v any) bool {
	var l *link
	switch x := v.(type) {
	case *Writer:
		l = x.link
	case *Reader:
		l = x.link
	default:
		panic("PoolBlocked: not a pool")
	}
	return l.c.ReadBlocked()
}
