//go:build linux

package sealtest_test

import (
	"errors"
	"fmt"
	"io"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/memfd"
	"github.com/sealbuf/sealbuf/sealtest"
)

// A peer process sends what a careless producer would; the receiver refuses
// each with an error that says why, and stays usable.
func Example() {
	a, b, err := sealtest.SocketPair("unixpacket")
	if err != nil {
		panic(err)
	}
	peer, err := sealtest.StartPeer(a) // needs sealtest.Main or RunPeer in TestMain
	if err != nil {
		panic(err)
	}
	defer peer.Close()
	conn := sealbuf.NewConn(b, sealbuf.WithReceivePolicy(sealbuf.MaxSize(1<<20)))
	defer conn.Close()

	for _, d := range []sealtest.Desc{
		sealtest.Unsealed(4096),
		sealtest.Pipe(),
		sealtest.Large(1 << 30),
		sealtest.Sealed(4096),
	} {
		if err := peer.Send([]byte("hello"), d); err != nil {
			panic(err)
		}
		_, bufs, err := conn.Receive(make([]byte, 16))
		switch {
		case errors.Is(err, sealbuf.ErrNotSealed):
			fmt.Printf("%s: refused, not sealed\n", d)
		case errors.Is(err, memfd.ErrNotMemfd):
			fmt.Printf("%s: refused, not a memfd\n", d)
		case errors.Is(err, sealbuf.ErrTooLarge):
			fmt.Printf("%s: refused, too large\n", d)
		case err == nil:
			fmt.Printf("%s: accepted, %d bytes\n", d, bufs[0].Len())
			bufs[0].Close()
		}
	}
	// Output:
	// unsealed memfd of 4096 bytes: refused, not sealed
	// pipe: refused, not a memfd
	// large sealed memfd of 1073741824 bytes: refused, too large
	// sealed memfd of 4096 bytes: accepted, 4096 bytes
}

// The peer process truncates a memfd while the receiver has it mapped: the
// access fails with ErrTruncated instead of killing the process with SIGBUS.
func ExampleShared_Truncate() {
	a, b, _ := sealtest.SocketPair("unixpacket")
	peer, err := sealtest.StartPeer(a)
	if err != nil {
		panic(err)
	}
	defer peer.Close()
	conn := sealbuf.NewConn(b)
	defer conn.Close()

	shared, err := peer.SendShared([]byte("frame"), sealtest.Unsealed(1<<20))
	if err != nil {
		panic(err)
	}
	_, files, _ := conn.ReceiveFiles(make([]byte, 16))
	m, err := sealbuf.Map(files[0])
	if err != nil {
		panic(err)
	}
	defer m.Close()

	err = m.Access(func(b []byte) error {
		shared.Truncate(4096) // returns once the other process has cut it
		_ = b[len(b)-1]       // faults: past the end now
		return nil
	})
	fmt.Println(errors.Is(err, sealbuf.ErrTruncated))
	_, err = m.ReadAt(make([]byte, 10), 0) // below the end: fine
	fmt.Println(err)
	// Output:
	// true
	// <nil>
}

// A producer that dies in the middle of a message on a stream socket: the
// receiver gets io.ErrUnexpectedEOF, the descriptors that came with the
// first half are closed, and then io.EOF.
func ExamplePeer_HangUpMidMessage() {
	a, b, _ := sealtest.SocketPair("unix")
	peer, err := sealtest.StartPeer(a)
	if err != nil {
		panic(err)
	}
	defer peer.Close()
	conn := sealbuf.NewConn(b)
	defer conn.Close()

	fds := sealtest.CountFDs()
	peer.HangUpMidMessage([]byte("a header"), 10, sealtest.Sealed(4096))
	_, _, err = conn.Receive(make([]byte, 16))
	fmt.Println(errors.Is(err, io.ErrUnexpectedEOF))
	_, _, err = conn.Receive(make([]byte, 16))
	fmt.Println(err == io.EOF, sealtest.CountFDs()-fds)
	// Output:
	// true
	// true 0
}

// CountFDs and CountMaps take the measure of a refusal: nothing stays open,
// nothing stays mapped.
func ExampleCountFDs() {
	fds, maps := sealtest.CountFDs(), sealtest.CountMaps()
	f, _ := sealtest.Unsealed(4096).Create()
	_, err := sealbuf.Open(f) // refused: f stays the caller's
	fmt.Println(errors.Is(err, sealbuf.ErrNotSealed))
	f.Close()
	fmt.Println(sealtest.CountFDs()-fds, sealtest.CountMaps()-maps)
	// Output:
	// true
	// 0 0
}
