//go:build linux

package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// ErrTooManyFiles is matched when a received message carried more
// descriptors than the limit, or the kernel truncated its control data
// (MSG_CTRUNC). sealbuf.ErrTooManyFiles is this error.
var ErrTooManyFiles = errors.New("too many descriptors in one message")

// msgReader is the scratch space of ReadMsg, made once per Conn.
type msgReader struct {
	c        *Conn
	maxFiles int
	oob      []byte
	//iosafety:allow fd-field scratch for one read: numbers wrapped in *os.File or closed before ReadMsg's caller returns
	fds []int
	//iosafety:allow fd-field scratch for one read: descriptors the receiver's socket options added, closed at once
	other []int
	//iosafety:allow fd-field scratch for one stream frame: numbers handed out or closed before ReadMsg returns
	frameFds []int
	prefix   [FrameLen]byte
	discard  [512]byte // the part of a header longer than the caller's buffer
	limitErr error

	// A stream frame in progress, kept across calls: a read that a
	// context, the read deadline or a kick interrupted mid-frame returns,
	// and the next one goes on where it stopped (the bytes read so far
	// cannot be read again). frameFds then holds the frame's descriptors
	// (Close closes them).
	inFrame bool
	pGot    int    // prefix bytes read
	frame   Frame  // the parsed prefix, once pGot == FrameLen
	hGot    int    // header bytes read
	hCap    int    // the header buffer's length: the smallest of the calls' that read this frame
	saved   []byte // header[:min(hGot, hCap)] of the call that was interrupted
	// broken: a frame prefix did not parse, so no message boundary can be
	// found any more (stream sockets).
	broken error

	// One recvmsg (op), its arguments and results.
	p                 []byte
	flags             int
	n, oobn, msgFlags int
	op                func(fd int) error
}

func (m *msgReader) init(c *Conn, maxFiles int) {
	m.c = c
	m.maxFiles = max(0, min(maxFiles, MaxFiles))
	m.oob = make([]byte, Space(m.maxFiles)+ControlSlack)
	m.op = m.recvmsg
}

func (m *msgReader) recvmsg(fd int) error {
	var err error
	m.n, m.oobn, m.msgFlags, err = Recvmsg(fd, m.p, m.oob, m.flags)
	return err
}

// ReadMsg reads one message: its header into header and its descriptors,
// which the caller owns on success (in scratch space of the Conn, valid
// until the next read: wrap or close them before). On failure every
// descriptor of the message is closed. n is the header's length.
//
// A packet is one message. On a stream socket it reads exactly one frame,
// never a byte past its end; when the descriptors break a limit it closes
// them at once and reads the rest of the frame anyway (so the next read
// starts at the next frame), then fails: a peer cannot make one read hold
// more than the limit, nor push the Conn out of step. A header longer than
// header fails matching io.ErrShortBuffer (the message is consumed). A
// peer that hung up gives io.EOF, after every message it sent before. ctx
// (nil: none) bounds the wait; when it (or the read deadline) ends a read
// inside a stream frame, what was read is kept and the next ReadMsg
// finishes that frame, so the stream stays in step. The caller holds
// RecvMu.
func (c *Conn) ReadMsg(ctx context.Context, header []byte) (n int, fds []int, err error) {
	m := &c.msg
	if c.stream {
		n, fds, err = m.readFrame(ctx, header)
	} else {
		n, fds, err = m.readPacket(ctx, header)
	}
	if err != nil {
		CloseFds(fds)
		return n, nil, err
	}
	return n, fds, nil
}

// CloseFds closes received descriptors that were never wrapped in an owner.
func CloseFds(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			unix.Close(fd) // received and never wrapped: ours to close
		}
	}
}

// recv runs one blocking recvmsg into p.
func (m *msgReader) recv(ctx context.Context, p []byte, flags int) error {
	m.p, m.flags, m.n, m.oobn, m.msgFlags = p, flags, 0, 0, 0
	err := m.c.Read(ctx, "recvmsg", m.op, ReadWait, nil)
	m.p = nil
	return err
}

// readPacket receives one SOCK_SEQPACKET message.
func (m *msgReader) readPacket(ctx context.Context, header []byte) (int, []int, error) {
	err := m.recv(ctx, header, unix.MSG_TRUNC)
	fds, perr := m.rights()
	if err != nil {
		return 0, fds, err
	}
	n := m.n
	if perr != nil {
		return min(n, len(header)), fds, perr
	}
	if n == 0 && m.oobn == 0 {
		return 0, fds, io.EOF
	}
	if n > len(header) || m.msgFlags&unix.MSG_TRUNC != 0 {
		return len(header), fds, fmt.Errorf("%d-byte header, larger than the %d-byte buffer (message dropped, its %d descriptors closed): %w", n, len(header), len(fds), io.ErrShortBuffer)
	}
	return n, fds, nil
}

