//go:build linux

package handoff

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
)

// The sealed modes hand a fresh sealed memfd per message over a unixpacket
// sealbuf.Conn. They differ in how the producer builds the buffer; the
// consumer is the same: Receive, read every byte through Bytes, check,
// Close, ack.
//
// The producer keeps its Sealed until the ack and closes it then, and the
// consumer closes its own before it acks: the producer drops the last
// reference, so the memfd's pages are freed on the producer's CPU, where
// the next message's pages are allocated. Freed on the consumer's CPU
// instead (the producer closing at once with SendAndClose, the consumer
// closing after its ack: the diagnostic mode sealed-sendclose), every
// page of every message moves between the two CPUs' free lists when they
// differ: measured on 2 vCPUs with -pin cross, a 1 MiB FromBytes took 440
// instead of 260 µs (create+pwrite, pages from the other CPU's frees) and
// the handoff 815 instead of 670 µs (sealed-floor, p50).

func init() {
	Register(Mode{
		Name:   "sealed",
		Socket: unix.SOCK_SEQPACKET,
		Producer: func(sock *os.File, size int) (Producer, error) {
			return newSealedProducerOpts([]*os.File{sock}, size, sealedWait(size)...)
		},
		Consume: func(sock *os.File, size int) error { return consumeSealedOpts(sock, size, false, sealedWait(size)...) },
		FanOut: func(socks []*os.File, size int) (Producer, error) {
			return newSealedProducerOpts(socks, size, sealedWait(size)...)
		},
	})
	Register(Mode{
		Name:     "sealed-new",
		Socket:   unix.SOCK_SEQPACKET,
		Producer: func(sock *os.File, size int) (Producer, error) { return newNewProducer([]*os.File{sock}, size) },
		Consume:  func(sock *os.File, size int) error { return consumeSealedOpts(sock, size, false, sealedWait(size)...) },
		FanOut:   newNewProducer,
	})
	Register(Mode{
		Name:     "sealed-thp",
		Socket:   unix.SOCK_SEQPACKET,
		Supports: thpFits,
		Producer: func(sock *os.File, size int) (Producer, error) { return newTHPProducer([]*os.File{sock}, size) },
		Consume:  consumeSealed,
		FanOut:   newTHPProducer,
	})
	Register(Mode{
		Name:     "sealed-hugetlb",
		Socket:   unix.SOCK_SEQPACKET,
		Supports: hugeFits,
		Producer: func(sock *os.File, size int) (Producer, error) { return newHugeProducer([]*os.File{sock}, size) },
		Consume:  consumeSealed,
		FanOut:   newHugeProducer,
	})
}

// A build path makes a sealed buffer holding message k. buf is scratch
// space of the message's size, reused between messages.
type buildFunc func(buf []byte, k uint64) (*sealbuf.Sealed, error)

// buildFromBytes fills scratch memory and copies it into a fresh memfd with
// FromBytes (pwrite: no producer mapping, no page zeroing).
func buildFromBytes(buf []byte, k uint64) (*sealbuf.Sealed, error) {
	Fill(buf, k)
	return sealbuf.FromBytes(buf)
}

// buildMapped fills a fresh Buffer's mapping in place and seals it (page
// faults and zeroing, but one pass over the bytes).
func buildMapped(buf []byte, k uint64, opts ...sealbuf.Option) (*sealbuf.Sealed, error) {
	b, err := sealbuf.New(len(buf), opts...)
	if err != nil {
		return nil, err
	}
	Fill(b.Bytes(), k)
	s, err := b.Seal()
	if err != nil {
		b.Close()
		return nil, err
	}
	return s, nil
}

// Build paths by name, as the sealed mode's note reports them.
var buildPaths = []struct {
	name string
	fn   buildFunc
}{
	{"FromBytes (pwrite)", buildFromBytes},
	{"New+fill+Seal", func(buf []byte, k uint64) (*sealbuf.Sealed, error) { return buildMapped(buf, k) }},
}

