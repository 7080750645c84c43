//go:build linux

package sealbuf

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sealbuf/sealbuf/internal/scm"
	"golang.org/x/sys/unix"
)

// Receive reads one message: its header into header, and its descriptors,
// each verified with the Conn's policy (see WithReceivePolicy) and mapped as
// a *Sealed that the caller owns. n is the header's length.
//
// On any failure — a descriptor that is not a memfd or lacks seals, more
// descriptors than the limit, a truncated control message — every
// descriptor of the message is closed, no buffers are returned, the error
// names the descriptor and the reason, and the Conn stays usable for the
// next message. A header longer than header fails matching
// io.ErrShortBuffer (the message is consumed, its descriptors closed). A
// peer that hung up gives io.EOF, after every message it sent before (also
// when it closed with messages of ours unread, which resets the socket).
func (c *Conn) Receive(header []byte) (n int, bufs []*Sealed, err error) {
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	n, fds, err := c.receive(header)
	if err != nil || len(fds) == 0 {
		return n, nil, err
	}
	bufs = make([]*Sealed, 0, len(fds))
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "received descriptor")
		s, err := openWith(f, c.policy)
		if err != nil {
			for _, b := range bufs {
				b.Close()
			}
			f.Close() // openWith owns f on success only
			closeFds(fds[i+1:])
			return n, nil, fmt.Errorf("sealbuf: receive: descriptor %d of %d refused (all %d closed): %w", i, len(fds), len(fds), err)
		}
		bufs = append(bufs, s)
	}
	return n, bufs, nil
}

// ReceiveFiles reads one message like Receive but checks nothing: it returns
// the descriptors as *os.File (close-on-exec), which the caller owns. It is
// the low-level half of Receive for callers with their own policy; errors
// about the message itself (limits, truncation, short header buffer) still
// close every descriptor.
func (c *Conn) ReceiveFiles(header []byte) (n int, files []*os.File, err error) {
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	n, fds, err := c.receive(header)
	if err != nil || len(fds) == 0 {
		return n, nil, err
	}
	files = make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), "received descriptor")
	}
	return n, files, nil
}

// receive reads one message under recvMu. On success the caller owns the
// descriptors (in scratch space of the Conn, valid until the next read); on
// failure they are closed.
func (c *Conn) receive(header []byte) (n int, fds []int, err error) {
	if c.stream {
		n, fds, err = c.readFrame(header)
	} else {
		n, fds, err = c.readPacket(header)
	}
	if err != nil {
		closeFds(fds)
		return n, nil, err
	}
	return n, fds, nil
}

func closeFds(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			unix.Close(fd) // received and never wrapped: ours to close
		}
	}
}

// readPacket receives one SOCK_SEQPACKET message.
func (c *Conn) readPacket(header []byte) (int, []int, error) {
	n, oobn, flags, err := c.recv(header, unix.MSG_TRUNC)
	fds, perr := c.rights(oobn, flags)
	if err != nil {
		return 0, fds, err
	}
	if perr != nil {
		return min(n, len(header)), fds, perr
	}
	if n == 0 && oobn == 0 {
		return 0, fds, io.EOF
	}
	if n > len(header) || flags&unix.MSG_TRUNC != 0 {
		return len(header), fds, fmt.Errorf("sealbuf: receive: %d-byte header, larger than the %d-byte buffer (message dropped, its %d descriptors closed): %w", n, len(header), len(fds), io.ErrShortBuffer)
	}
	return n, fds, nil
}

// readFrame receives one frame from a SOCK_STREAM socket, never reading past
// its end. When the descriptors break a limit it closes them at once, reads
// the rest of the frame anyway (so the next Receive starts at the next
// frame) and then fails: a peer cannot make one Receive hold more than the
// limit, nor push the Conn out of step.
func (c *Conn) readFrame(header []byte) (int, []int, error) {
	// Scratch of the Conn (under recvMu), not locals: what a read borrows
	// escapes, and would be allocated on every message.
	fr := frameReader{fds: c.frameFds[:0]}
	defer func() { c.frameFds = fr.fds[:0] }()
	prefix := c.framePrefix[:]
	for got := 0; got < len(prefix); {
		n, err := fr.read(c, prefix[got:], -1)
		if err != nil {
			if got > 0 || len(fr.fds) > 0 {
				err = midFrame(err)
			}
			return 0, fr.fds, err
		}
		if n == 0 {
			if got == 0 && len(fr.fds) == 0 && fr.limitErr == nil {
				return 0, nil, io.EOF
			}
			return 0, fr.fds, fmt.Errorf("sealbuf: receive: peer hung up inside a frame: %w", io.ErrUnexpectedEOF)
		}
		got += n
	}
	frame, err := scm.ParseFrame(prefix)
	if err != nil {
		return 0, fr.fds, fmt.Errorf("sealbuf: receive: %w (the stream is out of step: close the Conn)", err)
	}
	fr.check(c, frame.Files)
	// The header: into the caller's buffer as far as it goes, the rest
	// read and dropped.
	discard := c.frameDiscard[:]
	for got := 0; got < frame.HeaderLen; {
		dst := discard[:min(len(discard), frame.HeaderLen-got)]
		if got < len(header) {
			dst = header[got:min(len(header), frame.HeaderLen)]
		}
		n, err := fr.read(c, dst, frame.Files)
		if err != nil {
			return 0, fr.fds, midFrame(err)
		}
		if n == 0 {
			return 0, fr.fds, fmt.Errorf("sealbuf: receive: peer hung up inside a frame: %w", io.ErrUnexpectedEOF)
		}
		got += n
	}
	if fr.limitErr != nil {
		return 0, fr.fds, fr.limitErr
	}
	if len(fr.fds) != frame.Files {
		return 0, fr.fds, fmt.Errorf("sealbuf: receive: frame announced %d descriptors but carried %d (all closed): %w", frame.Files, len(fr.fds), scm.ErrMalformed)
	}
	if frame.HeaderLen > len(header) {
		return len(header), fr.fds, fmt.Errorf("sealbuf: receive: %d-byte header, larger than the %d-byte buffer (message dropped, its %d descriptors closed): %w", frame.HeaderLen, len(header), len(fr.fds), io.ErrShortBuffer)
	}
	return frame.HeaderLen, fr.fds, nil
}

