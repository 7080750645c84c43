//go:build linux

package bench

import (
	"net"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/handoff"
	"github.com/sealbuf/sealbuf/memfd"
	"github.com/sealbuf/sealbuf/sigbus"
)

// BenchmarkBuild makes a sealed buffer holding bytes the caller already
// has, the two ways the library offers: pwrite is FromBytes (write into a
// fresh memfd, no mapping), mapping is New, copy into Bytes, Seal. Each op
// also closes the result. floor is pwrite in raw calls (memfd_create,
// pwrite, F_ADD_SEALS, close). reserve is an experiment kept out of the
// library (issue #14): handoff.Reserve.FromBytes, pwrite into a memfd whose
// pages were allocated ahead, sealed in raw calls and returned as an
// *os.File (no Sealed wrapper, no F_GET_SEALS read-back).
func BenchmarkBuild(b *testing.B) {
	for _, size := range sizes {
		src := make([]byte, size)
		handoff.Fill(src, 1)
		b.Run("pwrite/"+sizeName(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				s, err := sealbuf.FromBytes(src)
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
		})
		b.Run("floor/"+sizeName(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				fd, err := unix.MemfdCreate("sealbuf", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_NOEXEC_SEAL)
				if err != nil {
					b.Fatal(err)
				}
				for off := 0; off < size; {
					n, err := unix.Pwrite(fd, src[off:], int64(off))
					if err != nil {
						b.Fatal(err)
					}
					off += n
				}
				if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
					b.Fatal(err)
				}
				unix.Close(fd)
			}
		})
		b.Run("reserve/"+sizeName(size), func(b *testing.B) {
			// handoff.Reserve.FromBytes with the reserve full before
			// each op (untimed): the pwrite into pages allocated ahead.
			r, err := handoff.NewReserve(size, 2)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				for r.Ready() < 2 {
					time.Sleep(10 * time.Microsecond)
				}
				b.StartTimer()
				f, err := r.FromBytes(src)
				if err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		})
		b.Run("mapping/"+sizeName(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				buf, err := sealbuf.New(size)
				if err != nil {
					b.Fatal(err)
				}
				copy(buf.Bytes(), src)
				s, err := buf.Seal()
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
		})
	}
}

// sealedFile returns a sealed memfd of size bytes, closed at the end of b.
func sealedFile(b *testing.B, size int) *sealbuf.Sealed {
	b.Helper()
	src := make([]byte, size)
	handoff.Fill(src, 1)
	s, err := sealbuf.FromBytes(src)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// dupFd duplicates s's descriptor (close-on-exec), as a receiver gets it.
func dupFd(b *testing.B, s *sealbuf.Sealed) int {
	fd := -1
	err := s.File().Control(func(f int) error {
		var err error
		fd, err = unix.FcntlInt(uintptr(f), unix.F_DUPFD_CLOEXEC, 0)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return fd
}

// BenchmarkOpen is the consumer's fixed cost per buffer, the pages not
// touched: sealbuf is Open+Close of a fresh descriptor (a dup, as received),
// floor the same checks and mapping in raw calls (fstat, F_GET_SEALS, mmap,
// munmap, close), adopt memfd.FromFile alone (the "is it a memfd" checks).
// dup is the cost of the dup all three include.
func BenchmarkOpen(b *testing.B) {
	const size = 1 << 20
	s := sealedFile(b, size)
	b.Run("sealbuf", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			o, err := sealbuf.Open(os.NewFile(uintptr(dupFd(b, s)), "dup"))
			if err != nil {
				b.Fatal(err)
			}
			o.Close()
		}
	})
	b.Run("adopt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			f, err := memfd.FromFile(os.NewFile(uintptr(dupFd(b, s)), "dup"))
			if err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	b.Run("floor", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			fd := dupFd(b, s)
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil {
				b.Fatal(err)
			}
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0); err != nil {
				b.Fatal(err)
			}
			p, err := unix.MmapPtr(fd, 0, nil, uintptr(st.Size), unix.PROT_READ, unix.MAP_SHARED)
			if err != nil {
				b.Fatal(err)
			}
			unix.MunmapPtr(p, uintptr(st.Size))
			unix.Close(fd)
		}
	})
	b.Run("dup", func(b *testing.B) {
		for b.Loop() {
			unix.Close(dupFd(b, s))
		}
	})
}

