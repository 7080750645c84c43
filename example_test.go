//go:build linux

package sealbuf_test

import (
	"errors"
	"fmt"
	"log"
	"os"
	"strconv"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/memfd"
)

// received stands in for a descriptor that arrived from another process
// (over a UNIX socket, or inherited): a new *os.File on the same memfd.
func received(f *memfd.File) *os.File {
	var out *os.File
	err := f.Control(func(fd int) error {
		var err error
		out, err = os.Open("/proc/self/fd/" + strconv.Itoa(fd))
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	return out
}

// The producer: fill a Buffer in place, then Seal it. The Sealed can be sent
// to any number of consumers; nobody can change it any more.
func ExampleNew() {
	b, err := sealbuf.New(13, sealbuf.WithName("greeting"))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close() // a no-op once sealed
	copy(b.Bytes(), "hello, world!")

	s, err := b.Seal()
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	fmt.Println(s.Len(), string(s.Bytes()))
	fmt.Println(s.Seals().Has(memfd.SealShrink | memfd.SealGrow | memfd.SealWrite | memfd.SealSeal))
	// Output:
	// 13 hello, world!
	// true
}

// The consumer of a sealed memfd: Open checks that it is a memfd, that the
// seals make it immutable and that its size is acceptable, and maps it
// read-only. Its bytes are then a plain []byte that cannot change or fault.
func ExampleOpen() {
	src, err := sealbuf.FromBytes([]byte("immutable bytes"))
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	f := received(src.File())

	s, err := sealbuf.Open(f, sealbuf.MaxSize(1<<20))
	if err != nil {
		f.Close() // on error f is still ours
		log.Fatal(err)
	}
	defer s.Close() // closes f too
	fmt.Printf("%d bytes: %s\n", s.Len(), s.Bytes())
	// Output: 15 bytes: immutable bytes
}

// Open refuses a memfd its producer can still change, and says which seals
// are missing.
func ExampleOpen_notSealed() {
	mf, err := memfd.Create("draft")
	if err != nil {
		log.Fatal(err)
	}
	defer mf.Close()
	if _, err := mf.WriteAt([]byte("draft"), 0); err != nil {
		log.Fatal(err)
	}
	if err := mf.AddSeals(memfd.SealShrink | memfd.SealGrow); err != nil {
		log.Fatal(err)
	}
	f := received(mf)
	defer f.Close()

	_, err = sealbuf.Open(f)
	fmt.Println(errors.Is(err, sealbuf.ErrNotSealed))
	_, err = sealbuf.Open(os.Stdin)
	fmt.Println(errors.Is(err, memfd.ErrNotMemfd))
	// Output:
	// true
	// true
}

// The untrusted consumer: a memfd whose peer may truncate it at any time.
// Every access through the Mapping is guarded, so a truncation becomes
// ErrTruncated instead of a SIGBUS that kills the process.
func ExampleMap() {
	peer, err := memfd.Create("shared")
	if err != nil {
		log.Fatal(err)
	}
	defer peer.Close()
	if err := peer.Truncate(64 << 10); err != nil {
		log.Fatal(err)
	}
	if _, err := peer.WriteAt([]byte("hello"), 0); err != nil {
		log.Fatal(err)
	}

	m, err := sealbuf.Map(received(peer))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	p := make([]byte, 5)
	if _, err := m.ReadAt(p, 0); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s, %d bytes\n", p, m.Len())

	// The peer cuts the file to one page.
	if err := peer.Truncate(4096); err != nil {
		log.Fatal(err)
	}
	_, err = m.ReadAt(p, 8192)
	fmt.Println("past the new end:", errors.Is(err, sealbuf.ErrTruncated))
	err = m.Access(func(b []byte) error {
		_ = b[len(b)-1] // would be SIGBUS without the guard
		return nil
	})
	fmt.Println("Access:", errors.Is(err, sealbuf.ErrTruncated))
	_, err = m.ReadAt(p, 0)
	fmt.Printf("below it: %s %v\n", p, err)
	// Output:
	// hello, 65536 bytes
	// past the new end: true
	// Access: true
	// below it: hello <nil>
}

// Access hands fn the whole window, under the guard, on the calling
// goroutine; fn's own error comes back when nothing faulted.
func ExampleMapping_Access() {
	peer, err := memfd.Create("counter")
	if err != nil {
		log.Fatal(err)
	}
	defer peer.Close()
	if _, err := peer.WriteAt([]byte("abcabc"), 0); err != nil {
		log.Fatal(err)
	}
	m, err := sealbuf.Map(received(peer))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	count := 0
	err = m.Access(func(b []byte) error {
		for _, c := range b {
			if c == 'a' {
				count++
			}
		}
		return nil
	})
	fmt.Println(count, err)
	// Output: 2 <nil>
}

// FromBytes makes a sealed copy of bytes the caller already has.
func ExampleFromBytes() {
	s, err := sealbuf.FromBytes([]byte("configuration v42"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	p := make([]byte, 3)
	n, err := s.ReadAt(p, 14)
	fmt.Println(s.Len(), n, string(p[:n]), err)
	n, err = s.ReadAt(p, 16)
	fmt.Println(n, string(p[:n]), err)
	// Output:
	// 17 3 v42 <nil>
	// 1 2 EOF
}
