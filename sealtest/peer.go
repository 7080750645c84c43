//go:build linux

package sealtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/memfd"
)

// Peer plays the other end of a UNIX socket connection, and the other holder
// of shared memfds, the way a hostile or sloppy producer would: it sends
// unsealed memfds, pipes, too many descriptors, oversized headers, half
// messages, and it truncates memfds under their receiver.
//
// A Peer runs either in a goroutine of this process (NewPeer) or in a
// separate process (StartPeer: the test binary, re-executed; see Main).
// Both hold their own descriptors — received over a control socket, as a
// real peer would — so the receiver's descriptor counts are the same either
// way once the Peer is closed. Use StartPeer where another process matters:
// truncation by another process, a producer that dies mid-message.
//
// Methods run one at a time (a Peer is safe for concurrent use, but a second
// call waits for the first). Each returns once the peer has done the thing,
// with the peer's error, if any, as a *PeerError. A send larger than the
// socket's buffer waits until the receiver reads it: receive on another
// goroutine then.
type Peer struct {
	mu     sync.Mutex
	ctl    *net.UnixConn
	buf    []byte
	oob    []byte
	stream bool
	pid    int

	cmd  *exec.Cmd    // StartPeer
	out  *syncBuffer  // the process's output
	gone error        // set once closed, killed or dead
	wait func() error // waits for the goroutine or process to end; idempotent
}

// NewPeer starts a peer in a goroutine of this process, sending on c. It owns
// c from here on (the peer keeps its own descriptor, c is closed). c may be
// nil for a peer that only holds memfds. Close the Peer when done.
func NewPeer(c *net.UnixConn) (*Peer, error) {
	mine, theirs, err := controlPair()
	if err != nil {
		closeConn(c)
		return nil, err
	}
	p := &Peer{ctl: mine}
	done := make(chan error, 1)
	go func() {
		err := serve(theirs)
		theirs.Close()
		done <- err
	}()
	p.wait = sync.OnceValue(func() error { return <-done })
	return p, p.start(c)
}

