//go:build linux

package fuzz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/memfd"
	"github.com/sealbuf/sealbuf/sealtest"
)

// The operations of FuzzMemfdOps: an opcode byte, then argument bytes.
const (
	opWrite      = iota // off u16, n u8: pwrite n bytes at off through the creating descriptor
	opTruncate          // size u16: ftruncate through a second descriptor
	opSeal              // bits u8: add seals
	opMap               // flags u8: sealbuf.Map of a new descriptor (bit 0: O_RDONLY, bit 1: MapReadOnly)
	opOpen              // sealbuf.Open of a new descriptor
	opMapAccess         // which u8, kind u8, off u16, n u16: ReadAt / WriteAt / Access on a Mapping
	opSealedRead        // which u8, off u16, n u16: Bytes and ReadAt on a Sealed
	opClose             // which u8: close a Mapping or a Sealed
	numOps
)

const maxFileSize = 5 * 4096 // sizes up to five pages, so page boundaries matter

// opState is the program's world: one memfd, two descriptors of it, and the
// Mappings and Sealeds made from it. truth is the file's contents as pread
// reads them (pread never faults), refreshed after every change.
type opState struct {
	t      *testing.T
	owner  *os.File // made by memfd_create: writes and seals
	second *os.File // the same memfd through /proc/self/fd: truncation "by another holder"
	truth  []byte
	maps   []*opMapping
	sealed []*opSealed
	log    []string
}

type opMapping struct {
	m        *sealbuf.Mapping
	writable bool
}

type opSealed struct {
	s    *sealbuf.Sealed
	want []byte // its bytes at Open; they can never change
}

// FuzzMemfdOps decodes its input as a program of operations on one memfd —
// write, truncate by a second descriptor, seal, Map, Open, accesses through
// the Mappings and Sealeds, close — and checks sealbuf's promises after
// every step:
//
//   - a Sealed never faults (its bytes are read with no guard: a fault would
//     kill the fuzzer), and its bytes are the file's and never change;
//   - a Mapping access touching bytes past the file's current end fails
//     with ErrTruncated (never io.EOF, a short count or zeros), and one wholly
//     below it succeeds with the file's bytes;
//   - Open succeeds exactly when the memfd is sealed shrink|grow|write;
//   - at the end, with everything closed, the process has as many
//     descriptors and memfd mappings as before.
func FuzzMemfdOps(f *testing.F) {
	prog := func(ops ...[]byte) []byte { return bytes.Join(ops, nil) }
	op := func(code byte, args ...byte) []byte { return append([]byte{code}, args...) }
	u16 := func(v int) (byte, byte) { return byte(v), byte(v >> 8) }
	sz := func(code byte, v int, rest ...byte) []byte {
		lo, hi := u16(v)
		return op(code, append([]byte{lo, hi}, rest...)...)
	}
	access := func(which, kind byte, off, n int) []byte {
		ol, oh := u16(off)
		nl, nh := u16(n)
		return op(opMapAccess, which, kind, ol, oh, nl, nh)
	}
	sealedRead := func(which byte, off, n int) []byte {
		ol, oh := u16(off)
		nl, nh := u16(n)
		return op(opSealedRead, which, ol, oh, nl, nh)
	}
	immutable := byte(memfd.SealShrink | memfd.SealGrow | memfd.SealWrite)

	seed(f, "truncate-under-map", prog(sz(opTruncate, 8192), op(opMap, 0), access(0, 0, 0, 8192), sz(opTruncate, 100), access(0, 0, 0, 8192), access(0, 0, 0, 50), op(opClose, 0)))
	seed(f, "write-across-pages", prog(sz(opTruncate, 3*4096), sz(opWrite, 4000, 200), op(opMap, 0), access(0, 1, 4090, 20), sz(opTruncate, 4096), access(0, 1, 4090, 20), access(0, 2, 0, 0)))
	seed(f, "sealed-then-truncate", prog(sz(opTruncate, 4096), sz(opWrite, 0, 255), op(opSeal, immutable), op(opOpen), sealedRead(0, 0, 4096), sz(opTruncate, 0), sealedRead(0, 100, 10)))
	seed(f, "partly-sealed", prog(sz(opTruncate, 4096), op(opOpen), op(opSeal, byte(memfd.SealShrink|memfd.SealGrow)), op(opMap, 0), sz(opWrite, 10, 10), access(0, 0, 0, 4096), op(opOpen)))
	seed(f, "poison-and-heal", prog(sz(opTruncate, 5*4096), op(opMap, 0), sz(opTruncate, 4096), access(0, 2, 0, 0), sz(opTruncate, 5*4096), access(0, 2, 0, 0), sz(opWrite, 12000, 100), access(0, 0, 11990, 200)))
	seed(f, "seal-after-map", prog(op(opMap, 0), access(0, 0, 0, 10), op(opSeal, immutable), op(opOpen), sealedRead(0, 0, 10), op(opClose, 0), op(opClose, 0)))
	seed(f, "write-seal-busy", prog(sz(opTruncate, 4096), op(opMap, 0), op(opSeal, byte(memfd.SealWrite)), op(opMap, 1), op(opMap, 2), access(1, 1, 0, 10), op(opSeal, byte(memfd.SealFutureWrite)), access(0, 1, 0, 10)))
	seed(f, "partial-page", prog(sz(opTruncate, 6000), op(opMap, 0), sz(opTruncate, 5000), access(0, 0, 4990, 20), access(0, 0, 4096, 904), sz(opTruncate, 6000), access(0, 0, 5990, 10)))
	seed(f, "seal-seal-first", prog(sz(opTruncate, 4096), op(opSeal, byte(memfd.SealSeal)), op(opSeal, immutable), op(opOpen)))

	f.Fuzz(func(t *testing.T, program []byte) {
		if len(program) > 128 {
			return
		}
		defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no finalizer may hide a leak
		fds, maps := openFDs(), sealtest.CountMaps()
		s := newOpState(t)
		for steps := 0; len(program) > 0 && steps < 64; steps++ {
			code := program[0] % numOps
			program = program[1:]
			s.step(code, &program)
		}
		s.closeAll()
		if leak := leakedSince(fds); leak != "" {
			t.Fatalf("%s\n%s", leak, s.trace())
		}
		if now := sealtest.CountMaps(); now != maps {
			t.Fatalf("%d memfd mappings, %d before\n%s", now, maps, s.trace())
		}
	})
}

