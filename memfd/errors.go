//go:build linux

package memfd

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrNotMemfd is matched (errors.Is) by the error FromFile returns for a
// descriptor that is not a memfd: a pipe, socket, character device, directory,
// file on a disk file system, or an O_PATH descriptor.
var ErrNotMemfd = errors.New("not a memfd")

// opError builds the error for a failed operation on the memfd called name.
// The errno stays reachable with errors.Is, and a hint says what to do for
// the errnos a seal or a limit causes.
func opError(name, op string, err error) error {
	if err == nil {
		return nil
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is ours to name
	}
	if isClosing(err) {
		err = os.ErrClosed
	}
	return fmt.Errorf("memfd %q: %s: %w%s", name, op, err, hint(op, err))
}

// isClosing reports whether err is the poll package's "use of closed file",
// which RawConn.Control returns after Close and which os does not translate.
func isClosing(err error) bool {
	return err != nil && !errors.Is(err, os.ErrClosed) && err.Error() == "use of closed file"
}

func hint(op string, err error) string {
	switch {
	case errors.Is(err, os.ErrClosed):
		return " (the File was closed)"
	case errors.Is(err, unix.EBUSY) && op == "add seals":
		return " (a writable shared mapping of the memfd still exists: unmap it before sealing against write)"
	case errors.Is(err, unix.EPERM) && op == "add seals":
		return " (the memfd is sealed with seal: its seals can no longer change)"
	case errors.Is(err, unix.EPERM) && op == "write":
		return " (the memfd is sealed against writing)"
	case errors.Is(err, unix.EPERM) && op == "truncate":
		return " (the memfd is sealed against shrinking or growing)"
	case errors.Is(err, unix.EACCES) && op == "create":
		return " (vm.memfd_noexec forbids executable memfds: drop WithExec)"
	case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE):
		return " (out of descriptors: close unused ones or raise RLIMIT_NOFILE)"
	}
	return ""
}
