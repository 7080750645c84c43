//go:build linux

package sealbuf

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Connecting processes. Two ways, both over SOCK_SEQPACKET ("unixpacket"),
// the socket type whose packets keep each message whole:
//
//   - By name, for processes that find each other: Listen on a path (or an
//     "@name" in the abstract namespace) in the consumer, Dial it in each
//     producer. This is net.Listen / net.Dial for Conns.
//   - By inheritance, for a parent and the child it starts: Pair makes a
//     connected pair, the parent keeps the Conn and hands the *os.File to
//     the child in exec.Cmd.ExtraFiles; the child adopts it with ExtraFile
//     and wraps it with FileConn.

// Listener accepts Conns on a "unixpacket" socket bound to a path or to an
// abstract name. It owns its socket (and the socket file, which Close
// removes, as net.UnixListener does). Accept may be called from several
// goroutines at once; Close stops them all.
type Listener struct {
	l    *net.UnixListener
	opts []ConnOption
}

// Listen listens for Dial on path, a file system path or, starting with
// "@", a name in Linux's abstract socket namespace (no file; the name
// disappears with the socket). opts apply to every Conn that Accept returns.
//
// A socket file left at path by a listener that exited without removing
// it (killed, crashed) is stale: nothing is bound to it, so Listen removes
// it and listens in its place. Listen refuses, with an error that says so
// and leaves the file alone, a path where a running process has a socket
// bound (a live listener, of any socket type) and a path holding anything
// but a socket. It tells the two apart without connecting, so a live
// listener sees nothing. Two processes that start listening on the same
// stale path at the same moment may still race; give each its own path.
//
// The Listener owns its socket: Close it (that also removes the socket
// file). The socket is close-on-exec.
func Listen(path string, opts ...ConnOption) (*Listener, error) {
	if err := checkSocketName(path); err != nil {
		return nil, fmt.Errorf("sealbuf: listen on %q: %w", path, err)
	}
	addr := &net.UnixAddr{Name: path, Net: "unixpacket"}
	l, err := net.ListenUnix("unixpacket", addr)
	if err != nil && errors.Is(err, syscall.EADDRINUSE) && !isAbstract(path) {
		if serr := removeStale(path, err); serr != nil {
			return nil, fmt.Errorf("sealbuf: listen on %q: %w", path, serr)
		}
		l, err = net.ListenUnix("unixpacket", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("sealbuf: listen on %q: %w", path, listenHint(path, err))
	}
	return &Listener{l: l, opts: opts}, nil
}

// Accept waits for the next Dial and returns its Conn, which the caller
// owns. After Close (also a Close from another goroutine while Accept
// waits) it returns an error matching net.ErrClosed and os.ErrClosed. To
// stop accepting when a context ends, close the Listener then:
// context.AfterFunc(ctx, func() { l.Close() }).
func (l *Listener) Accept() (*Conn, error) {
	c, err := l.l.AcceptUnix()
	if err != nil {
		return nil, fmt.Errorf("sealbuf: accept on %s: %w", l.l.Addr(), closedListener(err, "the Listener is closed"))
	}
	return NewConn(c, l.opts...), nil
}

// Addr returns the address listened on: a *net.UnixAddr whose Name is the
// path or the "@name" given to Listen. It stays valid after Close.
func (l *Listener) Addr() net.Addr { return l.l.Addr() }

// Close stops listening, removes the socket file (not for an abstract
// name), and makes every Accept, waiting or later, fail. Conns already
// accepted stay open. A second Close returns an error matching os.ErrClosed.
func (l *Listener) Close() error {
	if err := l.l.Close(); err != nil {
		return fmt.Errorf("sealbuf: close listener on %s: %w", l.l.Addr(), closedListener(err, "closed already"))
	}
	return nil
}

// closedListener makes the net package's "use of closed network
// connection" match os.ErrClosed too, as every Close in sealbuf does, and
// says so in words.
func closedListener(err error, words string) error {
	if errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("%s: %w (%w)", words, err, os.ErrClosed)
	}
	return err
}

// Dial connects to a Listener (or any "unixpacket" listener) at path, a file
// system path or an "@name" in the abstract namespace, and returns the Conn,
// which the caller owns. opts configure the Conn as for NewConn. Dial does
// not wait for a listener to appear: nothing listening is an error at once
// (matching syscall.ENOENT for a missing socket file, syscall.ECONNREFUSED
// for a stale one or an abstract name nobody holds).
func Dial(path string, opts ...ConnOption) (*Conn, error) {
	if err := checkSocketName(path); err != nil {
		return nil, fmt.Errorf("sealbuf: dial %q: %w", path, err)
	}
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("sealbuf: dial %q: %w", path, dialHint(path, err))
	}
	return NewConn(c, opts...), nil
}

