package wire

import (
	"encoding/binary"
	"fmt"
)

// FrameLen is the size of the prefix that starts every message on a stream
// socket.
const FrameLen = 8

// MaxHeader is the largest header a frame may announce (16 MiB): a bound on
// what a hostile peer can make the receiver read and discard.
const MaxHeader = 16 << 20

// The frame prefix, little-endian:
//
//	bytes 0-3  header length in bytes (uint32, at most MaxHeader)
//	bytes 4-5  number of descriptors (uint16, at most MaxFiles)
//	bytes 6-7  magic 'S' 'B'
//
// The header bytes follow at once. The SCM_RIGHTS control message travels
// with the prefix in the same sendmsg, so the kernel delivers the
// descriptors with the prefix's first byte; the receiver never reads past
// the end of a frame, so descriptors cannot slip into another message.
type Frame struct {
	HeaderLen int
	Files     int
}

// Append appends the encoded prefix to buf.
func (f Frame) Append(buf []byte) []byte {
	buf = binary.LittleEndian.AppendUint32(buf, uint32(f.HeaderLen))
	buf = binary.LittleEndian.AppendUint16(buf, uint16(f.Files))
	return append(buf, 'S', 'B')
}

// ParseFrame decodes a prefix, refusing lengths and counts over the limits.
func ParseFrame(b []byte) (Frame, error) {
	if len(b) < FrameLen {
		return Frame{}, fmt.Errorf("frame prefix of %d bytes, want %d: %w", len(b), FrameLen, ErrMalformed)
	}
	if b[6] != 'S' || b[7] != 'B' {
		return Frame{}, fmt.Errorf("bad frame magic %q (is the peer speaking sealbuf's stream framing?): %w", b[6:8], ErrMalformed)
	}
	f := Frame{
		HeaderLen: int(binary.LittleEndian.Uint32(b)),
		Files:     int(binary.LittleEndian.Uint16(b[4:])),
	}
	if f.HeaderLen > MaxHeader {
		return Frame{}, fmt.Errorf("frame announces a %d-byte header, more than %d: %w", f.HeaderLen, MaxHeader, ErrMalformed)
	}
	if f.Files > MaxFiles {
		return Frame{}, fmt.Errorf("frame announces %d descriptors, more than %d: %w", f.Files, MaxFiles, ErrMalformed)
	}
	return f, nil
}
