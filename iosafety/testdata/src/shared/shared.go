package shared

import (
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

func received(conn *net.UnixConn) error {
	buf := make([]byte, 1)
	oob := make([]byte, 64)
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob) // net passes MSG_CMSG_CLOEXEC itself
	if err != nil {
		return err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return err
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		return err
	}
	fd := fds[0]
	unix.Read(fd, buf)                                        // want `^shared-state: unix\.Read on a descriptor received with ParseUnixRights reads or moves the file offset of the open file description, shared with the sender; use unix\.Pread/Pwrite`
	unix.Write(fd, buf)                                       // want `^shared-state: unix\.Write on a descriptor received`
	unix.Seek(fd, 0, 0)                                       // want `^shared-state: unix\.Seek on`
	syscall.Read(fd, buf)                                     // want `^shared-state: syscall\.Read on`
	unix.FcntlInt(uintptr(fd), unix.F_SETFL, unix.O_NONBLOCK) // want `^shared-state: unix\.FcntlInt on a descriptor received with ParseUnixRights changes the status flags \(O_NONBLOCK, O_APPEND, …\)`
	unix.SetNonblock(fd, true)                                // want `^shared-state: unix\.SetNonblock on .* changes the status flags`
	unix.Flock(fd, unix.LOCK_EX)                              // want `^shared-state: unix\.Flock on a descriptor received with ParseUnixRights takes a lock`
	var lk unix.Flock_t
	unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk)  // want `^shared-state: unix\.FcntlFlock on .* takes a lock`
	unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLKW, &lk) // want `^shared-state: unix\.FcntlFlock on`
	for _, rfd := range fds {
		unix.Read(rfd, buf) // want `^shared-state: unix\.Read on`
	}
	f := os.NewFile(uintptr(fd), "received")
	f.Read(buf)        // want `^shared-state: \(\*os\.File\)\.Read on a File made from a descriptor received with ParseUnixRights reads or moves the file offset .*; use ReadAt/WriteAt`
	f.Write(buf)       // want `^shared-state: \(\*os\.File\)\.Write on`
	f.Seek(0, 0)       // want `^shared-state: \(\*os\.File\)\.Seek on`
	f.WriteString("x") // want `^shared-state: \(\*os\.File\)\.WriteString on`

	// Positional I/O, queries and mappings leave shared state alone.
	unix.Pread(fd, buf, 0)
	unix.Pwrite(fd, buf, 0)
	f.ReadAt(buf, 0)
	f.WriteAt(buf, 0)
	unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &lk)
	var st unix.Stat_t
	unix.Fstat(fd, &st)
	unix.Mmap(fd, 0, 4096, unix.PROT_READ, unix.MAP_SHARED)
	return f.Close()
}

func receivedSyscall(oob []byte) {
	msgs, _ := syscall.ParseSocketControlMessage(oob)
	fds, _ := syscall.ParseUnixRights(&msgs[0])
	syscall.Seek(fds[0], 0, 0)             // want `^shared-state: syscall\.Seek on`
	syscall.Flock(fds[0], syscall.LOCK_EX) // want `^shared-state: syscall\.Flock on`
	syscall.SetNonblock(fds[0], true)      // want `^shared-state: syscall\.SetNonblock on`
	syscall.Pread(fds[0], nil, 0)
}

// Descriptors this code opened itself are its own business.
func own(path string, f *os.File, buf []byte) {
	fd, _ := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	unix.Read(fd, buf)
	unix.FcntlInt(uintptr(fd), unix.F_SETFL, unix.O_NONBLOCK)
	unix.Flock(fd, unix.LOCK_EX)
	g := os.NewFile(uintptr(fd), path)
	g.Read(buf)
	f.Read(buf)
}

func recvmsg(fd int, p, oob []byte) {
	unix.Recvmsg(fd, p, oob, 0)                                                // want `^cloexec: unix\.Recvmsg without MSG_CMSG_CLOEXEC: descriptors received over SCM_RIGHTS are not close-on-exec and leak into every child process .*add unix\.MSG_CMSG_CLOEXEC to the flags`
	unix.Recvmsg(fd, p, oob, unix.MSG_DONTWAIT)                                // want `^cloexec: unix\.Recvmsg without MSG_CMSG_CLOEXEC`
	unix.RecvmsgBuffers(fd, [][]byte{p}, oob, unix.MSG_PEEK|unix.MSG_DONTWAIT) // want `^cloexec: unix\.RecvmsgBuffers without`
	syscall.Recvmsg(fd, p, oob, 0)                                             // want `^cloexec: syscall\.Recvmsg without .*add syscall\.MSG_CMSG_CLOEXEC`

	unix.Recvmsg(fd, p, oob, unix.MSG_CMSG_CLOEXEC)
	unix.Recvmsg(fd, p, oob, unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
	syscall.Recvmsg(fd, p, oob, syscall.MSG_CMSG_CLOEXEC)
	flags := unix.MSG_CMSG_CLOEXEC
	unix.Recvmsg(fd, p, oob, flags) // not a constant: not judged
}

func create(path string, rc syscall.RawConn) {
	unix.MemfdCreate("m", 0)                               // want `^cloexec: unix\.MemfdCreate without MFD_CLOEXEC: the new descriptor is inherited by every child process started before it is closed; add unix\.MFD_CLOEXEC to the flags`
	unix.Open(path, unix.O_RDONLY, 0)                      // want `^cloexec: unix\.Open without O_CLOEXEC`
	unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)         // want `^cloexec: unix\.Socket without SOCK_CLOEXEC`
	unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)     // want `^cloexec: unix\.Socketpair without SOCK_CLOEXEC`
	unix.Eventfd(0, 0)                                     // want `^cloexec: unix\.Eventfd without EFD_CLOEXEC`
	unix.EpollCreate1(0)                                   // want `^cloexec: unix\.EpollCreate1 without EPOLL_CLOEXEC`
	unix.Pipe2(make([]int, 2), 0)                          // want `^cloexec: unix\.Pipe2 without O_CLOEXEC`
	syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0) // want `^cloexec: syscall\.Socket without SOCK_CLOEXEC`
	rc.Control(func(fd uintptr) {
		unix.FcntlInt(fd, unix.F_DUPFD, 0) // want `^cloexec: unix\.FcntlInt F_DUPFD makes a descriptor without close-on-exec.*use unix\.F_DUPFD_CLOEXEC`
	})

	unix.MemfdCreate("m", unix.MFD_CLOEXEC)
	unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	flags := 0
	unix.MemfdCreate("m", flags) // not a constant: not judged
	unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
}

// Setting the flag right after, under syscall.ForkLock, is the old way.
func forkLock() (int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		return -1, err
	}
	unix.CloseOnExec(fd)
	return fd, nil
}

func receive(oob []byte) []int {
	msgs, _ := unix.ParseSocketControlMessage(oob)
	fds, _ := unix.ParseUnixRights(&msgs[0])
	return fds
}

func readHeader(fd int, p []byte) { unix.Read(fd, p) } // want `^shared-state: unix\.Read on`

func viaHelpers(oob, p []byte) {
	fds := receive(oob)
	unix.Seek(fds[0], 0, 0) // want `^shared-state: unix\.Seek on`
	readHeader(fds[0], p)
}