// Pair returns a connected "unixpacket" socket pair: this process's end as
// a Conn (configured by opts), and the other end as an *os.File to hand to
// a child process in exec.Cmd.ExtraFiles, where the child finds it with
// ExtraFile and wraps it with FileConn. Both are close-on-exec: the file
// reaches only the child whose ExtraFiles holds it (entry i becomes the
// child's descriptor 3+i, without close-on-exec).
//
// The caller owns both. Close the file as soon as the child has started
// (exec.Cmd.Start has returned): the child holds its own copy, and while
// this process keeps one the Conn never sees the child hang up (io.EOF).
// The file can also be given to FileConn in this process.
func Pair(opts ...ConnOption) (*Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		hint := ""
		if err == unix.EMFILE || err == unix.ENFILE {
			hint = ": close descriptors you no longer need, or raise the limit (ulimit -n)"
		}
		return nil, nil, fmt.Errorf("sealbuf: pair: %w%s", os.NewSyscallError("socketpair", err), hint)
	}
	mine := os.NewFile(uintptr(fds[0]), "sealbuf-pair")
	theirs := os.NewFile(uintptr(fds[1]), "sealbuf-pair")
	nc, err := net.FileConn(mine) // its own descriptor, in the netpoller
	mine.Close()
	if err != nil {
		theirs.Close()
		return nil, nil, fmt.Errorf("sealbuf: pair: %w", err)
	}
	return NewConn(nc.(*net.UnixConn), opts...), theirs, nil
}

// FileConn wraps f, a connected UNIX socket ("unixpacket", or a "unix"
// stream) — typically the one ExtraFile returns in a child that Pair's
// caller started — in a Conn configured by opts.
//
// On success the Conn owns the socket and f is closed (the Conn holds its
// own descriptor of it): do not use f again. On error f stays the caller's,
// open and unchanged. FileConn refuses, saying what f is, anything but a
// connected UNIX stream or seqpacket socket: files, pipes, memfds, sockets
// of other families (TCP, UDP, …), datagram and listening UNIX sockets.
func FileConn(f *os.File, opts ...ConnOption) (*Conn, error) {
	if f == nil {
		return nil, errors.New("sealbuf: file conn: the file is nil: pass the socket's *os.File (from Pair, or ExtraFile in a child)")
	}
	if err := checkFileSocket(f, true); err != nil {
		return nil, fmt.Errorf("sealbuf: file conn %q: %w: FileConn needs a connected UNIX socket, such as Pair's file", f.Name(), err)
	}
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("sealbuf: file conn %q: %w", f.Name(), err)
	}
	uc, ok := nc.(*net.UnixConn)
	if !ok { // checkFileSocket saw AF_UNIX: not expected
		nc.Close()
		return nil, fmt.Errorf("sealbuf: file conn %q: the net package made a %T of it, not a *net.UnixConn", f.Name(), nc)
	}
	f.Close()
	return NewConn(uc, opts...), nil
}

// ExtraFile adopts the UNIX socket this process inherited as entry i of its
// parent's exec.Cmd.ExtraFiles — descriptor 3+i, however it got there
// (ExtraFiles, Python's subprocess pass_fds, a shell redirection) — and
// returns it as an *os.File that the caller owns. Hand it to FileConn:
//
//	f, err := sealbuf.ExtraFile(0) // the parent's cmd.ExtraFiles[0], from Pair
//	if err != nil {
//		return err
//	}
//	conn, err := sealbuf.FileConn(f)
//	if err != nil {
//		f.Close()
//		return err
//	}
//	defer conn.Close()
//
// It checks, before taking ownership, that the descriptor is open, was
// inherited — not close-on-exec, which every descriptor Go opens is, so a
// number this process opened itself is never mistaken for the parent's —
// and is a UNIX socket; the error says which check failed. Then it marks
// the descriptor close-on-exec, so that it does not leak further into this
// process's own children, which also makes a second ExtraFile(i) fail
// instead of creating a second owner. So call it once per descriptor and
// keep the *os.File (or the Conn). Safe for concurrent use.
func ExtraFile(i int) (*os.File, error) {
	if i < 0 || i > 1<<20 {
		return nil, fmt.Errorf("sealbuf: extra file %d: out of range: i is the index into exec.Cmd.ExtraFiles, 0 for the first", i)
	}
	fd := 3 + i
	extraMu.Lock()
	defer extraMu.Unlock()
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if errors.Is(err, unix.EBADF) {
		return nil, fmt.Errorf("sealbuf: extra file %d: descriptor %d is not open: start this process with the socket in exec.Cmd.ExtraFiles[%d] (Pair returns it): %w", i, fd, i, os.NewSyscallError("fcntl", err))
	}
	if err != nil {
		return nil, fmt.Errorf("sealbuf: extra file %d: descriptor %d: %w", i, fd, os.NewSyscallError("fcntl", err))
	}
	if flags&unix.FD_CLOEXEC != 0 {
		return nil, fmt.Errorf("sealbuf: extra file %d: descriptor %d is close-on-exec, so it was not inherited: this process opened it itself, or ExtraFile(%d) adopted it already (call it once and keep the *os.File); the parent must pass the socket in exec.Cmd.ExtraFiles[%d]", i, fd, i, i)
	}
	if err := checkSocketFD(fd, false); err != nil {
		return nil, fmt.Errorf("sealbuf: extra file %d: descriptor %d: %w: the parent must pass a UNIX socket (Pair's file) as exec.Cmd.ExtraFiles[%d]", i, fd, err, i)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, flags|unix.FD_CLOEXEC); err != nil {
		return nil, fmt.Errorf("sealbuf: extra file %d: descriptor %d: mark close-on-exec: %w", i, fd, os.NewSyscallError("fcntl", err))
	}
	//iosafety:allow newfile descriptor 3+i was inherited (checked: open, not close-on-exec, a UNIX socket) and is adopted once: F_SETFD above makes a second ExtraFile(i) refuse it
	return os.NewFile(uintptr(fd), fmt.Sprintf("sealbuf-extra-file-%d", i)), nil
}

