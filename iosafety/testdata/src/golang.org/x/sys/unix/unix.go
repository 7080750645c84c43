// Package unix is a minimal stub of golang.org/x/sys/unix for the tests:
// the signatures and constant values of the real package on linux/amd64.
package unix

import "syscall"

const (
	AF_UNIX          = 0x1
	SOCK_STREAM      = 0x1
	SOCK_CLOEXEC     = 0x80000
	SOL_SOCKET       = 0x1
	SCM_RIGHTS       = 0x1
	O_RDONLY         = 0x0
	O_RDWR           = 0x2
	O_CLOEXEC        = 0x80000
	O_NONBLOCK       = 0x800
	MFD_CLOEXEC      = 0x1
	EFD_CLOEXEC      = 0x80000
	EPOLL_CLOEXEC    = 0x80000
	F_SETFD          = 0x2
	FD_CLOEXEC       = 0x1
	F_DUPFD          = 0x0
	F_DUPFD_CLOEXEC  = 0x406
	F_GETFL          = 0x3
	F_SETFL          = 0x4
	F_SETLK          = 0x6
	F_GET_SEALS      = 0x40a
	F_OFD_GETLK      = 0x24
	F_OFD_SETLK      = 0x25
	F_OFD_SETLKW     = 0x26
	LOCK_EX          = 0x2
	MSG_DONTWAIT     = 0x40
	MSG_PEEK         = 0x2
	MSG_CMSG_CLOEXEC = 0x40000000
	PROT_READ        = 0x1
	MAP_SHARED       = 0x1
)

type Stat_t struct{ Size int64 }

type Flock_t struct {
	Type   int16
	Whence int16
	Start  int64
	Len    int64
	Pid    int32
}

type SocketControlMessage struct {
	Data []byte
}

type Sockaddr interface{}

func Open(path string, mode int, perm uint32) (fd int, err error)  { return -1, nil }
func Socket(domain, typ, proto int) (fd int, err error)            { return -1, nil }
func Socketpair(domain, typ, proto int) (fd [2]int, err error)     { return [2]int{-1, -1}, nil }
func MemfdCreate(name string, flags int) (fd int, err error)       { return -1, nil }
func Eventfd(initval uint, flags int) (fd int, err error)          { return -1, nil }
func EpollCreate1(flag int) (fd int, err error)                    { return -1, nil }
func CloseOnExec(fd int)                                           {}
func Dup(oldfd int) (fd int, err error)                            { return -1, nil }
func Dup2(oldfd, newfd int) error                                  { return nil }
func Dup3(oldfd int, newfd int, flags int) error                   { return nil }
func Accept(fd int) (nfd int, sa Sockaddr, err error)              { return -1, nil, nil }
func Pipe2(p []int, flags int) error                               { return nil }
func Close(fd int) (err error)                                     { return nil }
func Read(fd int, p []byte) (n int, err error)                     { return 0, nil }
func Write(fd int, p []byte) (n int, err error)                    { return 0, nil }
func Pread(fd int, p []byte, offset int64) (n int, err error)      { return 0, nil }
func Pwrite(fd int, p []byte, offset int64) (n int, err error)     { return 0, nil }
func Seek(fd int, offset int64, whence int) (off int64, err error) { return 0, nil }
func Fstat(fd int, stat *Stat_t) (err error)                       { return nil }
func Fsync(fd int) (err error)                                     { return nil }
func Ftruncate(fd int, length int64) (err error)                   { return nil }
func FcntlInt(fd uintptr, cmd, arg int) (int, error)               { return 0, nil }
func FcntlFlock(fd uintptr, cmd int, lk *Flock_t) error            { return nil }
func Flock(fd int, how int) (err error)                            { return nil }
func SetNonblock(fd int, nonblocking bool) (err error)             { return nil }
func Mmap(fd int, offset int64, length int, prot int, flags int) ([]byte, error) {
	return nil, nil
}
func ParseSocketControlMessage(b []byte) ([]SocketControlMessage, error) { return nil, nil }
func ParseUnixRights(m *SocketControlMessage) ([]int, error)             { return nil, nil }
func UnixRights(fds ...int) []byte                                       { return nil }
func Sendmsg(fd int, p, oob []byte, to Sockaddr, flags int) (err error)  { return nil }
func Recvmsg(fd int, p, oob []byte, flags int) (n, oobn int, recvflags int, from Sockaddr, err error) {
	return 0, 0, 0, nil, nil
}
func RecvmsgBuffers(fd int, buffers [][]byte, oob []byte, flags int) (n, oobn int, recvflags int, from Sockaddr, err error) {
	return 0, 0, 0, nil, nil
}

var _ = syscall.Stdin