// BenchmarkAccess is Mapping.ReadAt of 1 byte and 4 KiB: unguarded on a
// memfd sealed against shrinking (no fault possible, no guard), guarded on
// an unsealed one (fault guard, then a size check).
func BenchmarkAccess(b *testing.B) {
	const size = 1 << 20
	for _, kind := range []string{"unguarded", "guarded"} {
		fd, err := unix.MemfdCreate("sealbuf-bench", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			b.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "memfd")
		if err := f.Truncate(size); err != nil {
			b.Fatal(err)
		}
		if kind == "unguarded" {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK); err != nil {
				b.Fatal(err)
			}
		}
		m, err := sealbuf.Map(f)
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range []int{1, 4 << 10} {
			p := make([]byte, n)
			b.Run(kind+"/"+sizeName(n), func(b *testing.B) {
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := m.ReadAt(p, 4096); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		m.Close()
	}
}

// BenchmarkGuard is sigbus.Guard alone around a 1-byte copy: the part of
// a guarded access that is the fault guard (the rest is the size check).
func BenchmarkGuard(b *testing.B) {
	mem := make([]byte, 4096)
	p := make([]byte, 1)
	b.ReportAllocs()
	for b.Loop() {
		if err := sigbus.Guard(mem, func() { copy(p, mem[100:]) }); err != nil {
			b.Fatal(err)
		}
	}
}

// connPair returns two sealbuf Conns over a unixpacket socket pair.
func connPair(b *testing.B) (*sealbuf.Conn, *sealbuf.Conn) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	var conns [2]*sealbuf.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = sealbuf.NewConn(c.(*net.UnixConn))
	}
	b.Cleanup(func() { conns[0].Close(); conns[1].Close() })
	return conns[0], conns[1]
}

// BenchmarkSendReceive is one message through a socket pair in one
// process, no payload bytes touched: descriptors-only sends one 4 KiB
// sealed buffer and an 8-byte header (Send, Receive, which verifies and
// maps it, Close of what was received); header-only sends no buffer; floor
// is descriptors-only in raw calls. allocs/op is steady-state Send+Receive.
func BenchmarkSendReceive(b *testing.B) {
	s := sealedFile(b, 4096)
	b.Run("descriptors-only", func(b *testing.B) {
		tx, rx := connPair(b)
		hdr := make([]byte, 8)
		b.ReportAllocs()
		for b.Loop() {
			if err := tx.Send(hdr, s); err != nil {
				b.Fatal(err)
			}
			_, bufs, err := rx.Receive(hdr)
			if err != nil || len(bufs) != 1 {
				b.Fatal(err, len(bufs))
			}
			bufs[0].Close()
		}
	})
	b.Run("header-only", func(b *testing.B) {
		tx, rx := connPair(b)
		hdr := make([]byte, 8)
		b.ReportAllocs()
		for b.Loop() {
			if err := tx.Send(hdr); err != nil {
				b.Fatal(err)
			}
			if _, _, err := rx.Receive(hdr); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("floor", func(b *testing.B) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer unix.Close(fds[0])
		defer unix.Close(fds[1])
		hdr := make([]byte, 8)
		oob := make([]byte, unix.CmsgSpace(4))
		roob := make([]byte, unix.CmsgSpace(4))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		h.Level, h.Type = unix.SOL_SOCKET, unix.SCM_RIGHTS
		h.SetLen(unix.CmsgLen(4))
		b.ReportAllocs()
		for b.Loop() {
			err := s.File().Control(func(fd int) error {
				//iosafety:allow fd-escape the number is sent from oob inside this callback, never used after it
				*(*int32)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) = int32(fd)
				_, err := unix.SendmsgN(fds[0], hdr, oob, nil, unix.MSG_NOSIGNAL)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			_, oobn, _, _, err := unix.Recvmsg(fds[1], hdr, roob, unix.MSG_CMSG_CLOEXEC)
			if err != nil || oobn != len(roob) {
				b.Fatal(err, oobn)
			}
			fd := int(*(*int32)(unsafe.Pointer(&roob[unix.CmsgLen(0)])))
			var st unix.Stat_t
			unix.Fstat(fd, &st)
			unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
			p, err := unix.MmapPtr(fd, 0, nil, uintptr(st.Size), unix.PROT_READ, unix.MAP_SHARED)
			if err != nil {
				b.Fatal(err)
			}
			unix.MunmapPtr(p, uintptr(st.Size))
			unix.Close(fd)
		}
	})
}
