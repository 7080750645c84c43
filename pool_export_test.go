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

// PoolBlocked reports whether a *Pool or *PoolReader has a read blocked on
// its socket (past its last look at a futex pool's ring): only a socket
// event wakes it now.
func PoolBlocked(v any) bool {
	var l *poolLink
	switch x := v.(type) {
	case *Pool:
		l = x.link
	case *PoolReader:
		l = x.link
	default:
		panic("PoolBlocked: not a pool")
	}
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	return l.w.blocked
}
