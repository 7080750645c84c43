//go:build linux

package fuzz

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/wire"
	"github.com/sealbuf/sealbuf/memfd"
	"github.com/sealbuf/sealbuf/sealtest"
)

// attachable are the descriptors FuzzReceiveStream attaches to its chunks:
// made once per process and sent again and again (the receiver gets new
// descriptors each time).
var attachable = []sealtest.Desc{
	sealtest.Sealed(64),
	sealtest.Sealed(0),
	sealtest.Unsealed(64),
	sealtest.PartlySealed(64),
	sealtest.Large(1 << 30),
	sealtest.Pipe(),
	sealtest.DevZero(),
	sealtest.Sealed(3 * 4096),
}

func makeAttachable(f *testing.F) []*os.File {
	files := make([]*os.File, len(attachable))
	for i, d := range attachable {
		files[i] = d.File(f)
	}
	return files
}

// FuzzReceiveStream sends arbitrary bytes over a real "unix" stream socket
// into Conn.Receive, cut into chunks that plan chooses, each chunk with real
// descriptors attached (memfds sealed or not, oversized, a pipe,
// /dev/zero), then hangs up. Receive must not panic or hang, must leak no
// descriptor and no mapping, and must fail only with errors of documented
// kinds (see allowedReceiveError).
//
// plan is read two bytes per chunk: the chunk's length (1 + b0%64, the last
// chunk taking the rest), and b1: the number of descriptors (b1>>5, 0-7) and
// which ones (from attachable, starting at b1%8). opts picks the Conn's
// limits: descriptors per message (1 + opts%8, or 253 when opts&0x80) and the
// header buffer (opts>>3&0xf * 8 bytes).
func FuzzReceiveStream(f *testing.F) {
	files := makeAttachable(f)
	frame := func(headerLen, n int) []byte { return wire.Frame{HeaderLen: headerLen, Files: n}.Append(nil) }
	msg := func(header string, n int) []byte { return append(frame(len(header), n), header...) }

	seed(f, "hello", msg("hello", 0), []byte{}, byte(0x80|0x10))
	seed(f, "hello-sealed", msg("hello", 1), []byte{12, 0x20}, byte(0x80|0x10))
	seed(f, "three-messages", concat(msg("one", 2), msg("two", 1), msg("", 0)), []byte{10, 0x40, 9, 0x22, 7, 0}, byte(0x80|0x10))
	seed(f, "unsealed", msg("unsealed", 1), []byte{15, 0x22}, byte(0x10))
	seed(f, "too-large", msg("large", 1), []byte{12, 0x24}, byte(0x10))
	seed(f, "pipe-and-dev-zero", msg("pipe and zero", 2), []byte{20, 0x45}, byte(0x10))
	seed(f, "short-buffer", msg("a header longer than the buffer", 1), []byte{38, 0x20}, byte(0x08))
	seed(f, "too-many", msg("too many", 7), []byte{15, 0xe0}, byte(0x01|0x10))
	seed(f, "split-header", msg("split", 3), []byte{2, 0x20, 3, 0x21, 5, 0x27}, byte(0x80|0x10))
	seed(f, "announces-more", msg("announces more", 3), []byte{21, 0x20}, byte(0x80|0x10))
	seed(f, "cut-short", frame(1000, 0), []byte{}, byte(0x80|0x10))
	seed(f, "header-over-limit", frame(wire.MaxHeader+1, 0), []byte{}, byte(0x80|0x10))
	seed(f, "garbage", []byte("GARBAGE!GARBAGE!"), []byte{3, 0x20}, byte(0x80))
	seed(f, "sealed-pages", msg("sealed pages", 1), []byte{20, 0x27}, byte(0x80|0x10))
	seed(f, "magic-only", []byte("SB"), []byte{1, 0x20}, byte(0))

	f.Fuzz(func(t *testing.T, data, plan []byte, opts byte) {
		// Bigger inputs reach nothing new (a frame may announce up to 16
		// MiB, and a cut-short one fails the same way) but make the
		// fuzzer's minimisation of each new input take tens of seconds.
		if len(data) > 512 || len(plan) > 32 {
			return
		}
		defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no finalizer may hide a leak
		fds, maps := openFDs(), sealtest.CountMaps()

		send, recv := streamPair(t)
		maxFiles := 1 + int(opts%8)
		if opts&0x80 != 0 {
			maxFiles = wire.MaxFiles
		}
		conn := sealbuf.NewConn(recv, sealbuf.WithMaxFiles(maxFiles), sealbuf.WithReceivePolicy(sealbuf.MaxSize(1<<20)))

		sendChunks(t, send, data, plan, files)
		send.Close()

		header := make([]byte, int(opts>>3&0xf)*8)
		recv.SetReadDeadline(time.Now().Add(2 * time.Second))
		for i := 0; ; i++ {
			if i > len(data)+2 {
				t.Fatalf("Receive made no progress: %d calls for %d bytes", i, len(data))
			}
			n, bufs, err := conn.Receive(header)
			if n < 0 || n > len(header) {
				t.Fatalf("Receive returned n = %d for a %d-byte buffer", n, len(header))
			}
			for _, b := range bufs {
				if b.Len() > 1<<20 {
					t.Fatalf("Receive returned a %d-byte buffer, policy 1 MiB", b.Len())
				}
				_ = b.Bytes() // mapped, and readable without a fault
				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if err == nil {
				continue
			}
			if bufs != nil {
				t.Fatalf("Receive returned %d buffers with an error: %v", len(bufs), err)
			}
			if !allowedReceiveError(err) {
				t.Fatalf("Receive: error of no documented kind: %v", err)
			}
			if errors.Is(err, io.EOF) { // the end (io.ErrUnexpectedEOF is not io.EOF)
				break
			}
		}
		conn.Close()
		if leak := leakedSince(fds); leak != "" {
			t.Fatal(leak)
		}
		if now := sealtest.CountMaps(); now != maps {
			t.Fatalf("%d memfd mappings, %d before", now, maps)
		}
	})
}

func concat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// allowedReceiveError reports whether err is of a kind Receive documents:
// end of stream, a frame cut short, a short header buffer, a descriptor
// refused by the policy, a malformed frame, or too many descriptors.
func allowedReceiveError(err error) bool {
	for _, kind := range []error{
		io.EOF, io.ErrUnexpectedEOF, io.ErrShortBuffer,
		sealbuf.ErrNotSealed, sealbuf.ErrTooLarge, memfd.ErrNotMemfd,
		wire.ErrMalformed,
	} {
		if errors.Is(err, kind) {
			return true
		}
	}
	// Too many descriptors has no sentinel: recognise its text.
	msg := err.Error()
	return strings.Contains(msg, "MSG_CTRUNC") ||
		strings.Contains(msg, "more than") && strings.Contains(msg, "descriptors")
}

// streamPair returns a connected "unix" stream pair: the sending end as a
// plain *os.File for raw sendmsg, the receiving end as a *net.UnixConn.
func streamPair(t *testing.T) (*os.File, *net.UnixConn) {
	s, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	send := os.NewFile(uintptr(s[0]), "fuzz-send")
	rf := os.NewFile(uintptr(s[1]), "fuzz-recv")
	c, err := net.FileConn(rf)
	rf.Close()
	if err != nil {
		send.Close()
		t.Fatal(err)
	}
	return send, c.(*net.UnixConn)
}

// sendChunks sends data in the chunks plan describes, with descriptors
// attached. It stops early when the socket buffer is full (the receiver is
// not reading yet).
func sendChunks(t *testing.T, send *os.File, data, plan []byte, files []*os.File) {
	for len(data) > 0 {
		k, nfds, first := len(data), 0, 0
		if len(plan) >= 2 {
			k = min(k, 1+int(plan[0]%64))
			nfds, first = int(plan[1]>>5), int(plan[1]%8)
			plan = plan[2:]
		}
		var chunkFiles []*os.File
		for j := range nfds {
			chunkFiles = append(chunkFiles, files[(first+j)%len(files)])
		}
		err := borrowAll(chunkFiles, func(fds []int) error {
			var oob []byte
			if len(fds) > 0 {
				oob = unix.UnixRights(fds...)
			}
			return control(send, func(fd int) error {
				n, err := wire.Sendmsg(fd, [][]byte{data[:k]}, oob)
				if err == nil && n != k {
					data = data[:0] // a short write: the buffer is full
				}
				return err
			})
		})
		if errors.Is(err, unix.EAGAIN) {
			return
		}
		if err != nil {
			t.Fatalf("sendmsg: %v", err)
		}
		data = data[min(k, len(data)):]
	}
}

func borrowAll(files []*os.File, fn func(fds []int) error) error {
	fds := make([]int, 0, len(files))
	var rec func(i int) error
	rec = func(i int) error {
		if i == len(files) {
			return fn(fds)
		}
		return control(files[i], func(fd int) error {
			fds = append(fds, fd)
			return rec(i + 1)
		})
	}
	return rec(0)
}

func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