func newOpState(t *testing.T) *opState {
	fd, err := unix.MemfdCreate("fuzz-ops", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		t.Fatal(err)
	}
	s := &opState{t: t, owner: os.NewFile(uintptr(fd), "fuzz-ops")}
	s.second = s.reopen(os.O_RDWR)
	return s
}

// reopen opens the memfd again through /proc/self/fd: a new open file
// description, as another process holding it would have.
func (s *opState) reopen(flag int) *os.File {
	var f *os.File
	err := control(s.owner, func(fd int) error {
		var err error
		f, err = os.OpenFile("/proc/self/fd/"+strconv.Itoa(fd), flag, 0)
		return err
	})
	if err != nil {
		s.fatalf("reopen: %v", err)
	}
	return f
}

func (s *opState) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("%s\n%s", fmt.Sprintf(format, args...), s.trace())
}

func (s *opState) trace() string {
	var b bytes.Buffer
	for i, l := range s.log {
		fmt.Fprintf(&b, "\t%2d %s\n", i, l)
	}
	return b.String()
}

func (s *opState) logf(format string, args ...any) {
	s.log = append(s.log, fmt.Sprintf(format, args...))
}

// next takes n argument bytes from the program (zeros past its end).
func next(p *[]byte, n int) []byte {
	b := make([]byte, n)
	k := copy(b, *p)
	*p = (*p)[k:]
	return b
}

func u16(b []byte) int { return int(b[0]) | int(b[1])<<8 }

// refresh reads the file's contents with pread into truth.
func (s *opState) refresh() {
	st, err := s.owner.Stat()
	if err != nil {
		s.fatalf("stat: %v", err)
	}
	s.truth = make([]byte, st.Size())
	if n, err := s.owner.ReadAt(s.truth, 0); n != len(s.truth) || err != nil && err != io.EOF {
		s.fatalf("pread: %d of %d: %v", n, len(s.truth), err)
	}
}

