//go:build linux

package sigbus_test

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/sigbus"
)

// A peer shrinks the file behind a mapping; Guard turns the SIGBUS that
// would kill the process into an error.
func ExampleGuard() {
	const size, cut = 1 << 20, 64 << 10 // cut is a whole page with 4, 16 and 64 KiB pages

	fd, err := unix.MemfdCreate("example", unix.MFD_CLOEXEC)
	if err != nil {
		panic(err)
	}
	defer unix.Close(fd)
	if err := unix.Ftruncate(fd, size); err != nil {
		panic(err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		panic(err)
	}
	defer unix.Munmap(mem)

	// The peer truncates the file: pages past cut are gone.
	if err := unix.Ftruncate(fd, cut); err != nil {
		panic(err)
	}

	// Do every access inside fn and keep only what was computed from it.
	sum := 0
	err = sigbus.Guard(mem, func() {
		for _, b := range mem {
			sum += int(b)
		}
	})
	fmt.Println(errors.Is(err, sigbus.ErrFault))
	var fe *sigbus.FaultError
	if errors.As(err, &fe) {
		fmt.Println("fault at offset", fe.Offset)
	}
	fmt.Println(err)
	// Output:
	// true
	// fault at offset 65536
	// sigbus: memory fault at offset 65536 of the guarded mapping: the file behind it was probably truncated by another process; treat whatever the access produced as invalid, then check the file's size and remap or stop using it
}
