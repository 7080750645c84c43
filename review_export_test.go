//go:build linux

package sealbuf

// ReadBlockedForTest reports whether a ReceiveContext is between its
// context's setup and its end (for tests that race something with it).
func (c *Conn) ReadBlockedForTest() bool { return c.w.ReadBlocked() }