// fastestBuild returns the index in buildPaths of the faster way to build
// a buffer of len(buf) bytes: chooseBuild's, measured in raw calls and
// shared with sealed-floor, so that the library and its floor build the
// same way at every size. (BenchmarkBuild in the bench module measures the
// library's two paths without the fill.)
func fastestBuild(buf []byte) (int, error) {
	return chooseBuild(len(buf))
}

// sealedProducer builds each message with build and sends it to every
// consumer (the same sealed buffer to each), then waits for their acks.
type sealedProducer struct {
	conns []*sealbuf.Conn
	buf   []byte
	build buildFunc
	note  string
	hdr   [8]byte
	ack   [8]byte
	// sendClose: close the buffer as it is sent (SendAndClose), not after
	// the acks (sealed-sendclose).
	sendClose bool
}

func newConn(sock *os.File, opts ...sealbuf.ConnOption) (*sealbuf.Conn, error) {
	c, err := unixConn(sock)
	if err != nil {
		return nil, err
	}
	return sealbuf.NewConn(c, opts...), nil
}

// newBuiltProducer makes a sealedProducer over socks.
func newBuiltProducer(socks []*os.File, size int, build buildFunc, note string, opts ...sealbuf.ConnOption) (*sealedProducer, error) {
	p := &sealedProducer{buf: make([]byte, size), build: build, note: note}
	for _, sock := range socks {
		c, err := newConn(sock, opts...)
		if err != nil {
			p.Close()
			return nil, err
		}
		p.conns = append(p.conns, c)
	}
	if len(p.conns) > 1 {
		p.note += fmt.Sprintf("; the same buffer sent to each of %d consumers", len(p.conns))
	}
	return p, nil
}

func newSealedProducer(sock *os.File, size int) (Producer, error) {
	return newSealedProducerOpts([]*os.File{sock}, size)
}

// sealedWaitMax is the largest size the sealed mode waits in the kernel
// for (WithWait): measured, it takes the netpoller's cost out up to
// 64 KiB (4 KiB: 58 → 50 µs, level with the floor), but made 1 MiB
// messages 10–20% slower in every run (sealed-wait, docs/bench.md). Like
// the build path, the mode uses what measured fastest at the size.
const sealedWaitMax = 64 << 10

// sealedWait returns the sealed mode's Conn options for size: the kernel
// wait up to sealedWaitMax, and only in a process with GOMAXPROCS 1 (the
// bench pins each process to a CPU with GOMAXPROCS 1 under -pin same and
// cross), as the Wait documentation advises. With more Ps (-pin none) a
// side that waits in ppoll(2) keeps its P while another thread of the
// process may sit in the netpoller, where the socket is registered too:
// every message wakes both (under perf stat 2.2 epoll_pwait and 3.75
// context switches per message against 0 and 2.3 for the floor), and the
// two processes land on different CPUs more often. Measured at -pin none
// (p50, interleaved): 4 KiB 47–49 µs with the kernel wait against 30–31
// parked in the netpoller; pinned the kernel wait stays faster (-pin same
// 24.4 against 28.8 µs, -pin cross 100 against 130 µs).
func sealedWait(size int) []sealbuf.ConnOption {
	if size > sealedWaitMax || runtime.GOMAXPROCS(0) != 1 {
		return nil
	}
	return []sealbuf.ConnOption{sealbuf.WithWait(sealbuf.Wait{Kernel: poolWait})}
}

func newSealedProducerOpts(socks []*os.File, size int, opts ...sealbuf.ConnOption) (*sealedProducer, error) {
	i, err := fastestBuild(make([]byte, size))
	if err != nil {
		return nil, err
	}
	note := buildPaths[i].name
	if len(opts) > 0 {
		note += "; WithWait(1ms)"
	}
	return newBuiltProducer(socks, size, buildPaths[i].fn, note, opts...)
}

