package escape

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

var global uintptr

type conn struct {
	rc  syscall.RawConn
	num int
}

func toOuter(rc syscall.RawConn) int {
	var n int
	rc.Control(func(fd uintptr) {
		n = int(fd) // want `^fd-escape: the descriptor fd borrowed in this Control callback escapes into variable n declared outside the callback; it is valid only while the callback runs`
	})
	return n
}

func toGlobal(rc syscall.RawConn) {
	rc.Control(func(fd uintptr) {
		global = fd // want `^fd-escape: .* escapes into package-level variable global`
	})
}

func toField(c *conn) {
	c.rc.Control(func(fd uintptr) {
		c.num = int(fd) // want `^fd-escape: .* escapes into field num`
	})
}

func throughLocal(rc syscall.RawConn, out *int) {
	rc.Control(func(fd uintptr) {
		n := int(fd)
		*out = n // want `^fd-escape: .* escapes into memory behind pointer out`
	})
}

func toSlice(rc syscall.RawConn) []int {
	var fds []int
	rc.Control(func(fd uintptr) {
		fds = append(fds, int(fd)) // want `^fd-escape: .* escapes into variable fds`
	})
	return fds
}

func toElement(rc syscall.RawConn, m map[string]int) {
	rc.Control(func(fd uintptr) {
		m["sock"] = int(fd) // want `^fd-escape: .* escapes into an element of m`
	})
}

func toChan(rc syscall.RawConn, ch chan<- uintptr) {
	rc.Control(func(fd uintptr) {
		ch <- fd // want `^fd-escape: .* escapes through a channel send`
	})
}

func toGoroutine(rc syscall.RawConn) {
	rc.Control(func(fd uintptr) {
		go func() { // want `^fd-escape: .* escapes into a goroutine started in the callback`
			unix.Fsync(int(fd))
		}()
	})
}

func toGoroutineArg(rc syscall.RawConn) {
	rc.Control(func(fd uintptr) {
		go unix.Fsync(int(fd)) // want `^fd-escape: .* into a goroutine`
	})
}

func closure(rc syscall.RawConn) func() error {
	var later func() error
	rc.Control(func(fd uintptr) {
		later = func() error { return unix.Fsync(int(fd)) } // want `^fd-escape: .* escapes into variable later`
	})
	return later
}

type pair struct{ a, b int }

func inLiteral(rc syscall.RawConn) pair {
	var p pair
	rc.Control(func(fd uintptr) {
		p = pair{a: int(fd)} // want `^fd-escape: .* escapes into variable p`
	})
	return p
}

func readCallback(rc syscall.RawConn) uintptr {
	var saved uintptr
	rc.Read(func(s uintptr) bool {
		saved = s // want `^fd-escape: the descriptor s borrowed in this Read callback escapes`
		return true
	})
	return saved
}

func fromFile(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	var n int
	err = rc.Control(func(fd uintptr) { n = int(fd) }) // want `^fd-escape: .* escapes into variable n`
	return n, err
}

// owner has a Control method with an int callback, like memfd.File.
type owner struct{ f *os.File }

func (o *owner) Control(fn func(fd int) error) error { return nil }

func intControl(o *owner) int {
	var keep int
	o.Control(func(fd int) error {
		keep = fd // want `^fd-escape: .* escapes into variable keep`
		return nil
	})
	return keep
}

func nested(a, b syscall.RawConn) {
	var x int
	a.Control(func(fa uintptr) {
		b.Control(func(fb uintptr) {
			x = int(fb)                 // want `^fd-escape: the descriptor fb borrowed`
			unix.Dup2(int(fa), int(fb)) // want `^borrowed-close: unix\.Dup2 onto a descriptor borrowed`
		})
	})
	_ = x
}

// Look-alikes that are not reported.

func idiomatic(rc syscall.RawConn) (unix.Stat_t, error) {
	var st unix.Stat_t
	var err error
	if cerr := rc.Control(func(fd uintptr) { err = unix.Fstat(int(fd), &st) }); cerr != nil {
		return st, cerr
	}
	return st, err
}

func dup(rc syscall.RawConn) (*os.File, error) {
	var nfd int
	var err error
	if cerr := rc.Control(func(fd uintptr) { nfd, err = unix.Dup(int(fd)) }); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(nfd), "dup"), nil
}

func dupCloexec(rc syscall.RawConn) (nfd int, err error) {
	rc.Control(func(fd uintptr) { nfd, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
	return nfd, err
}

func localOnly(rc syscall.RawConn) {
	rc.Control(func(fd uintptr) {
		n := int(fd)
		fds := []int{n}
		var p pair
		p.a = n
		q := &pair{b: n}
		_, _, _ = fds, p, q
		defer unix.Fsync(n)
		func() { unix.Fsync(n) }()
	})
}

func helper(rc syscall.RawConn, fn func(int) error) error {
	var opErr error
	if err := rc.Control(func(fd uintptr) { opErr = fn(int(fd)) }); err != nil {
		return err
	}
	return opErr
}

func mmap(rc syscall.RawConn, n int) (data []byte, err error) {
	rc.Control(func(fd uintptr) { data, err = unix.Mmap(int(fd), 0, n, unix.PROT_READ, unix.MAP_SHARED) })
	return data, err
}

func compare(rc syscall.RawConn) (valid bool) {
	rc.Control(func(fd uintptr) { valid = fd > 2 })
	return valid
}

func writeLoop(rc syscall.RawConn, p []byte) (n int, err error) {
	rc.Write(func(fd uintptr) bool {
		n, err = unix.Write(int(fd), p)
		return err != syscall.EAGAIN
	})
	return n, err
}

func unnamed(rc syscall.RawConn) {
	rc.Control(func(uintptr) {})
}

type notRaw struct{}

func (notRaw) Control(name string) error                { return nil }
func (notRaw) Write(fn func(fd uintptr) error) error    { return nil }
func (notRaw) Read(fn func(p []byte) bool) (int, error) { return 0, nil }

func notBorrows(r notRaw) {
	var kept uintptr
	r.Write(func(fd uintptr) error { kept = fd; return nil })
	r.Read(func(p []byte) bool { return len(p) > 0 })
	_ = kept
}