// readFrame receives one frame from a SOCK_STREAM socket. A read that an
// interruption (interrupted) ends mid-frame keeps what it read for the
// next call, which finishes the frame.
func (m *msgReader) readFrame(ctx context.Context, header []byte) (int, []int, error) {
	if m.broken != nil {
		return 0, nil, m.drainBroken(ctx)
	}
	if !m.inFrame {
		m.inFrame = true
		m.frameFds, m.limitErr = m.frameFds[:0], nil
		m.pGot, m.hGot, m.hCap = 0, 0, len(header)
	} else if m.pGot == FrameLen {
		// Resumed inside the header: give the caller what the interrupted
		// call had read of it.
		m.hCap = min(m.hCap, len(header))
		copy(header[:m.hCap], m.saved[:min(m.hGot, m.hCap)])
	} else {
		m.hCap = len(header)
	}
	n, err := m.frameBody(ctx, header)
	if err != nil && interrupted(err) {
		if m.pGot == FrameLen {
			m.saved = append(m.saved[:0], header[:min(m.hGot, m.hCap)]...)
		}
		return 0, nil, err // the descriptors stay with the frame
	}
	m.inFrame = false
	if cap(m.saved) > len(m.discard) {
		m.saved = nil // keep no large buffer for the Conn's lifetime
	}
	return n, m.frameFds, err
}

// interrupted reports an error that ends a read but not the frame it was
// reading: the next read goes on with it.
func interrupted(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ErrKicked)
}

// frameBody reads the rest of the frame in progress.
func (m *msgReader) frameBody(ctx context.Context, header []byte) (int, error) {
	prefix := m.prefix[:]
	for m.pGot < len(prefix) {
		n, err := m.readPart(ctx, prefix[m.pGot:], -1)
		if err != nil {
			if (m.pGot > 0 || len(m.frameFds) > 0) && !interrupted(err) {
				err = midFrame(err)
			}
			return 0, err
		}
		if n == 0 {
			if m.pGot == 0 && len(m.frameFds) == 0 && m.limitErr == nil {
				return 0, io.EOF
			}
			return 0, fmt.Errorf("peer hung up inside a frame: %w", io.ErrUnexpectedEOF)
		}
		m.pGot += n
		if m.pGot == len(prefix) {
			frame, err := ParseFrame(prefix)
			if err != nil {
				m.broken = err
				return 0, fmt.Errorf("%w (the stream is out of step: no message can be found any more; later reads wait for the peer to hang up and then return io.EOF: close the Conn)", err)
			}
			m.frame = frame
			m.check(frame.Files)
		}
	}
	frame, hCap := m.frame, m.hCap
	// The header: into the caller's buffer as far as it goes, the rest
	// read and dropped.
	for m.hGot < frame.HeaderLen {
		got := m.hGot
		dst := m.discard[:min(len(m.discard), frame.HeaderLen-got)]
		if got < hCap {
			dst = header[got:min(hCap, frame.HeaderLen)]
		}
		n, err := m.readPart(ctx, dst, frame.Files)
		if err != nil {
			if !interrupted(err) {
				err = midFrame(err)
			}
			return 0, err
		}
		if n == 0 {
			return 0, fmt.Errorf("peer hung up inside a frame: %w", io.ErrUnexpectedEOF)
		}
		m.hGot += n
	}
	if m.limitErr != nil {
		return 0, m.limitErr
	}
	if len(m.frameFds) != frame.Files {
		return 0, fmt.Errorf("frame announced %d descriptors but carried %d (all closed): %w", frame.Files, len(m.frameFds), ErrMalformed)
	}
	if frame.HeaderLen > hCap {
		return hCap, fmt.Errorf("%d-byte header, larger than the %d-byte buffer (message dropped, its %d descriptors closed): %w", frame.HeaderLen, hCap, len(m.frameFds), io.ErrShortBuffer)
	}
	return frame.HeaderLen, nil
}

// closeFrame closes the descriptors of a frame in progress (Close).
func (m *msgReader) closeFrame() {
	if m.inFrame {
		CloseFds(m.frameFds)
		m.frameFds = m.frameFds[:0]
		m.inFrame = false
	}
}

