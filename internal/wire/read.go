//go:build linux

package wire

import (
	"context"
	"os"

	"golang.org/x/sys/unix"
)

// Read runs op, one non-blocking receive system call (recvmsg, recvmmsg)
// that leaves its results in the caller's fields and returns its errno,
// until it returns anything but EAGAIN. name names the call in errors.
//
// When op finds nothing and mode is ReadNow, Read returns ErrWouldBlock.
// Otherwise it waits, in this order: flush (when not nil) may stop the
// read first with ErrFlush (the caller has something to send before it
// waits); then it spins, calling op again, for the wait policy's Spin; then
// waits in ppoll(2) once for its Kernel; then parks in the netpoller until
// the socket is readable, the read deadline passes or ctx ends (nil: no
// context). ECONNRESET is read past once (a peer that closed with our
// messages unread resets the socket, and the kernel reports it before the
// messages it sent): a second one is the error. Errors come mapped by Err.
//
// op and flush must be values kept by the caller (method values made
// once), so that nothing is allocated per read. The caller holds RecvMu.
func (c *Conn) Read(ctx context.Context, name string, op func(fd int) error, mode ReadMode, flush func() bool) error {
	if c.rcErr != nil {
		return Err(c.rcErr)
	}
	c.rName, c.rOp, c.rFlush, c.rMode, c.rErr, c.rReset, c.waited = name, op, flush, mode, nil, false, false
	c.spin.d = 0
	var err error
	if ctx == nil || mode == ReadNow {
		err = c.rc.Read(c.rFn)
	} else {
		tok, berr := c.readers.begin(ctx)
		if berr != nil {
			c.rOp, c.rFlush = nil, nil
			return berr
		}
		err = c.readers.end(ctx, tok, c.rc.Read(c.rFn))
	}
	c.rOp, c.rFlush = nil, nil
	if err == nil {
		err = c.rErr
	}
	return Err(err)
}

func (c *Conn) doRead(fd uintptr) bool {
	for {
		err := c.rOp(int(fd))
		switch {
		case err == nil:
			return true
		case err == unix.EINTR:
			continue
		case err == unix.ECONNRESET && !c.rReset:
			c.rReset = true
			continue
		case err != unix.EAGAIN:
			c.rErr = os.NewSyscallError(c.rName, err)
			return true
		case c.rMode == ReadNow:
			c.rErr = ErrWouldBlock
			return true
		case c.rFlush != nil && c.rFlush():
			c.rErr = ErrFlush
			return true
		}
		if c.rMode == ReadPark {
			return false
		}
		if !c.waited {
			c.waited = true
			c.spin.Start(c.wait.Spin)
		}
		if c.spin.Next() {
			continue
		}
		if c.wait.Kernel > 0 && c.spin.n >= 0 {
			c.spin.n = -1 // once per read
			if waitReadable(int(fd), c.wait.Kernel) {
				continue
			}
		}
		return false
	}
}

// ReadMode says how Read waits when there is nothing to read.
type ReadMode int

const (
	ReadWait ReadMode = iota // spin, wait in the kernel, then park (the wait policy)
	ReadNow                  // do not wait: ErrWouldBlock
	ReadPark                 // park in the netpoller at once (the caller has waited already)
)

// ReadBlocked reports whether a read under a context is blocked past its
// look at the socket (for tests: only a socket event, a deadline or a kick
// wakes it now).
func (c *Conn) ReadBlocked() bool {
	c.readers.mu.Lock()
	defer c.readers.mu.Unlock()
	return c.readers.blocked
}

// Kick interrupts a read blocked in the netpoller under a context (it
// returns ErrKicked), or makes the next one return ErrKicked before it
// blocks. It does not reach a spin or a kernel wait, which end on their
// own.
func (c *Conn) Kick() { c.readers.kick() }
