// Package hazard is a sample with one finding of most iosafety checks; it
// uses only the standard library so that it builds offline.
package hazard

import (
	"os"
	"syscall"
)

// conn keeps a descriptor number instead of owning an *os.File.
type conn struct {
	sockFd int
}

func fsync(f *os.File) error {
	return syscall.Fsync(int(f.Fd()))
}

func keep(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	var n int
	err = rc.Control(func(fd uintptr) { n = int(fd) })
	return n, err
}

func adopt(c *conn) *os.File {
	return os.NewFile(uintptr(c.sockFd), "sock")
}

func closeBorrowed(rc syscall.RawConn) error {
	return rc.Control(func(fd uintptr) { syscall.Close(int(fd)) })
}

func receive(sock int, p, oob []byte) error {
	_, oobn, _, _, err := syscall.Recvmsg(sock, p, oob, 0)
	if err != nil {
		return err
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return err
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil {
		return err
	}
	_, err = syscall.Read(fds[0], p)
	return err
}
