//go:build linux

package handoff

import (
	"os"

	"golang.org/x/sys/unix"
)

// Diagnostic modes that split the sealed mode's cost over the floor between
// its two sides (the wire format is the same): the library's producer with
// the floor's consumer, and the floor's producer with the library's
// consumer. Not in the default table; `sealbuf bench -modes` takes them.
func init() {
	Register(Mode{
		Name:     "lib-producer",
		Socket:   unix.SOCK_SEQPACKET,
		Producer: newSealedProducer,
		Consume:  func(sock *os.File, size int) error { return consumeFloor(sock, size, true) },
	})
	Register(Mode{
		Name:     "lib-consumer",
		Socket:   unix.SOCK_SEQPACKET,
		Producer: func(sock *os.File, size int) (Producer, error) { return newFloorProducer(sock, size, true) },
		Consume:  consumeSealed,
	})
}
