package fixes

import (
	"os"

	"golang.org/x/sys/unix"
)

func exprStmt(f *os.File) {
	unix.Fsync(int(f.Fd())) // want `^fd-call:`
}

func assign(f *os.File) error {
	var err error
	err = unix.Fsync(int(f.Fd())) // want `^fd-call:`
	return err
}

func define(f *os.File, fd int) error {
	err := unix.Ftruncate(int(f.Fd()), int64(fd)) // want `^fd-call:`
	return err
}

type holder struct{ f *os.File }

func field(h *holder) (err error) {
	for range 2 {
		err = unix.Fsync(int(h.f.Fd())) // want `^fd-call:`
	}
	return err
}

// Two results: no mechanical rewrite keeps both, so no fix.
func twoResults(f *os.File, p []byte) (int, error) {
	n, err := unix.Pread(int(f.Fd()), p, 0) // want `^fd-call:`
	return n, err
}

func recv(fd int, p, oob []byte) {
	unix.Recvmsg(fd, p, oob, 0)                 // want `^cloexec:`
	unix.Recvmsg(fd, p, oob, unix.MSG_DONTWAIT) // want `^cloexec:`
}

func create(rc interface{ Control(func(uintptr)) error }) {
	unix.MemfdCreate("m", 0)                       // want `^cloexec:`
	unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0) // want `^cloexec:`
	rc.Control(func(fd uintptr) {
		unix.FcntlInt(fd, unix.F_DUPFD, 0) // want `^cloexec:`
	})
}

func closeHasNoFix(f *os.File) {
	unix.Close(int(f.Fd())) // want `^fd-call:` `^borrowed-close:`
}
