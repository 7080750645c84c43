//go:build linux

package sealbuf_test

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/memfd"
	"github.com/sealbuf/sealbuf/sealtest"
)

// The soak test's peer processes are this test binary, run again by
// sealtest.StartPeer; this hands them to the peer before TestMain runs.
func init() { sealtest.RunPeer() }

const (
	soakMaxSize   = 1 << 20 // the receivers' MaxSize policy
	soakBlock     = 500     // cycles between leak checks, with the GC off
	soakMaxHeader = 4096
)

// soakEvent is one kind of cycle and how often it comes (out of the sum of
// all weights).
type soakEvent struct {
	name   string
	weight int
	run    func(s *soakRun) error
}

var soakEvents = []soakEvent{
	{"sealed", 60, (*soakRun).sealed},
	{"unsealed", 7, (*soakRun).unsealed},
	{"not-a-memfd", 7, (*soakRun).notMemfd},
	{"oversized", 5, (*soakRun).oversized},
	{"header-too-large", 5, (*soakRun).headerTooLarge},
	{"truncated-under-map", 16, (*soakRun).truncatedUnderMap},
}

// TestSoak runs SEALBUF_SOAK_N (default 1e6) send/receive cycles against
// peer processes (one per socket type), most of them ordinary, the rest
// hostile — unsealed memfds, pipes and other non-memfds, memfds over the
// size policy, headers over the receive buffer, memfds truncated or flapped
// under a Map — and checks each outcome, that the process survives, and,
// every 500 cycles with the garbage collector off, that no descriptor or
// memfd mapping leaked. It prints the counts it checked. It is not part of
// CI: run it with
//
//	SEALBUF_SOAK=1 go test -run Soak -count=1 -v .
//
// (SEALBUF_SOAK_SEED repeats a run.)
func TestSoak(t *testing.T) {
	if os.Getenv("SEALBUF_SOAK") != "1" {
		t.Skip("soak test: set SEALBUF_SOAK=1 (and SEALBUF_SOAK_N, default 1000000)")
	}
	n := soakEnvInt(t, "SEALBUF_SOAK_N", 1_000_000)
	seed := uint64(soakEnvInt(t, "SEALBUF_SOAK_SEED", int(time.Now().UnixNano()&0x7fffffff)))
	t.Logf("soak: %d cycles, SEALBUF_SOAK_SEED=%d", n, seed)

	var runs []*soakRun
	for _, network := range []string{"unixpacket", "unix"} {
		a, b, err := sealtest.SocketPair(network)
		soakNoError(t, err)
		p, err := sealtest.StartPeer(a)
		soakNoError(t, err)
		conn := sealbuf.NewConn(b, sealbuf.WithReceivePolicy(sealbuf.MaxSize(soakMaxSize)))
		runs = append(runs, &soakRun{
			network: network, peer: p, conn: conn, conn0: b,
			r:      rand.New(rand.NewPCG(seed, uint64(len(runs)))),
			header: make([]byte, soakMaxHeader),
			counts: map[string]int{},
		})
	}
	defer func() {
		for _, s := range runs {
			s.conn.Close()
			if err := s.peer.Close(); err != nil {
				t.Errorf("peer process (%s): %v", s.network, err)
			}
		}
	}()

	total := 0
	for _, e := range soakEvents {
		total += e.weight
	}
	start := time.Now()
	checks, done := 0, 0
	for done < n {
		base, err := sealtest.NewBaseline()
		soakNoError(t, err)
		gc := debug.SetGCPercent(-1)
		end := min(done+soakBlock, n)
		for ; done < end; done++ {
			s := runs[done%len(runs)]
			e := soakPick(s.r, total)
			if err := e.run(s); err != nil {
				debug.SetGCPercent(gc)
				t.Fatalf("cycle %d (%s, %s): %v", done, s.network, e.name, err)
			}
			s.counts[e.name]++
		}
		err = base.Check()
		debug.SetGCPercent(gc)
		if err != nil {
			t.Fatalf("after cycle %d: %v", done, err)
		}
		checks++
		if checks%200 == 0 {
			t.Logf("soak: %d cycles, %s", done, time.Since(start).Round(time.Second))
		}
	}

	for _, s := range runs {
		t.Logf("soak %-10s %s", s.network+":", s.summary())
	}
	t.Logf("soak: %d cycles in %s, %d leak checks (descriptors and memfd mappings back to baseline every %d cycles, GC off), process alive",
		n, time.Since(start).Round(time.Millisecond), checks, soakBlock)
}

func soakPick(r *rand.Rand, total int) soakEvent {
	x := r.IntN(total)
	for _, e := range soakEvents {
		if x < e.weight {
			return e
		}
		x -= e.weight
	}
	panic("unreachable")
}

// soakRun is one peer process and the Conn receiving from it.
type soakRun struct {
	network string
	peer    *sealtest.Peer
	conn    *sealbuf.Conn
	conn0   interface{ SetReadDeadline(time.Time) error }
	r       *rand.Rand
	header  []byte
	counts  map[string]int

	bufs, bytes, truncErrs, okReads, flapCycles, cutPageZeros int
}

