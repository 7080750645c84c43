//go:build linux

package handoff

import (
	"os"

	"github.com/sealbuf/sealbuf"

	"golang.org/x/sys/unix"
)

// Diagnostic modes, not in the default table (`sealbuf bench -modes` takes
// them): lib-producer and lib-consumer split the sealed mode's cost over
// the floor between its two sides (the wire format is the same: the
// library's producer with the floor's consumer, and the reverse);
// sealed-wait is the sealed mode with WithWait at every size (sealed
// uses it up to 64 KiB only); pool-socket is the pool mode with its records
// over the socket (no pool.WithFutex), pool-netpoll that without
// WithWait either.
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
		Producer: func(sock *os.File, size int) (Producer, error) { return newFloorProducer([]*os.File{sock}, size, true) },
		Consume:  consumeSealed,
	})
	Register(Mode{
		Name:   "sealed-sendclose",
		Socket: unix.SOCK_SEQPACKET,
		Producer: func(sock *os.File, size int) (Producer, error) {
			p, err := newSealedProducerOpts([]*os.File{sock}, size, sealedWait(size)...)
			if err != nil {
				return nil, err
			}
			p.sendClose = true
			p.note += "; SendAndClose, the consumer acks then closes"
			return p, nil
		},
		Consume: func(sock *os.File, size int) error {
			return consumeSealedOrder(sock, size, false, true, sealedWait(size)...)
		},
	})
	Register(Mode{
		Name:   "sealed-wait",
		Socket: unix.SOCK_SEQPACKET,
		Producer: func(sock *os.File, size int) (Producer, error) {
			return newSealedProducerOpts([]*os.File{sock}, size, diagWait)
		},
		Consume: func(sock *os.File, size int) error { return consumeSealedOpts(sock, size, false, diagWait) },
	})
	Register(Mode{
		Name:     "pool-socket",
		Socket:   unix.SOCK_SEQPACKET,
		Supports: poolFits,
		Producer: func(sock *os.File, size int) (Producer, error) { return newPoolProducer(sock, size, poolSocket) },
		Consume:  func(sock *os.File, size int) error { return consumePool(sock, size, poolSocket) },
	})
	Register(Mode{
		Name:     "pool-netpoll",
		Socket:   unix.SOCK_SEQPACKET,
		Supports: poolFits,
		Producer: func(sock *os.File, size int) (Producer, error) { return newPoolProducer(sock, size, poolNetpoll) },
		Consume:  func(sock *os.File, size int) error { return consumePool(sock, size, poolNetpoll) },
	})
}

// diagWait is sealed-wait's WithWait: the sealed mode with the
// pool mode's latency setting (it gains nothing measurable there).
var diagWait = sealbuf.WithWait(sealbuf.Wait{Kernel: poolWait})
