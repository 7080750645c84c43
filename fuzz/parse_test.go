//go:build linux

package fuzz

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/internal/wire"
)

// cmsg builds one control message with any level, type and length field.
func cmsg(level, typ int32, lenField uint64, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	binary.NativeEndian.PutUint64(b, lenField) // struct cmsghdr on 64-bit Linux
	binary.NativeEndian.PutUint32(b[8:], uint32(level))
	binary.NativeEndian.PutUint32(b[12:], uint32(typ))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func fdBytes(fds ...int32) []byte {
	var b []byte
	for _, fd := range fds {
		b = binary.NativeEndian.AppendUint32(b, uint32(fd))
	}
	return b
}

// FuzzParseRights feeds arbitrary bytes, as a control message from a peer,
// to wire.ParseRights, the parser Conn.Receive uses. It must not panic, must
// fail only with wire.ErrMalformed, must return at most one descriptor per 4
// bytes (appended to what the caller passed), and must agree with x/sys's
// parser wherever that one accepts the input. The numbers it returns are
// garbage and are never closed.
func FuzzParseRights(f *testing.F) {
	rights := func(fds ...int32) []byte {
		return cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, uint64(unix.CmsgLen(4*len(fds))), fdBytes(fds...))
	}
	seed(f, "empty", []byte{})
	seed(f, "one-fd", rights(3))
	seed(f, "three-fds", rights(3, 4, 5))
	seed(f, "two-messages", append(rights(3), rights(7, 8)...))
	seed(f, "rights-then-credentials", append(rights(3), cmsg(unix.SOL_SOCKET, unix.SCM_CREDENTIALS, uint64(unix.CmsgLen(12)), make([]byte, 12))...))
	seed(f, "credentials-then-rights", append(cmsg(unix.SOL_SOCKET, unix.SCM_CREDENTIALS, uint64(unix.CmsgLen(12)), make([]byte, 12)), rights(9)...))
	seed(f, "no-tail-padding", rights(3)[:unix.CmsgLen(4)])                                                        // no padding at the end
	seed(f, "short-header", rights(3)[:unix.CmsgLen(0)-1])                                                         // short header
	seed(f, "length-past-end", cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, 1<<40, fdBytes(3)))                          // length past the end
	seed(f, "length-below-header", cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, 3, fdBytes(3)))                          // length below the header
	seed(f, "not-multiple-of-4", cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, uint64(unix.CmsgLen(0)+6), fdBytes(3, 4))) // not a multiple of 4
	seed(f, "wrong-level", cmsg(unix.SOL_IP, unix.SCM_RIGHTS, uint64(unix.CmsgLen(4)), fdBytes(3)))                // wrong level
	seed(f, "odd-numbers", rights(-1, 1<<30, 0))
	seed(f, "trailing-bytes", append(rights(3), 0, 0, 0))

	f.Fuzz(func(t *testing.T, oob []byte) {
		for _, shift := range []int{0, 1, 4} { // any alignment a caller's buffer may have
			buf := make([]byte, shift+len(oob))
			b := buf[shift:]
			copy(b, oob)
			fds, err := wire.ParseRights(b, nil)
			if err != nil && !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("ParseRights: error not matching ErrMalformed: %v", err)
			}
			if len(fds) > len(oob)/4 {
				t.Fatalf("ParseRights: %d descriptors out of %d bytes", len(fds), len(oob))
			}
			if !slices.Equal(b, oob) {
				t.Fatal("ParseRights changed its input")
			}
			// Appends to the caller's slice, also on error.
			more, err2 := wire.ParseRights(b, []int{-7})
			if (err == nil) != (err2 == nil) || len(more) != 1+len(fds) || more[0] != -7 || !slices.Equal(more[1:], fds) {
				t.Fatalf("ParseRights with a non-empty slice: %v %v, then %v %v", fds, err, more, err2)
			}
			checkAgainstXSys(t, b, fds, err)
		}
	})
}