func (s *soakRun) summary() string {
	names := make([]string, 0, len(s.counts))
	for _, e := range soakEvents {
		names = append(names, fmt.Sprintf("%s %d", e.name, s.counts[e.name]))
	}
	return fmt.Sprintf("%v; %d buffers (%d MiB) verified, %d ErrTruncated and %d good reads under truncation (%d with zeros in the cut page), %d flap cycles",
		names, s.bufs, s.bytes>>20, s.truncErrs, s.okReads, s.cutPageZeros, s.flapCycles)
}

// size returns a random size up to 1 MiB, small ones most often.
func (s *soakRun) size() int64 { return int64(s.r.IntN(1 << s.r.IntN(21))) }

func (s *soakRun) headerLen() int {
	n := s.r.IntN(1 << s.r.IntN(13)) // up to 4 KiB
	if n == 0 && s.network == "unixpacket" {
		n = 1 // an empty packet with no buffers reads as end of file
	}
	return n
}

// receive reads one message with a deadline, so a hang fails the run.
func (s *soakRun) receive(h []byte) (int, []*sealbuf.Sealed, error) {
	s.conn0.SetReadDeadline(time.Now().Add(30 * time.Second))
	return s.conn.Receive(h)
}

// expect receives one message and checks that it fails matching want, with
// no buffers, and that the next message still arrives.
func (s *soakRun) expect(want error, h []byte) error {
	_, bufs, err := s.receive(h)
	if !errors.Is(err, want) || bufs != nil {
		soakClose(bufs)
		return fmt.Errorf("got %v with %d buffers, want %v", err, len(bufs), want)
	}
	return nil
}

func (s *soakRun) sealed() error {
	hl := s.headerLen()
	k := s.r.IntN(4)
	if hl == 0 && k == 0 {
		k = 1
	}
	descs := make([]sealtest.Desc, k)
	sizes := make([]int64, k)
	for i := range descs {
		sizes[i] = s.size()
		descs[i] = sealtest.Sealed(sizes[i])
	}
	off := s.r.Int64N(1 << 20)
	if err := s.peer.Send(sealtest.Pattern(off, hl), descs...); err != nil {
		return err
	}
	n, bufs, err := s.receive(s.header)
	defer soakClose(bufs)
	switch {
	case err != nil:
		return err
	case n != hl || !sealtest.IsPattern(s.header[:n], off):
		return fmt.Errorf("header of %d bytes, want %d of the pattern at %d", n, hl, off)
	case len(bufs) != k:
		return fmt.Errorf("%d buffers, want %d", len(bufs), k)
	}
	for i, b := range bufs {
		if int64(b.Len()) != sizes[i] || !sealtest.IsPattern(b.Bytes(), 0) {
			return fmt.Errorf("buffer %d: %d bytes, want %d of the pattern", i, b.Len(), sizes[i])
		}
		if !b.Seals().Has(memfd.SealImmutable) {
			return fmt.Errorf("buffer %d sealed %s", i, b.Seals())
		}
		s.bufs++
		s.bytes += b.Len()
	}
	return nil
}

func (s *soakRun) unsealed() error {
	d := sealtest.Unsealed(s.size())
	if s.r.IntN(2) == 0 {
		d = sealtest.PartlySealed(s.size())
	}
	if err := s.peer.Send([]byte("unsealed"), sealtest.Sealed(s.size()), d); err != nil {
		return err
	}
	return s.expect(sealbuf.ErrNotSealed, s.header)
}

var soakNotMemfds = []sealtest.Desc{
	sealtest.Pipe(), sealtest.Socket(), sealtest.DevZero(), sealtest.OPath(), sealtest.Directory(), sealtest.RegularFile(),
}

func (s *soakRun) notMemfd() error {
	d := soakNotMemfds[s.r.IntN(len(soakNotMemfds))]
	if err := s.peer.Send([]byte("not a memfd"), d, sealtest.Sealed(s.size())); err != nil {
		return err
	}
	return s.expect(memfd.ErrNotMemfd, s.header)
}

func (s *soakRun) oversized() error {
	if err := s.peer.Send([]byte("oversized"), sealtest.Large(soakMaxSize+1+s.r.Int64N(1<<40))); err != nil {
		return err
	}
	return s.expect(sealbuf.ErrTooLarge, s.header)
}

func (s *soakRun) headerTooLarge() error {
	h := s.header[:s.r.IntN(64)]
	big := len(h) + 1 + s.r.IntN(soakMaxHeader)
	if err := s.peer.Send(sealtest.Pattern(0, big), sealtest.Sealed(s.size())); err != nil {
		return err
	}
	return s.expect(io.ErrShortBuffer, h)
}

