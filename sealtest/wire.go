//go:build linux

package sealtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/memfd"
)

// The control protocol between a Peer and its engine (a goroutine, or the
// re-executed test binary). It runs over a SOCK_SEQPACKET socket pair: one
// packet per command, [op][arguments], descriptors in SCM_RIGHTS; every
// command but opHeader gets one reply packet, [status][value u64][errno
// u32][message]. Commands are serialised by the Peer's mutex.
const (
	opHello    byte = iota + 1 // engine → Peer, once, value = pid
	opConn                     // fds [conn]: the connection to send on
	opHeader                   // bytes to append to the pending header; no reply
	opSend                     // mode u8, cut u32, keep u8, n u16, n × desc; fds: extra files
	opHangUp                   // close the connection
	opShare                    // fds [file]: hold it; value = id
	opTruncate                 // id u32, size i64
	opWrite                    // id u32, off i64, bytes
	opSize                     // id u32; value = size
	opFlap                     // id u32, cut i64, size i64
	opStopFlap                 // id u32; value = cycles
	opRelease                  // id u32: close it
	opAddSeals                 // id u32, seals u32
	opKill                     // close everything at once and stop
	opExit                     // close everything and stop
)

// Send modes.
const (
	modeFramed  byte = iota // a whole message: a packet, or a frame on a stream
	modeRaw                 // the bytes as they are, no frame prefix
	modePartial             // the first cut bytes of the framed message, then hang up
)

const (
	maxChunk     = 32 << 10 // bytes of header or data per control packet
	ctlBufSize   = maxChunk + 64
	maxCtlFiles  = 253
	descWireSize = 1 + 8 + 4
)

// frameLen is the size of the stream frame prefix (see sealbuf.Conn): header
// length as little-endian uint32, descriptor count as little-endian uint16,
// then 'S' 'B'. sealtest encodes it itself, from the documentation, so that
// a mistake in the library's encoder does not cancel out.
const frameLen = 8

func appendFrame(b []byte, headerLen, files int) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(headerLen))
	b = binary.LittleEndian.AppendUint16(b, uint16(files))
	return append(b, 'S', 'B')
}

// enc builds a command or a reply.
type enc []byte

func (e enc) u8(v byte) enc    { return append(e, v) }
func (e enc) u16(v uint16) enc { return binary.LittleEndian.AppendUint16(e, v) }
func (e enc) u32(v uint32) enc { return binary.LittleEndian.AppendUint32(e, v) }
func (e enc) u64(v uint64) enc { return binary.LittleEndian.AppendUint64(e, v) }
func (e enc) desc(d Desc) enc  { return e.u8(byte(d.kind)).u64(uint64(d.size)).u32(uint32(d.seals)) }

// dec reads a command or a reply; reading past the end sets err.
type dec struct {
	b   []byte
	err error
}

func (d *dec) take(n int) []byte {
	if d.err != nil || len(d.b) < n {
		d.err = errors.New("sealtest: short control packet")
		return make([]byte, n)
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) u8() byte    { return d.take(1)[0] }
func (d *dec) u16() uint16 { return binary.LittleEndian.Uint16(d.take(2)) }
func (d *dec) u32() uint32 { return binary.LittleEndian.Uint32(d.take(4)) }
func (d *dec) u64() uint64 { return binary.LittleEndian.Uint64(d.take(8)) }
func (d *dec) rest() []byte {
	v := d.b
	d.b = nil
	return v
}

func (d *dec) desc() Desc {
	k, size, seals := kind(d.u8()), int64(d.u64()), memfd.Seals(d.u32())
	if d.err == nil && (k == 0 || k >= kindEnd) {
		d.err = fmt.Errorf("sealtest: unknown descriptor kind %d", k)
	}
	return Desc{kind: k, size: size, seals: seals}
}

// reply encodes the result of a command.
func reply(value uint64, err error) []byte {
	if err == nil {
		return enc{0}.u64(value).u32(0)
	}
	var errno syscall.Errno
	errors.As(err, &errno)
	return append(enc{1}.u64(value).u32(uint32(errno)), err.Error()...)
}

// PeerError is the error of a command the peer ran: its message, and the
// errno when the command failed in a system call (so errors.Is(err,
// unix.EPERM) works for a Truncate a seal forbids).
type PeerError struct {
	Op    string
	Msg   string
	Errno syscall.Errno
}

func (e *PeerError) Error() string { return "sealtest: peer: " + e.Op + ": " + e.Msg }

// Unwrap returns the errno, if any.
func (e *PeerError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

func parseReply(op string, b []byte) (uint64, error) {
	d := dec{b: b}
	status, value, errno := d.u8(), d.u64(), syscall.Errno(d.u32())
	if d.err != nil {
		return 0, d.err
	}
	if status != 0 {
		return value, &PeerError{Op: op, Msg: string(d.rest()), Errno: errno}
	}
	return value, nil
}

// writeCtl sends one control packet with files' descriptors, which it
// borrows.
func writeCtl(ctl *net.UnixConn, b []byte, files []*os.File) error {
	return withFDs(files, func(fds []int) error {
		var oob []byte
		if len(fds) > 0 {
			oob = unix.UnixRights(fds...)
		}
		_, _, err := ctl.WriteMsgUnix(b, oob, nil)
		return err
	})
}

// readCtl receives one control packet into buf and returns its bytes and
// the descriptors it carried, as files the caller owns. It returns errEOF
// when the other end is gone: the net package reports the empty read as
// io.EOF, and a bare recvmsg as n == 0.
func readCtl(ctl *net.UnixConn, buf, oob []byte) ([]byte, []*os.File, error) {
	n, oobn, flags, _, err := ctl.ReadMsgUnix(buf, oob)
	if errors.Is(err, io.EOF) {
		err, n = nil, 0
	}
	files, perr := rightsFiles(oob[:oobn])
	if err == nil && flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		err = errors.New("sealtest: control packet truncated")
	}
	if err == nil {
		err = perr
	}
	if err != nil {
		closeAll(files)
		return nil, nil, err
	}
	if n == 0 {
		closeAll(files)
		return nil, nil, errEOF
	}
	return buf[:n], files, nil
}

var errEOF = errors.New("sealtest: the other end of the control socket is gone")

func rightsFiles(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "sealtest-received"))
		}
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}

// withFDs borrows the descriptors of all files at once (each through its
// own Control, so none can be closed and reused meanwhile) and calls fn.
func withFDs(files []*os.File, fn func(fds []int) error) error {
	fds := make([]int, 0, len(files))
	var borrow func(i int) error
	borrow = func(i int) error {
		if i == len(files) {
			return fn(fds)
		}
		return control(files[i], func(fd int) error {
			fds = append(fds, fd)
			return borrow(i + 1)
		})
	}
	return borrow(0)
}
