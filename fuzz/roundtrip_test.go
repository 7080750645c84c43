//go:build linux

package fuzz

import (
	"bytes"
	"errors"
	"io"
	"runtime/debug"
	"testing"
	"time"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/sealtest"
)

// roundTripSizes are the sizes of the Sealed buffers FuzzConnRoundTrip sends,
// made once per process: buffer i holds byte i+1 throughout, so each arrives
// recognisable.
var roundTripSizes = []int{0, 1, 4095, 4096, 65537}

// FuzzConnRoundTrip sends a fuzz-chosen sequence of messages through a real
// socket pair ("unix" stream framing, or "unixpacket") with Conn.Send and
// receives them with Conn.Receive: random header lengths (0 to 64 KiB),
// random descriptor counts (0 to 6, or 253) and receive buffers that are
// sometimes too short. Every message must arrive in order, whole, with its
// buffers' sizes and bytes; a short buffer must fail with io.ErrShortBuffer
// and leave the next message intact; the end is io.EOF; nothing leaks.
//
// spec is read four bytes per message: header length (u16, scaled by
// spec[0]&3: ×1, ×1, ×16, or 0), descriptors (b2%8: 0-5 as is, 6 → 6, 7 →
// 253) and their buffers (b2>>3), and the receive buffer (b3%4: exact,
// larger, one byte short, empty).
func FuzzConnRoundTrip(f *testing.F) {
	bufs := make([]*sealbuf.Sealed, len(roundTripSizes))
	for i, n := range roundTripSizes {
		s, err := sealbuf.FromBytes(bytes.Repeat([]byte{byte(i + 1)}, n))
		if err != nil {
			f.Fatal(err)
		}
		bufs[i] = s
		f.Cleanup(func() { s.Close() })
	}

	seed(f, "one-buffer-stream", []byte{5, 0, 1, 0}, true)
	seed(f, "one-buffer-packet", []byte{5, 0, 1, 0}, false)
	seed(f, "empty-messages-stream", []byte{0, 0, 0, 0, 0, 0, 3, 1}, true)  // empty header, no buffers; then empty header, 3 buffers
	seed(f, "empty-packet-refused", []byte{0, 0, 0, 0}, false)              // refused by Send on unixpacket
	seed(f, "max-descriptors-stream", []byte{1, 0, 7, 0, 3, 0, 2, 0}, true) // 253 descriptors
	seed(f, "max-descriptors-packet", []byte{1, 0, 7, 0, 3, 0, 2, 0}, false)
	seed(f, "short-buffer-stream", []byte{0xff, 0xff, 0x21, 2, 10, 0, 1, 0}, true) // 64 KiB header into a short buffer, then the next
	seed(f, "short-buffer-packet", []byte{0xff, 0xff, 0x21, 2, 10, 0, 1, 0}, false)
	seed(f, "scaled-header-stream", []byte{2, 0x10, 0x0e, 1, 9, 9, 0x25, 3, 0, 0, 0, 0}, true) // ×16 header, then an empty buffer
	seed(f, "mixed-packet", []byte{100, 0, 0x34, 3, 7, 0, 0x0d, 1}, false)

	f.Fuzz(func(t *testing.T, spec []byte, stream bool) {
		if len(spec) > 64 {
			return
		}
		defer debug.SetGCPercent(debug.SetGCPercent(-1))
		fds, maps := openFDs(), sealtest.CountMaps()

		network := "unixpacket"
		if stream {
			network = "unix"
		}
		a, b, err := sealtest.SocketPair(network)
		if err != nil {
			t.Fatal(err)
		}
		sender, receiver := sealbuf.NewConn(a), sealbuf.NewConn(b)

		type message struct {
			header []byte
			bufs   []int // indexes into bufs
			recv   int   // receive buffer size
			refuse bool  // Send must refuse it
		}
		var msgs []message
		for i := 0; i+4 <= len(spec); i += 4 {
			s := spec[i : i+4]
			n := int(s[0]) | int(s[1])<<8
			switch s[0] & 3 {
			case 2:
				n = min(n*16, 64<<10)
			case 3:
				n = 0
			}
			count := int(s[2] % 8)
			if count == 7 {
				count = 253
			}
			m := message{header: sealtest.Pattern(int64(i), n)}
			for j := range count {
				m.bufs = append(m.bufs, (int(s[2]>>3)+j)%len(bufs))
			}
			switch s[3] % 4 {
			case 0:
				m.recv = n
			case 1:
				m.recv = n + 100
			case 2:
				m.recv = max(n-1, 0)
			}
			m.refuse = !stream && n == 0 && count == 0
			msgs = append(msgs, m)
		}

		// The sender runs alongside: a 64 KiB header does not fit a stream
		// socket's buffer at once.
		sent := make(chan error, 1)
		go func() {
			defer sender.Close()
			for _, m := range msgs {
				send := make([]*sealbuf.Sealed, len(m.bufs))
				for j, k := range m.bufs {
					send[j] = bufs[k]
				}
				err := sender.Send(m.header, send...)
				if m.refuse != (err != nil) {
					sent <- err
					return
				}
			}
			sent <- nil
		}()

		b.SetReadDeadline(time.Now().Add(20 * time.Second))
		for i, m := range msgs {
			if m.refuse {
				continue
			}
			h := make([]byte, m.recv)
			n, got, err := receiver.Receive(h)
			if m.recv < len(m.header) {
				if !errors.Is(err, io.ErrShortBuffer) || got != nil {
					t.Fatalf("message %d: %d-byte header into %d bytes: %v, %d buffers", i, len(m.header), m.recv, err, len(got))
				}
				continue
			}
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if !bytes.Equal(h[:n], m.header) {
				t.Fatalf("message %d: header of %d bytes, want %d (out of step?)", i, n, len(m.header))
			}
			if len(got) != len(m.bufs) {
				t.Fatalf("message %d: %d buffers, want %d", i, len(got), len(m.bufs))
			}
			for j, g := range got {
				k := m.bufs[j]
				if g.Len() != roundTripSizes[k] || g.Len() > 0 && (g.Bytes()[0] != byte(k+1) || g.Bytes()[g.Len()-1] != byte(k+1)) {
					t.Fatalf("message %d, buffer %d: %d bytes, want %d of %d", i, j, g.Len(), roundTripSizes[k], k+1)
				}
				if err := g.Close(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := <-sent; err != nil {
			t.Fatalf("Send: %v", err)
		}
		if _, got, err := receiver.Receive(make([]byte, 16)); err != io.EOF || got != nil {
			t.Fatalf("after the last message: %v, %d buffers; want io.EOF", err, len(got))
		}
		receiver.Close()
		if leak := leakedSince(fds); leak != "" {
			t.Fatal(leak)
		}
		if now := sealtest.CountMaps(); now != maps {
			t.Fatalf("%d memfd mappings, %d before", now, maps)
		}
	})
}