// truncatedUnderMap has the peer send an unsealed memfd it keeps, maps it,
// and has the peer cut it — before an access, in the middle of one, or over
// and over while reads run — then checks that accesses past the end fail
// with ErrTruncated and those below it return the right bytes.
func (s *soakRun) truncatedUnderMap() error {
	size := 2*4096 + s.r.Int64N(256<<10)
	shared, err := s.peer.SendShared([]byte("shared"), sealtest.Unsealed(size))
	if err != nil {
		return err
	}
	defer shared.Close()
	_, files, err := s.conn.ReceiveFiles(s.header)
	if err != nil {
		return err
	}
	if len(files) != 1 {
		soakCloseFiles(files)
		return fmt.Errorf("%d descriptors, want 1", len(files))
	}
	m, err := sealbuf.Map(files[0], sealbuf.MapMaxSize(soakMaxSize))
	if err != nil {
		files[0].Close()
		return err
	}
	defer m.Close()
	cut := s.r.Int64N(size - 4096)
	buf := make([]byte, 4096)

	switch s.r.IntN(3) {
	case 0: // cut, then read past and below the end
		if err := shared.Truncate(cut); err != nil {
			return err
		}
		past := cut + s.r.Int64N(size-cut-int64(len(buf))+1)
		if _, err := m.ReadAt(buf, past); !errors.Is(err, sealbuf.ErrTruncated) {
			return fmt.Errorf("read at %d of a file cut to %d: %v, want ErrTruncated", past, cut, err)
		}
		s.truncErrs++
		if cut > 0 {
			k := min(cut, int64(len(buf)))
			off := s.r.Int64N(cut - k + 1)
			if _, err := m.ReadAt(buf[:k], off); err != nil || !sealtest.IsPattern(buf[:k], off) {
				return fmt.Errorf("read of %d bytes at %d below the end %d: %v", k, off, cut, err)
			}
			s.okReads++
		}
	case 1: // cut in the middle of an access that then touches the end
		err := m.Access(func(b []byte) error {
			if err := shared.Truncate(cut); err != nil {
				return err
			}
			soakSink += b[len(b)-1]
			return nil
		})
		if !errors.Is(err, sealbuf.ErrTruncated) {
			return fmt.Errorf("access while the peer cuts to %d: %v, want ErrTruncated", cut, err)
		}
		s.truncErrs++
	case 2: // flapping while reads run
		if err := shared.Flap(cut, size); err != nil {
			return err
		}
		for range 20 {
			off := s.r.Int64N(size - int64(len(buf)) + 1)
			_, err := m.ReadAt(buf, off)
			switch {
			case err == nil:
				if !sealtest.IsPattern(buf, off) && !soakCutPageZeros(buf, off, cut) {
					shared.StopFlap()
					return fmt.Errorf("a read at %d while flapping (cut %d, size %d, Len %d) succeeded with wrong bytes: %s",
						off, cut, size, m.Len(), soakDiff(buf, off))
				}
				s.okReads++
				if !sealtest.IsPattern(buf, off) {
					s.cutPageZeros++
				}
			case errors.Is(err, sealbuf.ErrTruncated):
				s.truncErrs++
			default:
				shared.StopFlap()
				return fmt.Errorf("read at %d while flapping: %v", off, err)
			}
		}
		cycles, err := shared.StopFlap()
		if err != nil {
			return err
		}
		s.flapCycles += cycles
		if _, err := m.ReadAt(buf, 0); err != nil || !sealtest.IsPattern(buf, 0) {
			return fmt.Errorf("read after flapping stopped: %v", err)
		}
		s.okReads++
	}
	return nil
}

var soakSink byte

// soakCutPageZeros reports whether buf, read at off while the peer flapped
// the memfd between cut and its size, is the pattern except for zeros in
// [cut, pageUp(cut)). Those bytes are legitimately possible: ftruncate(cut)
// zeroes the rest of the page holding cut, the page stays mapped (no fault),
// and when the peer's pwrite has grown the file back before the access ends,
// the Mapping's check of the size after the access passes. The reader got
// zeros the file held past its end for a moment — the same as a producer
// writing zeros, which an unsealed memfd allows.
func soakCutPageZeros(buf []byte, off, cut int64) bool {
	end := (cut + 4095) &^ 4095
	for i, b := range buf {
		at := off + int64(i)
		if b != sealtest.Pattern(at, 1)[0] && (b != 0 || at < cut || at >= end) {
			return false
		}
	}
	return true
}

// soakDiff describes where buf differs from the pattern at off.
func soakDiff(buf []byte, off int64) string {
	want := sealtest.Pattern(off, len(buf))
	first, last, zeros := -1, -1, 0
	for i := range buf {
		if buf[i] != want[i] {
			if first < 0 {
				first = i
			}
			last = i
			if buf[i] == 0 {
				zeros++
			}
		}
	}
	return fmt.Sprintf("bytes [%d, %d] differ (%d of them zero; first %#x, want %#x)",
		off+int64(first), off+int64(last), zeros, buf[first], want[first])
}

func soakClose(bufs []*sealbuf.Sealed) {
	for _, b := range bufs {
		b.Close()
	}
}

func soakCloseFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

func soakEnvInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

func soakNoError(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