// StartPeer starts a peer in a new process — this test binary, run again —
// sending on c. It owns c from here on (the peer process gets the
// descriptor, and this process's copy is closed). c may be nil for a peer
// that only holds memfds. Close the Peer when done.
//
// The test binary must call Main or RunPeer first thing in TestMain (or in
// an init function); StartPeer fails with an error saying so otherwise.
func StartPeer(c *net.UnixConn) (*Peer, error) {
	mine, theirs, err := controlPair()
	if err != nil {
		closeConn(c)
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		mine.Close()
		theirs.Close()
		closeConn(c)
		return nil, fmt.Errorf("sealtest: start peer: %w", err)
	}
	child, err := theirs.File() // a descriptor for ExtraFiles; closed once started
	theirs.Close()
	if err != nil {
		mine.Close()
		closeConn(c)
		return nil, fmt.Errorf("sealtest: start peer: %w", err)
	}
	out := &syncBuffer{}
	// No -test.fuzz=^$: a non-empty -test.fuzz needs -test.fuzzcachedir,
	// so a binary without RunPeer would stop at flag parsing with a usage
	// dump instead of running no tests and exiting, which is what lets
	// start report the missing RunPeer. Fuzzing is off by default anyway.
	cmd := exec.Command(exe, "-test.run=^$", "-test.bench=^$")
	// A race-enabled binary sleeps a second at exit unless told not to.
	cmd.Env = append(os.Environ(), peerEnv+"=1", "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	cmd.ExtraFiles = []*os.File{child}
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Start()
	child.Close()
	if err != nil {
		mine.Close()
		closeConn(c)
		return nil, fmt.Errorf("sealtest: start peer: %w", err)
	}
	p := &Peer{ctl: mine, cmd: cmd, out: out, wait: sync.OnceValue(cmd.Wait)}
	return p, p.start(c)
}

// Start is the usual set-up for a test: a connected socket pair of network
// "unixpacket" or "unix" whose one end is played by a peer process
// (StartPeer), and whose other end it returns, for the code under test to
// receive on. Both are closed when t's test ends; it fails t if anything
// goes wrong.
func Start(t testing.TB, network string) (*Peer, *net.UnixConn) {
	t.Helper()
	a, b, err := SocketPair(network)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	p, err := StartPeer(a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p, b
}

// start waits for the peer's hello and hands it c. On error the peer is
// closed.
func (p *Peer) start(c *net.UnixConn) error {
	p.buf = make([]byte, ctlBufSize)
	p.oob = make([]byte, unix.CmsgSpace(4))
	p.ctl.SetReadDeadline(time.Now().Add(2 * time.Minute))
	pkt, files, err := readCtl(p.ctl, p.buf, p.oob)
	p.ctl.SetReadDeadline(time.Time{})
	closeAll(files)
	if err == nil && pkt[0] != opHello {
		err = fmt.Errorf("unexpected first packet %d", pkt[0])
	}
	if err != nil {
		closeConn(c)
		p.kill()
		p.gone = fmt.Errorf("sealtest: the peer did not start: %v%s", err, p.output())
		if p.cmd != nil && errors.Is(err, errEOF) {
			p.gone = fmt.Errorf("sealtest: the peer process exited without playing the peer: "+
				"call sealtest.Main(m) or sealtest.RunPeer() first thing in TestMain (or in an init function)%s", p.output())
		}
		return p.gone
	}
	p.pid = int((&dec{b: pkt[1:]}).u64())
	if c == nil {
		return nil
	}
	p.stream = isStream(c)
	f, err := connFile(c)
	if err == nil {
		_, err = p.call("connect", enc{opConn}, []*os.File{f})
		f.Close() // the peer has its own copy now
	}
	if err != nil {
		p.Close()
		return err
	}
	return nil
}

// Pid returns the process id of the peer: another process for StartPeer,
// this one for NewPeer.
func (p *Peer) Pid() int { return p.pid }

// Send sends one message: header and, as its descriptors, a fresh one made
// (in the peer) from each Desc, which the peer closes once sent. Over
// "unixpacket" the message is one packet; over a "unix" stream it is framed
// as sealbuf.Conn frames it. Any header length and any number of
// descriptors (up to the kernel's 253) may be sent, also an empty packet
// with none, which reads as end of file.
func (p *Peer) Send(header []byte, descs ...Desc) error {
	_, err := p.send("send", modeFramed, 0, false, header, descs, nil)
	return err
}

// SendFiles sends one message like Send, with descriptors for the caller's
// files (borrowed: the peer gets its own copies) instead of Descs.
func (p *Peer) SendFiles(header []byte, files ...*os.File) error {
	_, err := p.send("send files", modeFramed, 0, false, header, nil, files)
	return err
}

// SendRaw sends b as it is, with no frame prefix even on a stream, and the
// descriptors made from descs with its first byte: for garbage, forged frame
// prefixes and descriptor counts that do not match.
func (p *Peer) SendRaw(b []byte, descs ...Desc) error {
	_, err := p.send("send raw", modeRaw, 0, false, b, descs, nil)
	return err
}

// SendShared sends header with a memfd made from d, and keeps a descriptor
// of it: the returned Shared truncates, grows or rewrites the memfd under
// its receiver (for sealbuf.Map). Close the Shared when done.
func (p *Peer) SendShared(header []byte, d Desc) (*Shared, error) {
	id, err := p.send("send shared", modeFramed, 0, true, header, []Desc{d}, nil)
	if err != nil {
		return nil, err
	}
	return &Shared{p: p, id: uint32(id)}, nil
}

// HangUpMidMessage sends the first cut bytes of a framed message (on a
// "unix" stream socket: the 8-byte frame prefix, then header) with the
// descriptors made from descs, and hangs up: a producer that died while
// sending. cut is in [1, 8+len(header)); cuts below 8 end inside the
// prefix. Over "unixpacket", where a message arrives whole or not at all,
// it fails.
func (p *Peer) HangUpMidMessage(header []byte, cut int, descs ...Desc) error {
	_, err := p.send("hang up mid-message", modePartial, cut, false, header, descs, nil)
	return err
}

// HangUp closes the peer's end of the connection; the peer stays up (its
// Shared memfds too).
func (p *Peer) HangUp() error {
	_, err := p.call("hang up", enc{opHangUp}, nil)
	return err
}

// Share hands the peer a descriptor for f (borrowed: the peer gets its own
// copy of the open file description, and f stays the caller's), to truncate
// or rewrite it later.
func (p *Peer) Share(f *os.File) (*Shared, error) {
	id, err := p.call("share", enc{opShare}, []*os.File{f})
	if err != nil {
		return nil, err
	}
	return &Shared{p: p, id: uint32(id)}, nil
}

func (p *Peer) send(op string, mode byte, cut int, keep bool, header []byte, descs []Desc, files []*os.File) (uint64, error) {
	if len(descs)+len(files) > maxCtlFiles {
		return 0, fmt.Errorf("sealtest: %s: %d descriptors, more than the kernel's %d a message", op, len(descs)+len(files), maxCtlFiles)
	}
	cmd := enc{opSend}.u8(mode).u32(uint32(cut)).u8(b2u(keep)).u16(uint16(len(descs)))
	for _, d := range descs {
		cmd = cmd.desc(d)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for rest := header; len(rest) > 0; {
		k := min(len(rest), maxChunk)
		if err := p.write(append(enc{opHeader}, rest[:k]...), nil); err != nil {
			return 0, p.lost(op, err)
		}
		rest = rest[k:]
	}
	return p.callLocked(op, cmd, files)
}

func b2u(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// call runs one command and waits for its reply.
func (p *Peer) call(op string, cmd []byte, files []*os.File) (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.callLocked(op, cmd, files)
}

func (p *Peer) callLocked(op string, cmd []byte, files []*os.File) (uint64, error) {
	if err := p.write(cmd, files); err != nil {
		return 0, p.lost(op, err)
	}
	pkt, more, err := readCtl(p.ctl, p.buf, p.oob)
	closeAll(more)
	if err != nil {
		return 0, p.lost(op, err)
	}
	return parseReply(op, pkt)
}

func (p *Peer) write(b []byte, files []*os.File) error {
	if p.gone != nil {
		return p.gone
	}
	return writeCtl(p.ctl, b, files)
}

// lost records that the peer cannot be reached (it died, or was closed).
func (p *Peer) lost(op string, err error) error {
	if p.gone == nil {
		p.ctl.Close()
		werr := p.wait()
		p.gone = fmt.Errorf("sealtest: peer: %s: the peer is gone (%v; exit: %v)%s", op, err, werr, p.output())
	}
	return p.gone
}

// Kill ends the peer at once, as a crash would: StartPeer's process gets
// SIGKILL; NewPeer's goroutine closes everything it holds. Its connection
// and its copies of shared memfds close; the Peer is then unusable.
func (p *Peer) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone != nil {
		return p.gone
	}
	if p.cmd != nil {
		p.kill()
	} else {
		p.callLocked("kill", enc{opKill}, nil)
	}
	p.ctl.Close()
	p.wait()
	p.gone = errors.New("sealtest: peer: killed")
	return nil
}

func (p *Peer) kill() {
	if p.cmd != nil {
		p.cmd.Process.Kill()
	}
	p.ctl.Close()
	p.wait()
}

// Close stops the peer: it closes the connection and every shared memfd it
// holds, and waits for its goroutine or process to end. It reports a peer
// process that failed. A second Close, or a Close after Kill, returns nil.
func (p *Peer) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone != nil {
		return nil
	}
	_, err := p.callLocked("exit", enc{opExit}, nil)
	p.ctl.Close()
	werr := p.wait()
	p.gone = errors.New("sealtest: peer: closed")
	if werr != nil {
		return fmt.Errorf("sealtest: peer: %w%s", werr, p.output())
	}
	return err
}

func (p *Peer) output() string {
	if p.out == nil {
		return ""
	}
	if s := strings.TrimRight(p.out.String(), "\n"); s != "" {
		return "; its output:\n" + s
	}
	return ""
}

// Shared is a memfd that a Peer holds a descriptor of, and resizes or
// rewrites when told to, whatever its receiver is doing.
type Shared struct {
	p  *Peer
	id uint32
}

// Truncate sets the memfd's size, in the peer: shrinking it (which makes a
// receiver's accesses past the new end fault) or growing it. It returns
// once the peer's ftruncate has returned; a seal that forbids the change
// gives an error matching unix.EPERM.
func (s *Shared) Truncate(size int64) error {
	_, err := s.p.call("truncate", enc{opTruncate}.u32(s.id).u64(uint64(size)), nil)
	return err
}

// WriteAt writes b at off with pwrite, in the peer, growing the memfd when
// it writes past the end (unless a seal forbids it: unix.EPERM).
func (s *Shared) WriteAt(b []byte, off int64) (int, error) {
	written := 0
	for {
		k := min(len(b)-written, maxChunk)
		cmd := append(enc{opWrite}.u32(s.id).u64(uint64(off+int64(written))), b[written:written+k]...)
		n, err := s.p.call("write", cmd, nil)
		written += int(n)
		if err != nil || written == len(b) {
			return written, err
		}
	}
}

// Size returns the memfd's size, as the peer sees it.
func (s *Shared) Size() (int64, error) {
	n, err := s.p.call("size", enc{opSize}.u32(s.id), nil)
	return int64(n), err
}

// Flap starts truncating the memfd to cut bytes and growing it back to size
// bytes (writing Pattern's bytes back with pwrite), over and over, in the
// peer, until StopFlap. The memfd's bytes below its end are Pattern's at any
// moment, with one exception: ftruncate zeroes the rest of the page holding
// cut, and pwrite writes it back a little later. So a read that succeeds
// returns Pattern's bytes, except that bytes in [cut, the end of cut's page)
// may read as zero (the read saw them past the end, and the file had grown
// back by the time it ended). With a page-aligned cut there is no exception.
func (s *Shared) Flap(cut, size int64) error {
	_, err := s.p.call("flap", enc{opFlap}.u32(s.id).u64(uint64(cut)).u64(uint64(size)), nil)
	return err
}

// StopFlap stops flapping, leaving the memfd at its full size, and returns
// the number of cut-and-grow cycles run.
func (s *Shared) StopFlap() (int, error) {
	n, err := s.p.call("stop flap", enc{opStopFlap}.u32(s.id), nil)
	return int(n), err
}

// AddSeals adds seals to the memfd, in the peer: a producer that seals a
// buffer after handing it over (F_SEAL_WRITE fails with unix.EBUSY while
// the receiver has a writable mapping; F_SEAL_FUTURE_WRITE does not).
func (s *Shared) AddSeals(seals memfd.Seals) error {
	_, err := s.p.call("add seals", enc{opAddSeals}.u32(s.id).u32(uint32(seals)), nil)
	return err
}

// Close makes the peer close its descriptor of the memfd.
func (s *Shared) Close() error {
	_, err := s.p.call("release", enc{opRelease}.u32(s.id), nil)
	return err
}

// SocketPair returns a connected pair of UNIX sockets, for network
// "unixpacket" (SOCK_SEQPACKET) or "unix" (SOCK_STREAM). The caller owns
// both.
func SocketPair(network string) (a, b *net.UnixConn, err error) {
	typ := unix.SOCK_SEQPACKET
	switch network {
	case "unixpacket":
	case "unix":
		typ = unix.SOCK_STREAM
	default:
		return nil, nil, fmt.Errorf("sealtest: socket pair: network %q is neither \"unixpacket\" nor \"unix\"", network)
	}
	a, b, err = socketPair(typ)
	if err != nil {
		return nil, nil, fmt.Errorf("sealtest: socket pair: %w", err)
	}
	return a, b, nil
}

func controlPair() (*net.UnixConn, *net.UnixConn, error) {
	a, b, err := socketPair(unix.SOCK_SEQPACKET)
	if err != nil {
		return nil, nil, fmt.Errorf("sealtest: control socket: %w", err)
	}
	return a, b, nil
}

func socketPair(typ int) (*net.UnixConn, *net.UnixConn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	a, aerr := fileConn(os.NewFile(uintptr(fds[0]), "sealtest-socket"))
	b, berr := fileConn(os.NewFile(uintptr(fds[1]), "sealtest-socket"))
	if err := errors.Join(aerr, berr); err != nil {
		closeConn(a)
		closeConn(b)
		return nil, nil, err
	}
	return a, b, nil
}

// fileConn turns a socket file into a *net.UnixConn (with a descriptor of
// its own) and closes f.
func fileConn(f *os.File) (*net.UnixConn, error) {
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

// connFile returns c's socket as a *os.File with a descriptor of its own and
// closes c.
func connFile(c *net.UnixConn) (*os.File, error) {
	defer c.Close()
	return c.File()
}

func isStream(c *net.UnixConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	typ := -1
	rc.Control(func(fd uintptr) { typ, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE) })
	return typ == unix.SOCK_STREAM
}

func closeConn(c *net.UnixConn) {
	if c != nil {
		c.Close()
	}
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p...)
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b)
}
