package allow

import (
	"os"

	"golang.org/x/sys/unix"
)

func inherited() *os.File {
	//iosafety:allow newfile fd 3 is the systemd listener, adopted once
	return os.NewFile(3, "listener")
}

func sameLine(f *os.File) uintptr {
	return f.Fd() //iosafety:allow fd-call needed by a C library
}

func several(f *os.File) {
	//iosafety:allow fd-call,borrowed-close test of a list
	unix.Close(int(f.Fd()))
}

func everything(f *os.File) {
	unix.Close(int(f.Fd())) //iosafety:allow all
}

func wrongCategory(f *os.File) uintptr {
	//iosafety:allow newfile not this one
	return f.Fd() // want `^fd-call:`
}

func tooFar(f *os.File) uintptr {
	//iosafety:allow fd-call

	return f.Fd() // want `^fd-call:`
}

func notADirective(f *os.File) uintptr {
	//iosafety:allowed fd-call
	return f.Fd() // want `^fd-call:`
}

type withField struct {
	fd int //iosafety:allow fd-field kept for a C callback
}
