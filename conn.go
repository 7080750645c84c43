//go:build linux

package sealbuf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/sealbuf/sealbuf/internal/wire"
)

// Conn hands sealed buffers to another process over a UNIX socket with no
// copy: each message is a header of the caller's bytes plus the buffers'
// memfd descriptors (SCM_RIGHTS). The receiver verifies every descriptor
// (by default: a memfd sealed shrink|grow|write) before it maps it.
//
// Wire format over SOCK_SEQPACKET ("unixpacket", recommended): one Send is
// one packet, its payload exactly the header bytes and its SCM_RIGHTS the
// descriptors in order; any language's standard library speaks it. Over
// SOCK_STREAM ("unix") each message is a frame: an 8-byte prefix (header
// length as little-endian uint32, descriptor count as little-endian uint16,
// then the bytes 'S' 'B'), sent with the descriptors in one sendmsg, then the
// header bytes.
//
// One goroutine may Send while another Receives; concurrent Sends (and
// concurrent Receives) are serialised.
type Conn struct {
	w        *wire.Conn
	policy   openPolicy
	maxFiles int
	wait     wire.Wait

	// Borrowing the descriptors of one Send, under w.SendMu: the items
	// are kept here for the call, and c.borrowNext bound once, so that
	// borrowing them allocates nothing.
	sendOOB []byte
	//iosafety:allow fd-field scratch for one Send: numbers borrowed inside Control callbacks, dropped before they return
	sendFds    []int
	sendCtx    context.Context
	sendHeader []byte
	sendItems  sendItems
	sendBufs   []*Sealed // Send's copy of its bufs, cleared after each Send
	borrowFn   func(fd int) error

	stats *connStats
}

// ConnOption configures a Conn.
type ConnOption func(*Conn)

// WithReceivePolicy sets the checks Receive applies to every descriptor, as
// Open's options (the default is Open's default: shrink|grow|write). Use
// MaxSize to bound what a peer can make you map.
func WithReceivePolicy(opts ...OpenOption) ConnOption {
	return func(c *Conn) { c.policy = newOpenPolicy(opts) }
}

// WithMaxFiles sets how many descriptors one message may carry (default and
// maximum 253, the kernel's limit). A message with more is refused and all
// its descriptors closed.
func WithMaxFiles(n int) ConnOption {
	return func(c *Conn) { c.maxFiles = max(0, min(n, wire.MaxFiles)) }
}

// NewConn wraps c without duplicating its descriptor. The Conn owns c from
// here on: Close it, not c. Set deadlines with the Conn's SetDeadline,
// SetReadDeadline and SetWriteDeadline: they apply to every call, with a
// context or without. (A deadline set on c directly applies too, until a
// call whose context has a deadline, or a pool's wake-up, moves the
// socket's deadline: that call then puts back the one set through the
// Conn, or none.)
func NewConn(c *net.UnixConn, opts ...ConnOption) *Conn {
	conn := &Conn{maxFiles: wire.MaxFiles, policy: newOpenPolicy(nil), stats: new(connStats)}
	conn.borrowFn = conn.borrowNext
	for _, o := range opts {
		o(conn)
	}
	conn.w = wire.New(c, conn.maxFiles, conn.wait)
	return conn
}

func init() {
	// The pool (package pool) sits on the same transport as the Conn it
	// is given: this is how it reaches it, without an exported name.
	wire.Unwrap = func(c any) (*wire.Conn, int64, bool) {
		conn, ok := c.(*Conn)
		if !ok || conn == nil {
			return nil, 0, false
		}
		return conn.w, conn.policy.maxSize, true
	}
}

// SetDeadline sets the read and write deadlines of the connection, like
// net.Conn's. Set them here rather than on the *net.UnixConn: a context
// given to SendContext, ReceiveContext (or a pool's calls) moves the
// socket's deadline for the call and puts back the one set here.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.w.SetReadDeadline(t); err != nil {
		return fmt.Errorf("sealbuf: set deadline: %w", err)
	}
	if err := c.w.SetWriteDeadline(t); err != nil {
		return fmt.Errorf("sealbuf: set deadline: %w", err)
	}
	return nil
}

// SetReadDeadline sets the deadline of Receive and its kin (see
// SetDeadline). A Receive blocked past it fails matching
// os.ErrDeadlineExceeded.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if err := c.w.SetReadDeadline(t); err != nil {
		return fmt.Errorf("sealbuf: set read deadline: %w", err)
	}
	return nil
}

// SetWriteDeadline sets the deadline of Send and its kin (see SetDeadline).
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if err := c.w.SetWriteDeadline(t); err != nil {
		return fmt.Errorf("sealbuf: set write deadline: %w", err)
	}
	return nil
}

// Close closes the connection. Buffers already received stay valid. After
// Close, Send and Receive return errors wrapping os.ErrClosed, and so does a
// second Close.
func (c *Conn) Close() error {
	if err := c.w.Close(); err != nil {
		return fmt.Errorf("sealbuf: close: %w", err)
	}
	return nil
}

// Send sends header and the descriptors of bufs as one message. It borrows
// bufs: the caller still owns them and may send the same buffer again, even
// twice in one message. A closed buffer fails with an error wrapping
// os.ErrClosed. With no bufs the message carries the header only; over
// unixpacket an empty header with no buffers is refused, as the receiver
// would read it as end of file. A peer that hung up fails matching io.EOF.
// It waits for room on the socket for as long as the write deadline allows.
func (c *Conn) Send(header []byte, bufs ...*Sealed) error {
	return c.SendContext(context.Background(), header, bufs...)
}

