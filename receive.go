//go:build linux

package sealbuf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sealbuf/sealbuf/internal/wire"
)

// Receive reads one message: its header into header, and its descriptors,
// each verified with the Conn's policy (see WithReceivePolicy) and mapped as
// a *Sealed that the caller owns. n is the header's length. It waits for as
// long as the read deadline allows.
//
// On any failure — a descriptor that is not a memfd or lacks seals, more
// descriptors than the limit, a truncated control message — every
// descriptor of the message is closed, no buffers are returned, and the
// error names the descriptor and the reason. A header longer than header
// fails matching io.ErrShortBuffer (the message is consumed, its
// descriptors closed). After all of these the Conn stays usable for the
// next message. The one exception is a stream socket whose framing a peer
// broke (a bad frame prefix, ErrMalformed, "the stream is out of step"):
// no message boundary can be found any more. Receive says so once; every
// later Receive drops what the peer still sends (closing its descriptors)
// and waits for the hang-up, then returns io.EOF — close the Conn. (The
// pool does the same.) A peer that hung up gives
// io.EOF, after every message it sent before (also when it closed with
// messages of ours unread, which resets the socket).
func (c *Conn) Receive(header []byte) (n int, bufs []*Sealed, err error) {
	return c.ReceiveContext(context.Background(), header)
}

// ReceiveContext is Receive, with ctx bounding the wait for a message (the
// read deadline set with SetReadDeadline applies too, whichever comes
// first). A cancelled or expired ctx fails with an error matching
// ctx.Err(), with no message consumed; the Conn stays usable.
func (c *Conn) ReceiveContext(ctx context.Context, header []byte) (n int, bufs []*Sealed, err error) {
	if err := c.w.RecvMu.LockContext(ctx); err != nil {
		return 0, nil, err // waiting behind another Receive
	}
	defer c.w.RecvMu.Unlock()
	n, fds, err := c.receive(ctx, header)
	if err != nil || len(fds) == 0 {
		return n, nil, err
	}
	bufs, err = adoptAll(c, fds, func(f *os.File) (*Sealed, error) { return openWith(f, c.policy) })
	if err != nil {
		return n, nil, err
	}
	for _, b := range bufs {
		b.mapped = c.stats.track(b.size)
	}
	c.stats.received(n, len(bufs))
	return n, bufs, nil
}

// ReceiveMappings reads one message like Receive, but maps each descriptor
// with Map and opts instead of Open: for peers whose buffers are not
// write-sealed (or not sealed at all), read under Map's guard. It is
// all-or-nothing like Receive: every descriptor a memfd that passes opts
// and is mapped, or all of them closed, no Mapping returned, and the Conn
// usable for the next message. The caller owns the Mappings.
func (c *Conn) ReceiveMappings(header []byte, opts ...MapOption) (n int, maps []*Mapping, err error) {
	c.w.RecvMu.Lock()
	defer c.w.RecvMu.Unlock()
	n, fds, err := c.receive(context.Background(), header)
	if err != nil || len(fds) == 0 {
		return n, nil, err
	}
	maps, err = adoptAll(c, fds, func(f *os.File) (*Mapping, error) { return Map(f, opts...) })
	if err != nil {
		return n, nil, err
	}
	for _, m := range maps {
		m.mapped = c.stats.track(m.Len())
	}
	c.stats.received(n, len(maps))
	return n, maps, nil
}

// adoptAll wraps every received descriptor with adopt (Open or Map, which
// own the file on success only), all or nothing: on the first refusal it
// closes what it made, the refused file and every descriptor after it, and
// says which descriptor was refused and why.
func adoptAll[T interface{ Close() error }](c *Conn, fds []int, adopt func(*os.File) (T, error)) ([]T, error) {
	out := make([]T, 0, len(fds))
	for i, fd := range fds {
		//iosafety:allow newfile fds are this Conn's scratch, fresh from recvmsg and owned by nobody else: each is wrapped once here or closed
		f := os.NewFile(uintptr(fd), "received descriptor")
		v, err := adopt(f)
		if err != nil {
			for _, v := range out {
				v.Close()
			}
			f.Close()
			wire.CloseFds(fds[i+1:])
			c.stats.openRefused(err)
			return nil, fmt.Errorf("sealbuf: receive: descriptor %d of %d refused (all %d closed): %w", i, len(fds), len(fds), err)
		}
		out = append(out, v)
	}
	return out, nil
}

// ReceiveFiles reads one message like Receive but checks nothing: it returns
// the descriptors as *os.File (close-on-exec), which the caller owns. It is
// the low-level half of Receive for callers with their own policy; errors
// about the message itself (limits, truncation, short header buffer) still
// close every descriptor.
func (c *Conn) ReceiveFiles(header []byte) (n int, files []*os.File, err error) {
	c.w.RecvMu.Lock()
	defer c.w.RecvMu.Unlock()
	n, fds, err := c.receive(context.Background(), header)
	if err != nil || len(fds) == 0 {
		return n, nil, err
	}
	files = make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), "received descriptor")
	}
	c.stats.received(n, len(files))
	return n, files, nil
}

// receive reads one message under RecvMu. On success the caller owns the
// descriptors (in scratch space of the Conn, valid until the next read); on
// failure they are closed. A header-only message is counted here as
// received; one with descriptors is counted by the caller.
func (c *Conn) receive(ctx context.Context, header []byte) (int, []int, error) {
	n, fds, err := c.w.ReadMsg(plainContext(ctx), header)
	if err != nil {
		c.stats.readRefused(err)
	} else if len(fds) == 0 {
		c.stats.received(n, 0)
	}
	if err != nil && err != io.EOF && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("sealbuf: receive: %w", err)
	}
	return n, fds, err
}
