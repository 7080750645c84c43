package newfile

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

func literal() *os.File {
	return os.NewFile(3, "inherited") // want `^newfile: os\.NewFile on a constant: nothing shows this process owns that number`
}

func stdin() *os.File {
	return os.NewFile(uintptr(syscall.Stdin), "stdin") // want `^newfile: os\.NewFile on a number kept in a package-level variable`
}

func fromFd(f *os.File) *os.File {
	return os.NewFile(f.Fd(), f.Name()) // want `^newfile: os\.NewFile on the result of Fd\(\): the new File and the old one both own the descriptor`
}

func fromFdVar(f *os.File) *os.File {
	fd := f.Fd()                  // want `^fd-call:`
	return os.NewFile(fd, "copy") // want `^newfile: os\.NewFile on the result of Fd\(\)`
}

type holder struct {
	f *os.File
	n int
}

func fromField(h *holder) *os.File {
	return os.NewFile(uintptr(h.n), "field") // want `^newfile: os\.NewFile on a number kept in a struct field`
}

func fromFieldVar(h *holder) *os.File {
	n := h.n
	return os.NewFile(uintptr(n), "field") // want `^newfile: os\.NewFile on a number kept in a struct field`
}

var inherited = 3

func fromGlobal() *os.File {
	return os.NewFile(uintptr(inherited), "global") // want `^newfile: os\.NewFile on a number kept in a package-level variable`
}

func fromParam(fd int) *os.File {
	return os.NewFile(uintptr(fd), "param") // want `^newfile: os\.NewFile on a parameter: the caller may still own and close it`
}

func fromBorrowed(rc syscall.RawConn) {
	rc.Control(func(fd uintptr) {
		f := os.NewFile(fd, "borrowed") // want `^newfile: os\.NewFile on a descriptor borrowed in a Control callback`
		f.Close()
	})
}

func fromParamSlice(fds []int) *os.File {
	return os.NewFile(uintptr(fds[0]), "param") // want `^newfile: os\.NewFile on a parameter`
}

// Fresh descriptors: not reported.

func fromOpen(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

func fromMemfd() *os.File {
	fd, _ := unix.MemfdCreate("m", unix.MFD_CLOEXEC)
	return os.NewFile(uintptr(fd), "memfd:m")
}

func fromSyscallSocket() *os.File {
	fd, _ := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	return os.NewFile(uintptr(fd), "sock")
}

func fromAcceptDupEventfd(l int) []*os.File {
	nfd, _, _ := unix.Accept(l)
	dfd, _ := unix.Dup(l)
	efd, _ := unix.Eventfd(0, unix.EFD_CLOEXEC)
	return []*os.File{os.NewFile(uintptr(nfd), "a"), os.NewFile(uintptr(dfd), "d"), os.NewFile(uintptr(efd), "e")}
}

func fromRights(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			return nil, err
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "received"))
		}
		files = append(files, os.NewFile(uintptr(fds[0]), "first"))
	}
	return files, nil
}

func fromPairs() []*os.File {
	pair, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	var p [2]int
	unix.Pipe2(p[:], unix.O_CLOEXEC)
	return []*os.File{os.NewFile(uintptr(pair[0]), "s0"), os.NewFile(uintptr(p[1]), "w")}
}

func fromFcntlDup(rc syscall.RawConn) *os.File {
	var nfd int
	rc.Control(func(fd uintptr) { nfd, _ = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
	return os.NewFile(uintptr(nfd), "dup")
}

func sentinel(path string, open bool) *os.File {
	fd := -1
	if open {
		fd, _ = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	return os.NewFile(uintptr(fd), path)
}

func dupOfParam(fd int) *os.File {
	fd, _ = unix.Dup(fd)
	return os.NewFile(uintptr(fd), "dup")
}

func memfdCreate(name string) (int, error) { return unix.MemfdCreate(name, unix.MFD_CLOEXEC) }

func fromHelper() *os.File {
	fd, _ := memfdCreate("h")
	return os.NewFile(uintptr(fd), "h")
}

// Summaries: what package functions return, and what the callers of an
// unexported function pass.

func recvFds(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	fds, _ := unix.ParseUnixRights(&msgs[0])
	return fds
}

func rebuild(fd int) *os.File { return os.NewFile(uintptr(fd), "rebuilt") } // every caller passes a received descriptor

func useRebuild(oob []byte) *os.File {
	fds := recvFds(oob)
	return rebuild(fds[0])
}

func adoptFd(fd int) *os.File {
	return os.NewFile(uintptr(fd), "adopted") // want `^newfile: os\.NewFile on the result of Fd\(\)`
}

func callAdoptFd(f *os.File) *os.File {
	return adoptFd(int(f.Fd())) // want `^fd-call:`
}

func adoptViaValue(fd int) *os.File {
	return os.NewFile(uintptr(fd), "value") // want `^newfile: os\.NewFile on a parameter`
}

var adopter = adoptViaValue

func callAdoptViaValue() *os.File {
	fd, _ := unix.MemfdCreate("v", unix.MFD_CLOEXEC)
	return adoptViaValue(fd)
}

// Adopt is exported: its callers are out of sight.
func Adopt(fd int) *os.File {
	return os.NewFile(uintptr(fd), "exported") // want `^newfile: os\.NewFile on a parameter`
}

func callAdopt() *os.File {
	fd, _ := unix.MemfdCreate("a", unix.MFD_CLOEXEC)
	return Adopt(fd)
}

// chained passes rebuild a struct field as well: with mixed sources,
// rebuild is not reported.
func chained(fd int) *os.File { return rebuild(fd) }

func callChained(h *holder) *os.File { return chained(h.n) }

// Function literals whose calls are all in sight take their arguments'
// sources.

func localClosure() []*os.File {
	pair, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	mk := func(fd int) *os.File { return os.NewFile(uintptr(fd), "sock") }
	return []*os.File{mk(pair[0]), mk(pair[1])}
}

func localClosureFd(f *os.File) *os.File {
	mk := func(fd uintptr) *os.File {
		return os.NewFile(fd, "copy") // want `^newfile: os\.NewFile on the result of Fd\(\)`
	}
	return mk(f.Fd()) // want `^fd-call:`
}

func onTheSpot(h *holder) *os.File {
	return func(n int) *os.File {
		return os.NewFile(uintptr(n), "x") // want `^newfile: os\.NewFile on a number kept in a struct field`
	}(h.n)
}

func escapedClosure() func(int) *os.File {
	mk := func(fd int) *os.File {
		return os.NewFile(uintptr(fd), "x") // want `^newfile: os\.NewFile on a parameter`
	}
	return mk
}
