//go:build linux

package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is one connected AF_UNIX socket (SOCK_SEQPACKET or SOCK_STREAM) as
// sealbuf's transport sees it: non-blocking sendmsg and recvmsg through the
// runtime's poller, so the socket's deadlines apply, with no allocation per
// message. It owns the *net.UnixConn.
//
// SendMu serialises writers and RecvMu readers; the methods say which the
// caller must hold. Their fields are scratch space of the call that holds
// the lock. A call under a context takes them with LockContext, so that
// waiting its turn obeys the context too.
type Conn struct {
	uc     *net.UnixConn
	rc     syscall.RawConn
	rcErr  error
	stream bool
	wait   Wait

	SendMu Mutex
	RecvMu Mutex

	// The context waiters, which also keep the deadlines set through
	// SetReadDeadline/SetWriteDeadline, to restore them after they moved
	// the socket's.
	readers, writers waiter

	// One send, under SendMu (send.go).
	sParts   [3][]byte
	sOOB     []byte
	sFrame   [FrameLen]byte
	sNoWait  bool
	sPartial bool
	sErr     error
	sBroken  error // a frame was cut short: every later send fails (streams)
	sFn      func(uintptr) bool

	// One read, under RecvMu (read.go).
	rName  string
	rOp    func(fd int) error
	rFlush func() bool
	rMode  ReadMode
	rErr   error
	rReset bool
	rFn    func(uintptr) bool
	spin   Spinner
	waited bool

	// Exact message reading, under RecvMu (message.go).
	msg msgReader
}

// New wraps uc; the Conn owns it from here on. maxFiles bounds the
// descriptors of one message ReadMsg accepts.
func New(uc *net.UnixConn, maxFiles int, w Wait) *Conn {
	c := &Conn{uc: uc, wait: w.Clamp()}
	c.SendMu.init()
	c.RecvMu.init()
	c.rc, c.rcErr = uc.SyscallConn()
	c.stream = c.sockType() == unix.SOCK_STREAM
	c.sFn = c.doSend
	c.rFn = c.doRead
	c.readers.init(uc.SetReadDeadline)
	c.writers.init(uc.SetWriteDeadline)
	c.msg.init(c, maxFiles)
	return c
}

func (c *Conn) sockType() int {
	typ := unix.SOCK_SEQPACKET
	if c.rcErr == nil {
		c.rc.Control(func(fd uintptr) {
			if t, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE); err == nil {
				typ = t
			}
		})
	}
	return typ
}

// Stream reports whether the socket is SOCK_STREAM (messages are framed).
func (c *Conn) Stream() bool { return c.stream }

// Wait returns the wait policy.
func (c *Conn) Wait() Wait { return c.wait }

// Close closes the socket, which ends every blocked send and read, then
// stops the context waiters' goroutines once no call uses them. A second
// Close returns an error matching os.ErrClosed.
func (c *Conn) Close() error {
	err := Err(c.uc.Close())
	if err != nil {
		return err
	}
	c.RecvMu.Lock()
	c.readers.stop()
	c.msg.closeFrame()
	c.RecvMu.Unlock()
	c.SendMu.Lock()
	c.writers.stop()
	c.SendMu.Unlock()
	return nil
}

// SetReadDeadline sets the socket's read deadline, which blocked reads
// honour with or without a context (a context's deadline, when earlier,
// takes its place for that call only).
func (c *Conn) SetReadDeadline(t time.Time) error {
	return Err(c.readers.setOwn(t))
}

// SetWriteDeadline is SetReadDeadline for sends.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	return Err(c.writers.setOwn(t))
}

// ErrWouldBlock is returned by a read that must not block and found
// nothing, and by a send that must not block and found the socket full.
var ErrWouldBlock = errors.New("wire: nothing to read")

// ErrFlush is returned by a read whose flush hook asked it to stop before
// it waits.
var ErrFlush = errors.New("wire: flush before waiting")

// ErrKicked reports a blocked read interrupted on purpose by Kick: the
// reader should look again.
var ErrKicked = errors.New("wire: wait interrupted")

// Err maps a socket error to what sealbuf's callers match: a peer that hung
// up (ECONNRESET, EPIPE) matches io.EOF, a closed socket os.ErrClosed (and
// still net.ErrClosed); context errors and the package's own sentinels pass
// unchanged.
func Err(err error) error {
	switch {
	case err == nil, errors.Is(err, ErrKicked), errors.Is(err, ErrWouldBlock), errors.Is(err, ErrFlush),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, io.EOF):
		return err
	case errors.Is(err, unix.ECONNRESET), errors.Is(err, unix.EPIPE):
		return fmt.Errorf("the peer hung up: %w (%w)", io.EOF, err)
	case errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrClosed):
		return fmt.Errorf("%w (%w)", err, os.ErrClosed)
	}
	return err
}

// Unwrap returns the transport under a *sealbuf.Conn, and the size limit of
// its receive policy; package sealbuf sets it. The pool sits on the Conn it
// is given through it, with no exported name for it.
var Unwrap func(conn any) (w *Conn, maxSize int64, ok bool)