// extraMu makes ExtraFile's check-then-adopt atomic, so that two calls for
// the same descriptor cannot both adopt it.
var extraMu sync.Mutex

// checkFileSocket checks that f is an open UNIX socket and, with conn, a
// connected stream or seqpacket one: something NewConn can use.
func checkFileSocket(f *os.File, conn bool) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return closedFile(err)
	}
	var cerr error
	err = rc.Control(func(fd uintptr) { cerr = checkSocketFD(int(fd), conn) })
	if err != nil {
		return closedFile(err)
	}
	return cerr
}

// closedFile makes the error of a closed *os.File match os.ErrClosed: the
// poll package's "use of closed file", which RawConn.Control returns, does
// not.
func closedFile(err error) error {
	if errors.Is(err, os.ErrClosed) || err.Error() == "use of closed file" {
		return fmt.Errorf("the file is closed: pass an open socket (%w)", os.ErrClosed)
	}
	return err
}

// checkSocketFD is checkFileSocket on a borrowed (or not yet owned)
// descriptor.
func checkSocketFD(fd int, conn bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return os.NewSyscallError("fstat", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("it is %s, not a socket", fileKind(st.Mode))
	}
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return os.NewSyscallError("getsockopt SO_DOMAIN", err)
	}
	if domain != unix.AF_UNIX {
		return fmt.Errorf("it is a socket of another family (%s), not a UNIX socket", familyName(domain))
	}
	if !conn {
		return nil
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return os.NewSyscallError("getsockopt SO_TYPE", err)
	}
	switch typ {
	case unix.SOCK_SEQPACKET, unix.SOCK_STREAM:
	case unix.SOCK_DGRAM:
		return errors.New("it is a datagram UNIX socket: a Conn needs a \"unixpacket\" (recommended) or \"unix\" stream socket")
	default:
		return fmt.Errorf("it is a UNIX socket of type %d: a Conn needs a \"unixpacket\" (recommended) or \"unix\" stream socket", typ)
	}
	if acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err == nil && acc != 0 {
		return errors.New("it is a listening socket, not a connection: accept on it (net.FileListener) and wrap each accepted connection, or use Listen")
	}
	if _, err := unix.Getpeername(fd); err == unix.ENOTCONN {
		return errors.New("it is a UNIX socket that is not connected: connect it first, or use Pair or Dial")
	}
	return nil
}

func fileKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFIFO:
		return "a pipe"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return fmt.Sprintf("a file of type %#o", mode&unix.S_IFMT)
}

func familyName(domain int) string {
	switch domain {
	case unix.AF_INET:
		return "AF_INET"
	case unix.AF_INET6:
		return "AF_INET6"
	case unix.AF_NETLINK:
		return "AF_NETLINK"
	case unix.AF_PACKET:
		return "AF_PACKET"
	case unix.AF_VSOCK:
		return "AF_VSOCK"
	}
	return fmt.Sprintf("address family %d", domain)
}

func isAbstract(path string) bool { return strings.HasPrefix(path, "@") }

// checkSocketName refuses names the kernel cannot bind, with the reason:
// the net package would say only "invalid argument".
func checkSocketName(path string) error {
	const sunPath = len(unix.RawSockaddrUnix{}.Path) // 108
	switch {
	case path == "":
		return errors.New("empty socket path: give a file system path, or \"@name\" for the abstract namespace")
	case path == "@":
		return errors.New("empty abstract name: give a name after the \"@\"")
	case strings.IndexByte(path, 0) >= 0:
		return errors.New("the socket path contains a NUL byte")
	case isAbstract(path) && len(path) > sunPath:
		return fmt.Errorf("abstract name of %d bytes, more than the kernel's %d after the \"@\": use a shorter name", len(path)-1, sunPath-1)
	case !isAbstract(path) && len(path) >= sunPath:
		return fmt.Errorf("socket path of %d bytes, more than the kernel's %d: use a shorter path (a relative one, a shorter directory) or an \"@name\"", len(path), sunPath-1)
	}
	return nil
}