// SendContext is Send, with ctx bounding the wait for room on the socket
// (the write deadline set with SetWriteDeadline applies too, whichever
// comes first). A cancelled or expired ctx fails with an error matching
// ctx.Err(), before anything of the message was sent; the Conn stays
// usable. (Over a stream socket, a frame that has begun to go out is
// always finished: the peer would otherwise lose the stream's framing.
// Only the write deadline can cut it short; that Send and every later one
// then fail saying the stream is out of step: close the Conn.)
func (c *Conn) SendContext(ctx context.Context, header []byte, bufs ...*Sealed) error {
	if err := c.w.SendMu.LockContext(ctx); err != nil {
		return fmt.Errorf("sealbuf: send: waiting behind another Send: %w", err)
	}
	defer c.w.SendMu.Unlock()
	// A copy, so that bufs (often Send's own variadic slice) does not
	// escape into the Conn: Send then allocates nothing.
	c.sendBufs = append(c.sendBufs[:0], bufs...)
	defer func() {
		clear(c.sendBufs)
		if cap(c.sendBufs) > 16 {
			c.sendBufs = nil // keep no large slice for the Conn's lifetime
		}
	}()
	return c.sendLocked(ctx, header, sendItems{bufs: c.sendBufs})
}

// SendAndClose sends like Send, then closes bufs whether or not the send
// succeeded: the caller hands its copies over. Keeping no local copy of a
// buffer once sent is what lets the receiver be its only owner.
func (c *Conn) SendAndClose(header []byte, bufs ...*Sealed) error {
	err := c.Send(header, bufs...)
	for _, b := range bufs {
		if b != nil {
			b.Close() // an error means closed already; sending reported it
		}
	}
	return err
}

// SendFiles sends header and any descriptors, memfds or not, with no checks:
// the low-level half of Send for callers with their own policy. It borrows
// files.
func (c *Conn) SendFiles(header []byte, files ...*os.File) error {
	c.w.SendMu.Lock()
	defer c.w.SendMu.Unlock()
	return c.sendLocked(context.Background(), header, sendItems{files: files})
}

// sendItems are the descriptors of one message: one of its fields is set.
type sendItems struct {
	bufs  []*Sealed  // Send
	files []*os.File // SendFiles
}

func (it *sendItems) len() int {
	return len(it.bufs) + len(it.files)
}

// sendLocked sends under SendMu. The items are kept in the Conn for the
// call, so that borrowing them needs no closure per message.
func (c *Conn) sendLocked(ctx context.Context, header []byte, items sendItems) error {
	n := items.len()
	if n > wire.MaxFiles {
		return fmt.Errorf("sealbuf: send: %d descriptors, more than the kernel's %d a message: split the message", n, wire.MaxFiles)
	}
	if !c.w.Stream() && len(header) == 0 && n == 0 {
		return errors.New("sealbuf: send: an empty message with no buffers reads as end of file on unixpacket; send at least one header byte or buffer")
	}
	if c.w.Stream() && len(header) > wire.MaxHeader {
		return fmt.Errorf("sealbuf: send: %d-byte header, more than the stream framing's %d", len(header), wire.MaxHeader)
	}
	c.sendFds = c.sendFds[:0]
	c.sendCtx, c.sendHeader, c.sendItems = plainContext(ctx), header, items
	err := c.borrowFrom()
	c.sendCtx, c.sendHeader, c.sendItems = nil, nil, sendItems{} // keep nothing of the caller's
	if err != nil {
		return fmt.Errorf("sealbuf: send: %w", err)
	}
	c.stats.sent(len(header), n)
	return nil
}

// borrowFrom holds the descriptors of the items from len(c.sendFds) on, all
// at once — each borrowed through its owner's Control (borrowNext runs
// inside it and borrows the next), so that none can be closed and its
// number reused while the message is built and sent — and then sends.
func (c *Conn) borrowFrom() error {
	i := len(c.sendFds)
	it := &c.sendItems
	n := it.len()
	if i == n {
		c.sendOOB = wire.AppendRights(c.sendOOB[:0], c.sendFds)
		return c.w.Send(c.sendCtx, nil, c.sendHeader, c.sendOOB, n, false)
	}
	var err error
	switch {
	case it.bufs != nil:
		if b := it.bufs[i]; b == nil {
			err = fmt.Errorf("buffer %d is nil", i)
		} else {
			err = b.file.Control(c.borrowFn)
		}
	default:
		err = c.borrowFile(i)
	}
	if err != nil && i == len(c.sendFds) { // item i itself could not be borrowed
		return fmt.Errorf("buffer %d of %d: %w", i, n, err)
	}
	return err
}

// borrowNext takes the descriptor of the item being borrowed and goes on
// with the next one.
func (c *Conn) borrowNext(fd int) error {
	c.sendFds = append(c.sendFds, fd)
	return c.borrowFrom()
}

// borrowFile borrows c.sendItems.files[i] for borrowNext.
func (c *Conn) borrowFile(i int) error {
	f := c.sendItems.files[i]
	if f == nil {
		return fmt.Errorf("file %d is nil", i)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = c.borrowNext(int(fd)) }); err != nil {
		return fmt.Errorf("file %d (%s): %w", i, f.Name(), os.ErrClosed)
	}
	return ferr
}

// plainContext returns nil for context.Background (Send and Receive pass
// it), which has no deadline and is never done: the transport then waits
// without the context waiter, whose lock, deadline and kick bookkeeping
// it would only pay for on every message.
func plainContext(ctx context.Context) context.Context {
	if ctx == context.Background() {
		return nil
	}
	return ctx
}