func (p *sealedProducer) Note() string { return p.note }

func (p *sealedProducer) Send(k uint64) error {
	s, err := p.build(p.buf, k)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(p.hdr[:], k)
	if p.sendClose && len(p.conns) == 1 {
		if err := p.conns[0].SendAndClose(p.hdr[:], s); err != nil {
			return err
		}
		return receiveAck(p.conns[0], p.ack[:])
	}
	defer s.Close() // after the acks: the last reference, see above
	for _, c := range p.conns {
		if err := c.Send(p.hdr[:], s); err != nil {
			return err
		}
	}
	for _, c := range p.conns {
		if err := receiveAck(c, p.ack[:]); err != nil {
			return err
		}
	}
	return nil
}

func (p *sealedProducer) Close() error {
	var errs []error
	for _, c := range p.conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

func receiveAck(c *sealbuf.Conn, buf []byte) error {
	n, bufs, err := c.Receive(buf)
	for _, b := range bufs {
		b.Close()
	}
	if err == io.EOF {
		err = errors.New("consumer hung up before it acked")
	}
	if err != nil {
		return fmt.Errorf("receive ack: %w", err)
	}
	if n != 1 || len(bufs) != 0 {
		return fmt.Errorf("receive ack: %d bytes and %d buffers, want 1 byte", n, len(bufs))
	}
	return nil
}

// consumeSealed is the consumer of every mode that sends sealed memfds
// over a sealbuf.Conn.
func consumeSealed(sock *os.File, size int) error {
	return consumeSealedOpts(sock, size, false)
}

// consumeSealedOpts is consumeSealed with Conn options; with idle it also
// sends a second byte once a message's buffers are closed, for a paced
// producer (Readier) to wait for, untimed.
func consumeSealedOpts(sock *os.File, size int, idle bool, opts ...sealbuf.ConnOption) error {
	return consumeSealedOrder(sock, size, idle, false, opts...)
}

// consumeSealedOrder is consumeSealedOpts; with ackFirst the consumer
// acks before it closes the message's buffers (sealed-sendclose).
func consumeSealedOrder(sock *os.File, size int, idle, ackFirst bool, opts ...sealbuf.ConnOption) error {
	conn, err := newConn(sock, opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	var hdr [16]byte
	ack := []byte{'a'}
	for k := uint64(0); ; k++ {
		n, bufs, err := conn.Receive(hdr[:])
		if errors.Is(err, io.EOF) { // a producer that closed with our idle byte unread resets
			return nil
		}
		if err != nil {
			return err
		}
		// Check the bytes, close (unmap and drop the memfd, so that the
		// producer holds the last reference), then ack.
		err = checkSealed(hdr[:n], bufs, k, size)
		if err == nil && ackFirst {
			err = conn.Send(ack)
		}
		for _, b := range bufs {
			if cerr := b.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}
		if err == nil && !ackFirst {
			err = conn.Send(ack)
		}
		if err == nil && idle {
			err = conn.Send([]byte{'i'})
			if errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) {
				return nil // the producer is done and hung up
			}
		}
		if err != nil {
			return err
		}
	}
}

// checkSealed checks message k; the caller closes bufs.
func checkSealed(hdr []byte, bufs []*sealbuf.Sealed, k uint64, size int) error {
	if len(hdr) != 8 || binary.LittleEndian.Uint64(hdr) != k || len(bufs) != 1 {
		return fmt.Errorf("message %d: %d-byte header %x with %d buffers, want header %d and one buffer", k, len(hdr), hdr, len(bufs), k)
	}
	b := bufs[0]
	if b.Len() != size {
		return fmt.Errorf("message %d: %d bytes, want %d", k, b.Len(), size)
	}
	mem := b.Bytes()
	if len(mem) != size {
		return fmt.Errorf("message %d: Bytes has %d bytes, want %d", k, len(mem), size)
	}
	return Check(mem, k)
}

// hugeFits reports whether size is a whole number of default huge pages.
func hugeFits(size int) error {
	hp := HugePageSize()
	if hp == 0 {
		return errors.New("the kernel has no huge pages")
	}
	if size == 0 || size%hp != 0 {
		return fmt.Errorf("%d bytes is not a multiple of the %d KiB huge page size", size, hp>>10)
	}
	return nil
}

func newHugeProducer(socks []*os.File, size int) (Producer, error) {
	// Refuse at once, with the reason, when huge pages cannot be had:
	// WithHugePages falls back to normal pages, which would measure
	// something else under this mode's name.
	b, err := sealbuf.New(size, sealbuf.WithHugePages(0))
	if err != nil {
		return nil, err
	}
	huge, why := b.HugePages()
	b.Close()
	if !huge {
		return nil, fmt.Errorf("no huge pages: %v", why)
	}
	build := func(buf []byte, k uint64) (*sealbuf.Sealed, error) {
		b, err := sealbuf.New(len(buf), sealbuf.WithHugePages(0))
		if err != nil {
			return nil, err
		}
		if huge, why := b.HugePages(); !huge {
			b.Close()
			return nil, fmt.Errorf("huge pages ran out: %v", why)
		}
		Fill(b.Bytes(), k)
		s, err := b.Seal()
		if err != nil {
			b.Close()
		}
		return s, err
	}
	return newBuiltProducer(socks, size, build, "New(WithHugePages)+fill+Seal")
}

// newNewProducer is sealed-new's: the README's producer path, New, fill
// the mapping in place, Seal, whatever FromBytes would cost. Conns as in
// the sealed mode.
func newNewProducer(socks []*os.File, size int) (Producer, error) {
	build := func(buf []byte, k uint64) (*sealbuf.Sealed, error) { return buildMapped(buf, k) }
	note := "New+fill+Seal"
	opts := sealedWait(size)
	if len(opts) > 0 {
		note += "; WithWait(Kernel 1ms)"
	}
	return newBuiltProducer(socks, size, build, note, opts...)
}

// thpFits reports whether size holds at least one transparent huge page.
func thpFits(size int) error {
	pmd := THPSize()
	if pmd == 0 {
		return errors.New("the kernel has no transparent huge pages")
	}
	if size < pmd {
		return fmt.Errorf("%d bytes is less than one %d KiB transparent huge page", size, pmd>>10)
	}
	return nil
}

// newTHPProducer is sealed-thp's: New with WithTransparentHugePages, fill,
// Seal. Like sealed-hugetlb it refuses at once, with the reason, when the
// kernel gives normal pages, rather than measure them under its name.
func newTHPProducer(socks []*os.File, size int) (Producer, error) {
	if err := thpAvailable(size); err != nil {
		return nil, err
	}
	build := func(buf []byte, k uint64) (*sealbuf.Sealed, error) {
		b, err := sealbuf.New(len(buf), sealbuf.WithTransparentHugePages())
		if err != nil {
			return nil, err
		}
		if huge, why := b.HugePages(); !huge {
			b.Close()
			return nil, fmt.Errorf("transparent huge pages ran out: %v", why)
		}
		Fill(b.Bytes(), k)
		s, err := b.Seal()
		if err != nil {
			b.Close()
		}
		return s, err
	}
	return newBuiltProducer(socks, size, build, "New(WithTransparentHugePages)+fill+Seal")
}

// thpAvailable reports why a buffer of size bytes gets no transparent
// huge pages (nil: it does).
func thpAvailable(size int) error {
	b, err := sealbuf.New(size, sealbuf.WithTransparentHugePages())
	if err != nil {
		return err
	}
	huge, why := b.HugePages()
	b.Close()
	if !huge {
		return fmt.Errorf("no transparent huge pages: %v", why)
	}
	return nil
}
