//go:build linux

package sealbuf

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/sealbuf/sealbuf/internal/scm"
	"github.com/sealbuf/sealbuf/memfd"
	"golang.org/x/sys/unix"
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
	c        *net.UnixConn
	stream   bool
	policy   openPolicy
	maxFiles int
	// blockingWait: how long a read waits in ppoll before the netpoller (WithBlockingWait).
	blockingWait time.Duration

	sendMu  sync.Mutex
	sendOOB []byte
	//iosafety:allow fd-field scratch for one Send: numbers borrowed inside Control callbacks, dropped before they return
	sendFds []int
	prefix  []byte
	// The items of the Send running (under sendMu), and c.borrowNext bound
	// once, so that borrowing them allocates nothing.
	sendHeader []byte
	sendItems  sendItems
	sendBufs   []*Sealed // Send's copy of its bufs, cleared after each Send
	borrowFn   func(fd int) error

	recvMu  sync.Mutex
	recvOOB []byte
	//iosafety:allow fd-field scratch for one Receive: numbers wrapped in *os.File or closed before it returns
	recvFds []int
	//iosafety:allow fd-field scratch for one stream Receive: numbers wrapped in *os.File or closed before it returns
	frameFds     []int
	framePrefix  [scm.FrameLen]byte
	frameDiscard [512]byte // the part of a header longer than the caller's buffer
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
	return func(c *Conn) { c.maxFiles = max(0, min(n, scm.MaxFiles)) }
}

// NewConn wraps c without duplicating its descriptor, so c's deadlines apply
// to Send and Receive. The Conn owns c from here on: Close it, not c.
func NewConn(c *net.UnixConn, opts ...ConnOption) *Conn {
	conn := &Conn{c: c, maxFiles: scm.MaxFiles, policy: newOpenPolicy(nil)}
	conn.borrowFn = conn.borrowNext
	for _, o := range opts {
		o(conn)
	}
	conn.stream = socketType(c) == unix.SOCK_STREAM
	conn.recvOOB = make([]byte, scm.Space(conn.maxFiles))
	return conn
}

func socketType(c *net.UnixConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return unix.SOCK_SEQPACKET
	}
	typ := unix.SOCK_SEQPACKET
	rc.Control(func(fd uintptr) {
		if t, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE); err == nil {
			typ = t
		}
	})
	return typ
}

// Close closes the connection. Buffers already received stay valid. After
// Close, Send and Receive return errors wrapping os.ErrClosed, and so does a
// second Close.
func (c *Conn) Close() error { return closedConn(c.c.Close()) }

// closedConn makes errors about a closed connection match os.ErrClosed, as
// the contract promises, while they keep matching net.ErrClosed.
func closedConn(err error) error {
	if err != nil && errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("%w (%w)", err, os.ErrClosed)
	}
	return err
}

// Send sends header and the descriptors of bufs as one message. It borrows
// bufs: the caller still owns them and may send the same buffer again, even
// twice in one message. A closed buffer fails with an error wrapping
// os.ErrClosed. With no bufs the message carries the header only; over
// unixpacket an empty header with no buffers is refused, as the receiver
// would read it as end of file.
func (c *Conn) Send(header []byte, bufs ...*Sealed) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	// A copy, so that bufs (often Send's own variadic slice) does not
	// escape into the Conn: Send then allocates nothing.
	c.sendBufs = append(c.sendBufs[:0], bufs...)
	defer func() {
		clear(c.sendBufs)
		if cap(c.sendBufs) > 16 {
			c.sendBufs = nil // keep no large slice for the Conn's lifetime
		}
	}()
	return c.sendLocked(header, sendItems{bufs: c.sendBufs})
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
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.sendLocked(header, sendItems{files: files})
}

// sendItems are the descriptors of one message: one of its fields is set.
type sendItems struct {
	bufs  []*Sealed     // Send
	files []*os.File    // SendFiles
	pool  []*memfd.File // a pool's memfds
}

func (it *sendItems) len() int {
	return len(it.bufs) + len(it.files) + len(it.pool)
}

// send sends header with the descriptors of items.
func (c *Conn) send(header []byte, items sendItems) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.sendLocked(header, items)
}

// sendLocked is send under sendMu. The items are kept in the Conn for the
// call, so that borrowing them needs no closure per message.
func (c *Conn) sendLocked(header []byte, items sendItems) error {
	n := items.len()
	if n > scm.MaxFiles {
		return fmt.Errorf("sealbuf: send: %d descriptors, more than the kernel's %d a message: split the message", n, scm.MaxFiles)
	}
	if !c.stream && len(header) == 0 && n == 0 {
		return errors.New("sealbuf: send: an empty message with no buffers reads as end of file on unixpacket; send at least one header byte or buffer")
	}
	if c.stream && len(header) > scm.MaxHeader {
		return fmt.Errorf("sealbuf: send: %d-byte header, more than the stream framing's %d", len(header), scm.MaxHeader)
	}
	c.sendFds = c.sendFds[:0]
	c.sendHeader, c.sendItems = header, items
	err := c.borrowFrom()
	c.sendHeader, c.sendItems = nil, sendItems{} // keep nothing of the caller's
	if err != nil {
		return fmt.Errorf("sealbuf: send: %w", closedConn(err))
	}
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
		c.sendOOB = scm.AppendRights(c.sendOOB[:0], c.sendFds)
		return c.write(c.sendHeader, c.sendOOB, n)
	}
	var err error
	switch {
	case it.pool != nil:
		err = it.pool[i].Control(c.borrowFn)
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

// write sends one message: a packet, or a frame on a stream socket, looping
// over short writes (only the first sendmsg carries the descriptors).
func (c *Conn) write(header, oob []byte, files int) error {
	rc, err := c.c.SyscallConn()
	if err != nil {
		return err
	}
	parts := [2][]byte{nil, header}
	if c.stream {
		c.prefix = scm.Frame{HeaderLen: len(header), Files: files}.Append(c.prefix[:0])
		parts[0] = c.prefix
	}
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		for {
			var n int
			n, werr = scm.Sendmsg(int(fd), parts[:], oob)
			if werr == unix.EAGAIN {
				return false
			}
			if werr != nil {
				return true
			}
			oob = nil
			if !c.stream {
				return true
			}
			for i := range parts {
				k := min(n, len(parts[i]))
				parts[i] = parts[i][k:]
				n -= k
			}
			if len(parts[0])+len(parts[1]) == 0 {
				return true
			}
		}
	})
	if err != nil {
		return err
	}
	if werr != nil {
		return os.NewSyscallError("sendmsg", werr)
	}
	return nil
}
