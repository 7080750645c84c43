//go:build linux

package wire

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Send sends the bytes of a then b as one message, with control data oob
// (only the first sendmsg of a message carries it). Over a stream socket
// the message is a frame: the prefix announcing len(a)+len(b) bytes and
// files descriptors, then the bytes; short writes are completed. With
// noWait, a socket too full to take any of the message drops it and
// returns ErrWouldBlock (once part of a frame went out, the rest is
// written whatever it costs). ctx bounds a wait for room (nil: none but the
// write deadline). A frame that the write deadline (or an error) cuts
// short leaves the peer inside it: that send and every later one fail
// matching ErrOutOfStep. The caller holds SendMu.
func (c *Conn) Send(ctx context.Context, a, b, oob []byte, files int, noWait bool) error {
	if c.rcErr != nil {
		return Err(c.rcErr)
	}
	if c.sBroken != nil {
		return c.sBroken
	}
	c.sParts = [3][]byte{nil, a, b}
	if c.stream {
		c.sParts[0] = Frame{HeaderLen: len(a) + len(b), Files: files}.Append(c.sFrame[:0])
	}
	c.sOOB, c.sNoWait, c.sPartial, c.sErr = oob, noWait, false, nil
	var err error
	if ctx == nil || noWait {
		err = c.rc.Write(c.sFn)
	} else {
		tok, berr := c.writers.begin(ctx)
		if berr != nil {
			c.sParts, c.sOOB = [3][]byte{}, nil
			return berr
		}
		err = c.writers.end(ctx, tok, c.rc.Write(c.sFn))
		if err != nil && c.sPartial && c.sErr == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			// Part of a frame went out: the rest must follow, or the
			// peer loses the stream's framing. Only the write deadline
			// set through the Conn bounds this.
			if werr := c.rc.Write(c.sFn); werr != nil {
				err = fmt.Errorf("%w (and the rest of the frame already begun could not be sent: %w)", err, werr)
			} else {
				err = nil
			}
		}
	}
	if err == nil {
		err = c.sErr
	}
	if err != nil && c.stream && c.sPartial && len(c.sParts[0])+len(c.sParts[1])+len(c.sParts[2]) > 0 {
		// A frame cut short (the write deadline, an error): the peer is
		// inside it, and would read the next frame as its rest.
		c.sBroken = fmt.Errorf("an earlier frame was cut short (%v): %w; close the Conn", err, ErrOutOfStep)
		err = fmt.Errorf("%w (the frame was cut short: %w; close the Conn)", err, ErrOutOfStep)
	}
	c.sParts, c.sOOB = [3][]byte{}, nil // keep nothing of the caller's
	return Err(err)
}

// ErrOutOfStep is matched by every send on a stream socket after one that
// was cut short mid-frame: no later frame could be found by the peer.
var ErrOutOfStep = errors.New("the stream is out of step")

func (c *Conn) doSend(fd uintptr) bool {
	for {
		n, err := Sendmsg(int(fd), c.sParts[:], c.sOOB)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			if c.sNoWait && !c.sPartial {
				c.sErr = ErrWouldBlock
				return true
			}
			return false
		}
		if err != nil {
			c.sErr = os.NewSyscallError("sendmsg", err)
			return true
		}
		c.sPartial, c.sOOB = true, nil
		for i := range c.sParts {
			k := min(n, len(c.sParts[i]))
			c.sParts[i] = c.sParts[i][k:]
			n -= k
		}
		if len(c.sParts[0])+len(c.sParts[1])+len(c.sParts[2]) == 0 {
			return true
		}
		if !c.stream {
			c.sErr = errors.New("sendmsg sent part of a packet")
			return true
		}
	}
}
