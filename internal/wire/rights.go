//go:build linux

package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MaxFiles is the kernel's limit of descriptors in one message (SCM_MAX_FD).
const MaxFiles = 253

// Space returns the control buffer size that holds n descriptors.
func Space(n int) int { return unix.CmsgSpace(n * 4) }

var hdrLen = unix.CmsgLen(0)

// AppendRights appends one SCM_RIGHTS control message carrying fds to buf.
func AppendRights(buf []byte, fds []int) []byte {
	if len(fds) == 0 {
		return buf
	}
	start := len(buf)
	buf = append(buf, make([]byte, Space(len(fds)))...)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&buf[start]))
	h.Level = unix.SOL_SOCKET
	h.Type = unix.SCM_RIGHTS
	h.SetLen(unix.CmsgLen(len(fds) * 4))
	data := buf[start+hdrLen:]
	for i, fd := range fds {
		binary.NativeEndian.PutUint32(data[4*i:], uint32(fd))
	}
	return buf
}

// ErrMalformed is matched by errors for control data that does not parse.
var ErrMalformed = errors.New("malformed control message")

// ParseRights appends to fds every descriptor carried by SCM_RIGHTS messages
// in oob: ParseControl for callers that enabled no socket option that adds
// descriptors of its own (it drops those of SCM_PIDFD: see ParseControl).
func ParseRights(oob []byte, fds []int) ([]int, error) {
	fds, _, err := ParseControl(oob, fds, nil)
	return fds, err
}

// ParseControl parses the control data of one recvmsg. It appends to rights
// every descriptor carried by SCM_RIGHTS messages (the peer's), and to other
// every descriptor the kernel installed for another reason — SCM_PIDFD, sent
// with every message to a socket with SO_PASSPIDFD — which the caller must
// close: every descriptor installed is someone's to close. Control messages
// that carry no descriptors (SCM_CREDENTIALS, SCM_SECURITY: socket options
// of the receiver) are skipped.
//
// It returns the descriptors found even when it also returns an error, so
// the caller can close them: a malformed or unexpected control message after
// a good one must not leak the good one's descriptors.
func ParseControl(oob []byte, rights, other []int) ([]int, []int, error) {
	var err error
	for len(oob) > 0 {
		if len(oob) < hdrLen {
			return rights, other, fmt.Errorf("%d trailing bytes: %w", len(oob), ErrMalformed)
		}
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if uint64(h.Len) > uint64(len(oob)) || l < hdrLen {
			return rights, other, fmt.Errorf("control message length %d with %d bytes left: %w", h.Len, len(oob), ErrMalformed)
		}
		data := oob[hdrLen:l]
		switch {
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_RIGHTS:
			if len(data)%4 != 0 {
				err = fmt.Errorf("SCM_RIGHTS of %d bytes: %w", len(data), ErrMalformed)
			}
			for ; len(data) >= 4; data = data[4:] {
				rights = append(rights, int(int32(binary.NativeEndian.Uint32(data))))
			}
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_PIDFD:
			if len(data) == 4 {
				other = append(other, int(int32(binary.NativeEndian.Uint32(data))))
			} else if err == nil {
				err = fmt.Errorf("SCM_PIDFD of %d bytes: %w", len(data), ErrMalformed)
			}
		case h.Level == unix.SOL_SOCKET && (h.Type == unix.SCM_CREDENTIALS || h.Type == unix.SCM_SECURITY):
		default:
			if err == nil {
				err = fmt.Errorf("unexpected control message level %d type %d: %w", h.Level, h.Type, ErrMalformed)
			}
		}
		next := unix.CmsgSpace(l - hdrLen)
		if next > len(oob) {
			next = len(oob)
		}
		oob = oob[next:]
	}
	return rights, other, err
}

// ControlSlack is the room a control buffer keeps beyond Space(n) for what
// the receiver's own socket options add to every message (an SCM_PIDFD, an
// SCM_CREDENTIALS), so that they do not truncate the peer's descriptors.
var ControlSlack = unix.CmsgSpace(4) + unix.CmsgSpace(int(unsafe.Sizeof(unix.Ucred{}))) + unix.CmsgSpace(64)