func (s *opState) seals() memfd.Seals {
	var seals int
	err := control(s.owner, func(fd int) error {
		var err error
		seals, err = unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
		return err
	})
	if err != nil {
		s.fatalf("F_GET_SEALS: %v", err)
	}
	return memfd.Seals(seals)
}

func (s *opState) step(code byte, p *[]byte) {
	s.t.Helper()
	switch code {
	case opWrite:
		a := next(p, 3)
		off, n := u16(a)%(maxFileSize+64), int(a[2])
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(0x80 | (len(s.log)+i)%127) // never 0: poison zeros stand out
		}
		_, err := s.owner.WriteAt(data, int64(off))
		s.logf("pwrite %d bytes at %d: %v", n, off, err)
		if err != nil && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EFBIG) {
			s.fatalf("pwrite: %v", err)
		}
		s.refresh()
		if len(s.truth) > maxFileSize+64+255 {
			s.fatalf("file grew to %d", len(s.truth))
		}
	case opTruncate:
		size := u16(next(p, 2)) % (maxFileSize + 1)
		err := s.second.Truncate(int64(size))
		s.logf("truncate to %d (second descriptor): %v", size, err)
		if err != nil && !errors.Is(err, unix.EPERM) {
			s.fatalf("truncate: %v", err)
		}
		s.refresh()
	case opSeal:
		add := memfd.Seals(next(p, 1)[0]) & (memfd.SealSeal | memfd.SealShrink | memfd.SealGrow | memfd.SealWrite | memfd.SealFutureWrite)
		before := s.seals()
		err := control(s.owner, func(fd int) error {
			_, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, int(add))
			return err
		})
		after := s.seals()
		s.logf("add seals %s: %v (now %s)", add, err, after)
		switch {
		case err == nil && !after.Has(add|before):
			s.fatalf("seals %s after adding %s to %s", after, add, before)
		case err != nil && after != before:
			s.fatalf("seals changed from %s to %s by a failed F_ADD_SEALS", before, after)
		case err != nil && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EBUSY):
			s.fatalf("F_ADD_SEALS: %v", err)
		}
	case opMap:
		flags := next(p, 1)[0]
		if len(s.maps) >= 3 {
			return
		}
		flag := os.O_RDWR
		if flags&1 != 0 {
			flag = os.O_RDONLY
		}
		var opts []sealbuf.MapOption
		if flags&2 != 0 {
			opts = append(opts, sealbuf.MapReadOnly())
		}
		f := s.reopen(flag)
		seals := s.seals()
		m, err := sealbuf.Map(f, opts...)
		s.logf("map (flags %d, seals %s): %v", flags, seals, err)
		if err != nil {
			f.Close()
			s.fatalf("Map of a memfd: %v", err)
		}
		if m.Len() != len(s.truth) {
			s.fatalf("Map: Len %d, file %d", m.Len(), len(s.truth))
		}
		writable := flag == os.O_RDWR && flags&2 == 0 && !seals.Has(memfd.SealWrite) && !seals.Has(memfd.SealFutureWrite)
		s.maps = append(s.maps, &opMapping{m: m, writable: writable})
	case opOpen:
		if len(s.sealed) >= 3 {
			return
		}
		f := s.reopen(os.O_RDONLY)
		seals := s.seals()
		sb, err := sealbuf.Open(f)
		s.logf("open (seals %s): %v", seals, err)
		if !seals.Has(memfd.SealShrink | memfd.SealGrow | memfd.SealWrite) {
			if !errors.Is(err, sealbuf.ErrNotSealed) {
				s.fatalf("Open of a memfd sealed %s: %v, want ErrNotSealed", seals, err)
			}
			f.Close()
			return
		}
		if err != nil {
			f.Close()
			s.fatalf("Open of a memfd sealed %s: %v", seals, err)
		}
		want := bytes.Clone(s.truth)
		if sb.Len() != len(want) || !bytes.Equal(sb.Bytes(), want) {
			s.fatalf("Open: %d bytes, not the file's %d", sb.Len(), len(want))
		}
		s.sealed = append(s.sealed, &opSealed{s: sb, want: want})
	case opMapAccess:
		a := next(p, 6)
		if len(s.maps) == 0 {
			return
		}
		s.mapAccess(s.maps[int(a[0])%len(s.maps)], a[1]%3, u16(a[2:]), u16(a[4:]))
	case opSealedRead:
		a := next(p, 5)
		if len(s.sealed) == 0 {
			return
		}
		x := s.sealed[int(a[0])%len(s.sealed)]
		// No guard: a Sealed cannot fault. If it did, the fuzzer dies here.
		if !bytes.Equal(x.s.Bytes(), x.want) || !bytes.Equal(x.want, s.truth[:min(len(x.want), len(s.truth))]) || len(s.truth) != len(x.want) {
			s.fatalf("a Sealed's bytes changed, or the file did under it")
		}
		off, n := int64(u16(a[1:])%(len(x.want)+2)), u16(a[3:])%(len(x.want)+2)
		buf := make([]byte, n)
		k, err := x.s.ReadAt(buf, off)
		s.logf("sealed read %d at %d: %d, %v", n, off, k, err)
		s.checkReaderAt(k, err, buf, int(off), len(x.want), x.want)
	case opClose:
		which := int(next(p, 1)[0])
		total := len(s.maps) + len(s.sealed)
		if total == 0 {
			return
		}
		i := which % total
		var err error
		if i < len(s.maps) {
			m := s.maps[i].m
			s.maps = append(s.maps[:i], s.maps[i+1:]...)
			err = m.Close()
			if again := m.Close(); !errors.Is(again, os.ErrClosed) {
				s.fatalf("second Close of a Mapping: %v", again)
			}
			if _, rerr := m.ReadAt(make([]byte, 1), 0); m.Len() > 0 && !errors.Is(rerr, os.ErrClosed) {
				s.fatalf("ReadAt after Close: %v", rerr)
			}
		} else {
			i -= len(s.maps)
			sb := s.sealed[i].s
			s.sealed = append(s.sealed[:i], s.sealed[i+1:]...)
			err = sb.Close()
			if again := sb.Close(); !errors.Is(again, os.ErrClosed) {
				s.fatalf("second Close of a Sealed: %v", again)
			}
		}
		s.logf("close %d: %v", which, err)
		if err != nil {
			s.fatalf("Close: %v", err)
		}
	}
}