// checkAgainstXSys compares ParseRights with x/sys's ParseSocketControlMessage
// and ParseUnixRights: where those accept b, both find the same descriptors,
// and ParseRights fails exactly when b holds something other than whole
// SCM_RIGHTS messages and the receiver-side messages it knows (credentials,
// security labels, pidfds).
func checkAgainstXSys(t *testing.T, b []byte, fds []int, err error) {
	t.Helper()
	msgs, xerr := unix.ParseSocketControlMessage(b)
	if xerr != nil {
		if err == nil {
			t.Fatalf("ParseRights accepted what x/sys refuses (%v): %x", xerr, b)
		}
		return
	}
	var want []int
	clean := true
	covered := 0
	for _, m := range msgs {
		covered += unix.CmsgSpace(len(m.Data))
		if m.Header.Level == unix.SOL_SOCKET && (m.Header.Type == unix.SCM_CREDENTIALS || m.Header.Type == unix.SCM_SECURITY) {
			continue // no descriptors: skipped
		}
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_PIDFD {
			clean = clean && len(m.Data) == 4 // ParseRights drops its descriptor (ParseControl returns it)
			continue
		}
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			clean = false
			continue
		}
		if len(m.Data)%4 != 0 {
			clean = false
		}
		for d := m.Data; len(d) >= 4; d = d[4:] {
			want = append(want, int(int32(binary.NativeEndian.Uint32(d))))
		}
	}
	if covered < len(b) {
		clean = false // trailing bytes x/sys skips
	}
	if !slices.Equal(fds, want) {
		t.Fatalf("ParseRights found %v, x/sys %v, in %x", fds, want, b)
	}
	if clean != (err == nil) {
		t.Fatalf("ParseRights error %v for %x (only whole SCM_RIGHTS messages: %v)", err, b, clean)
	}
}

// FuzzParseFrame feeds arbitrary bytes, as a stream frame prefix from a
// peer, to wire.ParseFrame: no panic, only wire.ErrMalformed, and what it
// accepts is within the limits and encodes back to the same 8 bytes.
func FuzzParseFrame(f *testing.F) {
	seed(f, "valid", wire.Frame{HeaderLen: 5, Files: 1}.Append(nil))
	seed(f, "at-limits", wire.Frame{HeaderLen: wire.MaxHeader, Files: wire.MaxFiles}.Append(nil))
	seed(f, "header-over-limit", wire.Frame{HeaderLen: wire.MaxHeader + 1}.Append(nil))
	seed(f, "files-over-limit", wire.Frame{Files: wire.MaxFiles + 1}.Append(nil))
	seed(f, "garbage", []byte("GARBAGE!"))
	seed(f, "magic-only", []byte("SB"))
	seed(f, "empty", []byte{})
	seed(f, "with-header", append(wire.Frame{HeaderLen: 3}.Append(nil), "abc"...))
	seed(f, "all-ones", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 'S', 'B'})

	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := wire.ParseFrame(b)
		if err != nil {
			if !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("ParseFrame: error not matching ErrMalformed: %v", err)
			}
			if fr != (wire.Frame{}) {
				t.Fatalf("ParseFrame failed but returned %+v", fr)
			}
			ok := len(b) >= 8 && b[6] == 'S' && b[7] == 'B' &&
				binary.LittleEndian.Uint32(b) <= wire.MaxHeader && binary.LittleEndian.Uint16(b[4:]) <= wire.MaxFiles
			if ok {
				t.Fatalf("ParseFrame refused a valid prefix %x: %v", b[:8], err)
			}
			return
		}
		if len(b) < wire.FrameLen || fr.HeaderLen < 0 || fr.HeaderLen > wire.MaxHeader || fr.Files < 0 || fr.Files > wire.MaxFiles {
			t.Fatalf("ParseFrame(%x) = %+v", b, fr)
		}
		if enc := fr.Append(nil); !slices.Equal(enc, b[:wire.FrameLen]) {
			t.Fatalf("ParseFrame(%x) = %+v, which encodes as %x", b, fr, enc)
		}
	})
}