// midFrame turns a hang-up (ECONNRESET reads as io.EOF) inside a frame into
// io.ErrUnexpectedEOF: the peer died with a message half sent.
func midFrame(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("sealbuf: receive: peer hung up inside a frame (%v): %w", err, io.ErrUnexpectedEOF)
	}
	return err
}

// frameReader gathers the descriptors of one stream frame, which may arrive
// over several recvmsg calls, within the Conn's limit.
type frameReader struct {
	fds      []int //iosafety:allow fd-field received numbers of one frame, wrapped or closed before Receive returns
	limitErr error // set once a limit broke; the frame's descriptors are then closed as they come
}

// read runs one recvmsg into p and collects its descriptors; announced is
// the frame's descriptor count (-1 while the prefix is still unread).
func (fr *frameReader) read(c *Conn, p []byte, announced int) (int, error) {
	n, oobn, flags, err := c.recv(p, 0)
	more, perr := c.rights(oobn, flags)
	fr.fds = append(fr.fds, more...)
	if err != nil {
		return n, err
	}
	if perr != nil && fr.limitErr == nil {
		fr.limitErr = perr
	}
	fr.check(c, announced)
	return n, nil
}

// check applies the limits to what has arrived so far; once broken, it
// closes every descriptor held and keeps none.
func (fr *frameReader) check(c *Conn, announced int) {
	if fr.limitErr == nil && len(fr.fds) > c.maxFiles {
		fr.limitErr = fmt.Errorf("sealbuf: receive: more than %d descriptors in one message (all closed): %w", c.maxFiles, ErrTooManyFiles)
	}
	if fr.limitErr == nil && announced >= 0 && len(fr.fds) > announced {
		fr.limitErr = fmt.Errorf("sealbuf: receive: frame announced %d descriptors but carried more (all closed): %w", announced, scm.ErrMalformed)
	}
	if fr.limitErr != nil {
		closeFds(fr.fds)
		fr.fds = fr.fds[:0]
	}
}

// recv runs one recvmsg, waiting for readability through the poller (so the
// connection's deadlines apply).
func (c *Conn) recv(p []byte, flags int) (n, oobn, mflags int, err error) {
	rc, err := c.c.SyscallConn()
	if err != nil {
		return 0, 0, 0, err
	}
	var rerr error
	waited := c.blockingWait <= 0
	reset := false
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, oobn, mflags, rerr = scm.Recvmsg(int(fd), p, c.recvOOB, flags)
			if rerr == unix.ECONNRESET && !reset {
				// A peer that closed with our messages unread resets
				// the socket; the kernel reports that once, before what
				// the peer sent is read. Read on: its messages come
				// first, then end of file.
				reset = true
				continue
			}
			if rerr != unix.EAGAIN {
				return true
			}
			if waited {
				return false
			}
			waited = true
			if !waitReadable(int(fd), c.blockingWait) {
				return false
			}
		}
	})
	if err == nil && rerr != nil {
		err = os.NewSyscallError("recvmsg", rerr)
	}
	err = closedConn(err)
	if err != nil && errors.Is(err, unix.ECONNRESET) {
		err = fmt.Errorf("%w (%w)", io.EOF, err)
	}
	return n, oobn, mflags, err
}

// rights parses the descriptors of the last recvmsg and applies the limits.
// It returns every descriptor received, also with an error, for closing.
func (c *Conn) rights(oobn, flags int) ([]int, error) {
	if oobn == 0 && flags&unix.MSG_CTRUNC == 0 {
		return nil, nil
	}
	fds, err := scm.ParseRights(c.recvOOB[:oobn], c.recvFds[:0])
	c.recvFds = fds[:0]
	if err == nil && flags&unix.MSG_CTRUNC != 0 {
		err = fmt.Errorf("the control message was truncated (MSG_CTRUNC): the peer sent more than %d descriptors, or other control data: %w", c.maxFiles, ErrTooManyFiles)
	}
	if err == nil && len(fds) > c.maxFiles {
		err = fmt.Errorf("%d descriptors, more than the limit of %d a message: %w", len(fds), c.maxFiles, ErrTooManyFiles)
	}
	if err != nil {
		err = fmt.Errorf("sealbuf: receive: %w (all %d received descriptors closed)", err, len(fds))
	}
	return fds, err // scratch of the Conn: the caller uses them before the next read
}