// mapAccess runs one access on a Mapping and checks it against the file.
func (s *opState) mapAccess(x *opMapping, kind byte, off, n int) {
	m := x.m
	size := len(s.truth)
	switch kind {
	case 0: // ReadAt
		off %= m.Len() + 2
		n %= m.Len() + 2
		buf := make([]byte, n)
		k, err := m.ReadAt(buf, int64(off))
		s.logf("mapping read %d at %d (Len %d, file %d): %d, %v", n, off, m.Len(), size, k, err)
		end := min(off+n, m.Len())
		if n == 0 && off > size && off < m.Len() && errors.Is(err, sealbuf.ErrTruncated) {
			return // an empty read past the current end: ErrTruncated or (0, nil) are both fair
		}
		if off < m.Len() && end > size && n > 0 {
			if !errors.Is(err, sealbuf.ErrTruncated) || k != 0 {
				s.fatalf("ReadAt touching bytes past the end: %d, %v; want 0, ErrTruncated", k, err)
			}
			return
		}
		s.checkReaderAt(k, err, buf, off, m.Len(), s.truth)
	case 1: // WriteAt
		off %= m.Len() + 2
		n %= m.Len() + 2
		data := bytes.Repeat([]byte{byte(0x40 + len(s.log)%64)}, n)
		k, err := m.WriteAt(data, int64(off))
		s.logf("mapping write %d at %d (Len %d, file %d, writable %v): %d, %v", n, off, m.Len(), size, x.writable, k, err)
		// Sealed against future writes since Map, a Mapping that had to
		// remap its poisoned tail (on any access) turns read-only for
		// good: the kernel refuses new writable mappings.
		futureWrite := x.writable && s.seals().Has(memfd.SealFutureWrite)
		turned := futureWrite && n > 0 && off+n <= m.Len() && off+n <= size && err != nil && !errors.Is(err, sealbuf.ErrTruncated)
		if turned {
			x.writable = false
		}
		switch {
		case turned:
			if k != 0 {
				s.fatalf("WriteAt on a Mapping turned read-only: %d, %v", k, err)
			}
		case futureWrite && n == 0 && off <= m.Len() && err != nil:
			// An empty write to a Mapping that may have turned read-only.
		case !x.writable || off+n > m.Len():
			if err == nil || k != 0 {
				s.fatalf("WriteAt that cannot be done: %d, %v", k, err)
			}
		case n == 0:
			if err != nil || k != 0 {
				s.fatalf("empty WriteAt: %d, %v", k, err)
			}
		case off+n > size:
			if !errors.Is(err, sealbuf.ErrTruncated) || k != 0 {
				s.fatalf("WriteAt touching bytes past the end: %d, %v; want 0, ErrTruncated", k, err)
			}
			if errors.Is(err, io.EOF) {
				s.fatalf("WriteAt: a truncation is not io.EOF: %v", err)
			}
		default:
			if err != nil || k != n {
				s.fatalf("WriteAt below the end: %d, %v", k, err)
			}
		}
		old := s.truth
		s.refresh()
		if err != nil && !errors.Is(err, sealbuf.ErrTruncated) && !bytes.Equal(old, s.truth) {
			s.fatalf("a refused WriteAt changed the file")
		}
		if err == nil && n > 0 && !bytes.Equal(s.truth[off:off+n], data) {
			s.fatalf("WriteAt: the file does not hold the bytes written")
		}
	case 2: // Access to the whole window
		var window []byte
		err := m.Access(func(b []byte) error {
			window = bytes.Clone(b)
			return nil
		})
		s.logf("mapping access (Len %d, file %d): %v", m.Len(), size, err)
		switch {
		case m.Len() == 0:
			if err != nil {
				s.fatalf("Access of a 0-byte Mapping: %v", err)
			}
		case size < m.Len():
			if !errors.Is(err, sealbuf.ErrTruncated) {
				s.fatalf("Access with the file shorter than the Mapping: %v, want ErrTruncated", err)
			}
		default:
			if err != nil || !bytes.Equal(window, s.truth[:m.Len()]) {
				s.fatalf("Access below the end: %v (bytes equal: %v)", err, bytes.Equal(window, s.truth[:m.Len()]))
			}
		}
	}
}

