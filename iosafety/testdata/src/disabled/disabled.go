package disabled

import "os"

type conn struct {
	fd int
}

func adopt(c *conn) *os.File { return os.NewFile(uintptr(c.fd), "c") }

func number(f *os.File) uintptr {
	return f.Fd() // want `^fd-call:`
}
