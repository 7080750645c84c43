package fdcall

import (
	"net"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

func fsync(f *os.File) error {
	return unix.Fsync(int(f.Fd())) // want `^fd-call: Fd\(\) switches the descriptor to blocking mode and its number outlives nothing .*borrow it with SyscallConn\(\)\.Control`
}

func seals(f *os.File) (int, error) {
	return unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0) // want `^fd-call: Fd\(\)`
}

func viaSyscall(f *os.File) error {
	return syscall.Fsync(int(f.Fd())) // want `^fd-call: Fd\(\)`
}

func kept(f *os.File) int {
	fd := int(f.Fd()) // want `^fd-call: Fd\(\)`
	return fd
}

type embedded struct{ *os.File }

func promoted(e embedded) uintptr {
	return e.Fd() // want `^fd-call: Fd\(\)`
}

type holder struct{ file *os.File }

func throughField(h *holder) error {
	return unix.Fsync(int(h.file.Fd())) // want `^fd-call: Fd\(\)`
}

func tcpFile(c *net.TCPConn) error {
	f, err := c.File() // want `^fd-call: \(\*net\.TCPConn\)\.File\(\) dups the descriptor and switches it to blocking mode, and the copy is used only for Fd\(\)`
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fsync(int(f.Fd())) // want `^fd-call: Fd\(\)`
}

func unixFile(c *net.UnixConn) (int, error) {
	var f, err = c.File() // want `^fd-call: \(\*net\.UnixConn\)\.File\(\)`
	if err != nil {
		return 0, err
	}
	return unix.FcntlInt(f.Fd(), unix.F_GETFL, 0) // want `^fd-call: Fd\(\)`
}

func listenerFile(l *net.UnixListener) int {
	f, _ := l.File()   // want `^fd-call: \(\*net\.UnixListener\)\.File\(\)`
	return int(f.Fd()) // want `^fd-call: Fd\(\)`
}

// Look-alikes that are not reported.

func stdStreams() (int, int, int) {
	return int(os.Stdin.Fd()), int(os.Stdout.Fd()), int(os.Stderr.Fd())
}

// File() whose dup is handed to a child process is what File is for.
func extraFiles(c *net.TCPConn, cmd *exec.Cmd) error {
	f, err := c.File()
	if err != nil {
		return err
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, f)
	return nil
}

func returned(c *net.UDPConn) (*os.File, error) { return c.File() }

type notFile struct{}

func (notFile) Fd() uintptr { return 3 }

func otherFd(n notFile) uintptr { return n.Fd() }

func borrowed(f *os.File) (unix.Stat_t, error) {
	var st unix.Stat_t
	rc, err := f.SyscallConn()
	if err != nil {
		return st, err
	}
	var statErr error
	if err := rc.Control(func(fd uintptr) { statErr = unix.Fstat(int(fd), &st) }); err != nil {
		return st, err
	}
	return st, statErr
}

func positional(f *os.File, p []byte) (int, error) { return f.ReadAt(p, 0) }