// drainBroken reads and drops what a peer that broke the stream's framing
// still sends (closing any descriptor), until it hangs up: io.EOF. ctx and
// the read deadline bound the wait.
func (m *msgReader) drainBroken(ctx context.Context) error {
	for {
		err := m.recv(ctx, m.discard[:], 0)
		fds, _ := m.rights()
		CloseFds(fds)
		if err != nil {
			return err
		}
		if m.n == 0 {
			return io.EOF
		}
	}
}

// midFrame turns a hang-up inside a frame into io.ErrUnexpectedEOF: the
// peer died with a message half sent.
func midFrame(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("peer hung up inside a frame (%v): %w", err, io.ErrUnexpectedEOF)
	}
	return err
}

// readPart runs one recvmsg of a frame into p and collects its
// descriptors; announced is the frame's descriptor count (-1 while the
// prefix is still unread).
func (m *msgReader) readPart(ctx context.Context, p []byte, announced int) (int, error) {
	err := m.recv(ctx, p, 0)
	more, perr := m.rights()
	m.frameFds = append(m.frameFds, more...)
	if err != nil {
		return m.n, err
	}
	if perr != nil && m.limitErr == nil {
		m.limitErr = perr
	}
	m.check(announced)
	return m.n, nil
}

// check applies the limits to what has arrived of a frame so far; once
// broken, it closes every descriptor held and keeps none.
func (m *msgReader) check(announced int) {
	if m.limitErr == nil && len(m.frameFds) > m.maxFiles {
		m.limitErr = fmt.Errorf("more than %d descriptors in one message (all closed): %w", m.maxFiles, ErrTooManyFiles)
	}
	if m.limitErr == nil && announced >= 0 && len(m.frameFds) > announced {
		m.limitErr = fmt.Errorf("frame announced %d descriptors but carried more (all closed): %w", announced, ErrMalformed)
	}
	if m.limitErr != nil {
		CloseFds(m.frameFds)
		m.frameFds = m.frameFds[:0]
	}
}

// rights parses the descriptors of the last recvmsg and applies the
// limits. It returns every descriptor the peer sent, also with an error,
// for closing; those the receiver's own socket options added are closed
// here.
func (m *msgReader) rights() ([]int, error) {
	if m.oobn == 0 && m.msgFlags&unix.MSG_CTRUNC == 0 {
		return nil, nil
	}
	fds, other, err := ParseControl(m.oob[:m.oobn], m.fds[:0], m.other[:0])
	CloseFds(other)
	m.fds, m.other = fds[:0], other[:0]
	if err == nil && m.msgFlags&unix.MSG_CTRUNC != 0 {
		err = fmt.Errorf("the control message was truncated (MSG_CTRUNC) after %d descriptors: %s: %w", len(fds), CtruncCause(m.maxFiles), ErrTooManyFiles)
	}
	if err == nil && len(fds) > m.maxFiles {
		err = fmt.Errorf("%d descriptors, more than the limit of %d a message: %w", len(fds), m.maxFiles, ErrTooManyFiles)
	}
	if err != nil {
		err = fmt.Errorf("%w (all %d received descriptors closed)", err, len(fds))
	}
	return fds, err // scratch: the caller uses them before the next read
}

// CtruncCause says why the kernel may have truncated a control message:
// the peer sent more descriptors than there was room for, or this process
// could not take them all — it reaches its descriptor limit (RLIMIT_NOFILE)
// — which is checked here and said when it is close. It runs while the
// descriptors that were installed are still open: a process that ran out
// cannot even open /proc/self/fd to count them (EMFILE), which says it.
func CtruncCause(room int) string {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil {
		open, err := countOpen()
		switch {
		case errors.Is(err, unix.EMFILE):
			return fmt.Sprintf("this process ran out of descriptors (RLIMIT_NOFILE %d reached: raise the limit or close descriptors)", lim.Cur)
		case err == nil && uint64(open)+uint64(room) >= lim.Cur:
			return fmt.Sprintf("either the peer sent more than %d descriptors, or this process ran out of descriptors (%d open, RLIMIT_NOFILE %d: raise the limit or close descriptors)", room, open, lim.Cur)
		}
	}
	return fmt.Sprintf("the peer sent more than %d descriptors (or this process ran out of descriptors: check RLIMIT_NOFILE)", room)
}

// countOpen counts this process's open descriptors.
func countOpen() (int, error) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return 0, err
	}
	return len(names) - 1, nil // the directory's own descriptor
}
