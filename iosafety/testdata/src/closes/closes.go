package closes

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

func closeBorrowed(rc syscall.RawConn) {
	rc.Control(func(fd uintptr) {
		unix.Close(int(fd)) // want `^borrowed-close: unix\.Close of a descriptor borrowed from an \*os\.File: the File still owns it and closes it again`
	})
}

func closeFd(f *os.File) {
	unix.Close(int(f.Fd())) // want `^fd-call:` `^borrowed-close: unix\.Close`
}

func closeFdVar(f *os.File) error {
	fd := int(f.Fd())        // want `^fd-call:`
	return syscall.Close(fd) // want `^borrowed-close: syscall\.Close of a descriptor borrowed`
}

func dup2Onto(rc syscall.RawConn, newfd int) {
	rc.Control(func(fd uintptr) {
		unix.Dup2(newfd, int(fd))                 // want `^borrowed-close: unix\.Dup2 onto a descriptor borrowed from an \*os\.File closes it underneath the File`
		unix.Dup3(newfd, int(fd), unix.O_CLOEXEC) // want `^borrowed-close: unix\.Dup3 onto`
	})
}

// Not reported.

func closeOwned(path string) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
	}
}

func closeDup(rc syscall.RawConn) {
	rc.Control(func(fd uintptr) {
		nfd, err := unix.Dup(int(fd))
		if err == nil {
			unix.Close(nfd)
		}
	})
}

func closeParam(fd int) error { return unix.Close(fd) }

func dup2From(rc syscall.RawConn, target int) {
	rc.Control(func(fd uintptr) { unix.Dup2(int(fd), target) })
}

func closeFile(f *os.File) error { return f.Close() }