// removeStale decides, after bind failed with EADDRINUSE (bindErr),
// whether the file at path is a stale socket: a socket file that no socket
// is bound to any more. If it is, it removes it and returns nil: bind may be
// retried. Otherwise it returns the error to report, which wraps bindErr.
//
// The test is a datagram connect: the kernel looks up the socket bound to
// the file's inode before it compares socket types, so ECONNREFUSED means
// nothing is bound (stale), EPROTOTYPE a live socket of another type than
// datagram (a listener: no connection is made, so it sees nothing), and
// success a live datagram socket.
func removeStale(path string, bindErr error) error {
	before, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // gone meanwhile
	}
	if err != nil {
		return fmt.Errorf("%w (and the file there cannot be examined: %v)", bindErr, err)
	}
	if before.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("the path is taken by %s, not a socket: remove it if nothing needs it, or choose another path: %w", modeKind(before.Mode()), bindErr)
	}
	probe, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	switch {
	case err == nil:
		probe.Close()
		return fmt.Errorf("the path is in use: a running process has a datagram socket bound to it; stop it or choose another path: %w", bindErr)
	case errors.Is(err, syscall.EPROTOTYPE):
		return fmt.Errorf("the path is in use: a running process listens on it (or has a socket bound to it); stop that process or choose another path: %w", bindErr)
	case errors.Is(err, syscall.ENOENT):
		return nil // gone meanwhile
	case !errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("a socket file is there, and whether it is stale cannot be told (%v): remove it if nothing uses it, or choose another path: %w", err, bindErr)
	}
	// Stale. Remove it only if it is still the file probed.
	now, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil || !os.SameFile(before, now) {
		return fmt.Errorf("the socket file changed while Listen examined it (is another process starting to listen there?): choose another path, or retry: %w", bindErr)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("a stale socket file is there (nothing listens on it), but removing it failed (%v): remove it yourself, or choose another path: %w", err, bindErr)
	}
	return nil
}

func modeKind(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "a regular file"
	case fs.ModeDir:
		return "a directory"
	case fs.ModeSymlink:
		return "a symbolic link (Listen does not follow it)"
	case fs.ModeNamedPipe:
		return "a named pipe"
	case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
		return "a device"
	}
	return "a file of mode " + m.Type().String()
}

// listenHint adds what to do to a bind or listen error that removeStale
// did not already explain.
func listenHint(path string, err error) error {
	var hint string
	switch {
	case isAbstract(path) && errors.Is(err, syscall.EADDRINUSE):
		hint = "the abstract name is in use by a running process: stop it or choose another name"
	case errors.Is(err, syscall.EADDRINUSE):
		hint = "the path is still in use after its stale socket file was removed (another process is starting to listen there?): choose another path, or retry"
	case errors.Is(err, syscall.ENOENT):
		hint = "the directory does not exist: create it first"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		hint = "no permission to create the socket file there: choose a directory you may write to"
	case errors.Is(err, syscall.ENOTDIR):
		hint = "a component of the path is not a directory"
	default:
		return err
	}
	return fmt.Errorf("%s: %w", hint, err)
}

// dialHint adds what went wrong, in words, and what to do to a connect
// error.
func dialHint(path string, err error) error {
	var hint string
	switch {
	case errors.Is(err, syscall.ENOENT):
		hint = "nothing listens there (no such socket file): start the listener first, or check the path"
	case errors.Is(err, syscall.ECONNREFUSED) && isAbstract(path):
		hint = "nothing listens on that abstract name: start the listener first, or check the name"
	case errors.Is(err, syscall.ECONNREFUSED):
		if fi, serr := os.Lstat(path); serr == nil && fi.Mode().Type() != fs.ModeSocket {
			hint = "the path is " + modeKind(fi.Mode()) + ", not a socket: check the path"
		} else {
			hint = "a socket file is there but nothing listens on it (its listener exited without removing it, or is still starting): start the listener, which replaces a stale file, or retry"
		}
	case errors.Is(err, syscall.EPROTOTYPE):
		hint = "the socket there is not a \"unixpacket\" listener: make the listener use sealbuf.Listen (or \"unixpacket\")"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		hint = "no permission: connecting needs write permission on the socket file"
	case errors.Is(err, syscall.EAGAIN):
		hint = "the listener's backlog is full (it is not accepting fast enough): retry later"
	default:
		return err
	}
	return fmt.Errorf("%s: %w", hint, err)
}
