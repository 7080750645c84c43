package field

import (
	"os"

	"golang.org/x/sys/unix"
)

// FD is a descriptor number with a name.
type FD int

type sock struct {
	fd        int     // want `^fd-field: field fd holds a bare descriptor number \(int\): nothing owns it.*hold an \*os\.File`
	sockFd    int     // want `^fd-field: field sockFd holds a bare descriptor number \(int\)`
	memFD     uintptr // want `^fd-field: field memFD holds a bare descriptor number \(uintptr\)`
	pidfd     int32   // want `^fd-field: field pidfd holds`
	fds       []int   // want `^fd-field: field fds holds a bare descriptor number \(\[\]int\)`
	epFD      FD      // want `^fd-field: field epFD holds a bare descriptor number \(FD\)`
	ListenFDs [2]int  // want `^fd-field: field ListenFDs holds`
	event_fd  int     // want `^fd-field: field event_fd holds`

	conn   int
	ev     int
	pair   [2]int
	nfds   int
	maxFd  int
	numFDs int
	fdName string
	fdPath string
	file   *os.File
	count  int64
}

// pollFd mirrors struct pollfd: a kernel ABI structure is not ownership.
type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

func open(s *sock) (err error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	s.conn = fd                                            // want `^fd-field: field conn stores a freshly created descriptor as a bare number.*wrap it with os\.NewFile`
	s.ev, err = unix.Eventfd(0, unix.EFD_CLOEXEC)          // want `^fd-field: field ev stores a freshly created descriptor`
	s.pair, err = unix.Socketpair(1, unix.SOCK_CLOEXEC, 0) // want `^fd-field: field pair stores`
	s.conn = fd
	return err
}

type wrapper struct {
	handle int
	f      *os.File
}

func literal() (*wrapper, error) {
	fd, err := unix.MemfdCreate("x", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &wrapper{handle: fd}, nil // want `^fd-field: field handle stores a freshly created descriptor`
}

type positional struct {
	name string
	h    int
}

func positionalLit() positional {
	nfd, _, _ := unix.Accept(3)
	return positional{"x", nfd} // want `^fd-field: field h stores`
}

// Look-alikes that are not reported.

func wrapped() (*wrapper, error) {
	fd, err := unix.MemfdCreate("x", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &wrapper{f: os.NewFile(uintptr(fd), "x")}, nil
}

func abi(fd int) pollFd { return pollFd{fd: int32(fd), events: 1} }

func lock() unix.Flock_t {
	fd, _ := unix.Open("/tmp/x", unix.O_RDWR|unix.O_CLOEXEC, 0)
	return unix.Flock_t{Pid: int32(fd)} // another package's struct
}

type counter struct{ handle int }

func notFresh(c *counter, n int) { c.handle = n }

type counts struct {
	nfds   int   // a count, as in poll(2)
	nfd    int   // want `^fd-field: field nfd holds`
	maxFds []int // want `^fd-field: field maxFds holds`
}

func local() int {
	// A local struct type is a transient carrier, not an owner.
	type ret struct {
		fd  int
		err error
	}
	nfd, _, err := unix.Accept(3)
	r := ret{nfd, err}
	return r.fd
}

// A descriptor number next to a pid names another process's descriptor,
// as in /proc/PID/fd/N; a tagged field is serialized data.
type holderRow struct {
	pid      int
	sealedFD int
	mapFD    int
}

type reportRow struct {
	Name string `json:"name"`
	FD   int    `json:"fd"`
}