// checkReaderAt checks an io.ReaderAt result of reading len(buf) bytes at
// off from something length bytes long whose bytes are want.
func (s *opState) checkReaderAt(k int, err error, buf []byte, off, length int, want []byte) {
	s.t.Helper()
	n := len(buf)
	switch {
	case off >= length:
		if k != 0 || err != io.EOF {
			s.fatalf("read at %d of %d: %d, %v; want 0, io.EOF", off, length, k, err)
		}
	case off+n > length:
		if k != length-off || err != io.EOF {
			s.fatalf("read crossing the end: %d, %v; want %d, io.EOF", k, err, length-off)
		}
	default:
		if k != n || err != nil {
			s.fatalf("read: %d, %v; want %d, nil", k, err, n)
		}
	}
	if k > 0 && !bytes.Equal(buf[:k], want[off:off+k]) {
		s.fatalf("read %d bytes at %d: not the file's bytes", k, off)
	}
}

func (s *opState) closeAll() {
	for _, x := range s.maps {
		if err := x.m.Close(); err != nil {
			s.fatalf("close Mapping: %v", err)
		}
	}
	for _, x := range s.sealed {
		if err := x.s.Close(); err != nil {
			s.fatalf("close Sealed: %v", err)
		}
	}
	s.maps, s.sealed = nil, nil
	s.owner.Close()
	s.second.Close()
}
