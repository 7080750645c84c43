//go:build linux

package memfd_test

import (
	"errors"
	"fmt"
	"log"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/memfd"
)

func ExampleCreate() {
	f, err := memfd.Create("greeting")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()

	if _, err := f.WriteAt([]byte("hello, sealed world"), 0); err != nil {
		log.Fatal(err)
	}
	// Freeze size and contents, then the seal set itself.
	if err := f.AddSeals(memfd.SealShrink | memfd.SealGrow | memfd.SealWrite | memfd.SealSeal); err != nil {
		log.Fatal(err)
	}

	seals, err := f.Seals()
	if err != nil {
		log.Fatal(err)
	}
	// Kernels since 6.3 also report exec (no-exec memfds); leave it out so
	// the output is the same everywhere.
	fmt.Println(seals &^ memfd.SealExec)
	fmt.Println("immutable:", seals.Has(memfd.SealImmutable))

	_, err = f.WriteAt([]byte("HELLO"), 0)
	fmt.Println("write refused:", errors.Is(err, unix.EPERM))

	b := make([]byte, 5)
	if _, err := f.ReadAt(b, 0); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", b)
	// Output:
	// seal|shrink|grow|write
	// immutable: true
	// write refused: true
	// hello
}
