//go:build linux

package wire

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The raw system calls below replace x/sys's SendmsgBuffers/RecvmsgBuffers,
// which add a getsockopt per call and, on non-datagram sockets, a dummy data
// byte to messages that carry only descriptors: that byte would change what
// the receiver of a unixpacket message sees. Both are non-blocking; callers
// wait through their RawConn.

// Sendmsg is sendmsg(2) of the non-empty parts (at most four) and the control
// data oob, with MSG_NOSIGNAL|MSG_DONTWAIT.
func Sendmsg(fd int, parts [][]byte, oob []byte) (int, error) {
	var iov [4]unix.Iovec
	var msg unix.Msghdr
	k := 0
	for _, p := range parts {
		if len(p) == 0 {
			continue
		}
		if k == len(iov) {
			return 0, errors.New("wire: more than four parts in one sendmsg")
		}
		iov[k].Base = &p[0]
		iov[k].SetLen(len(p))
		k++
	}
	if k > 0 {
		msg.Iov = &iov[0]
		msg.SetIovlen(k)
	}
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	n, _, e := unix.Syscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Recvmsg is recvmsg(2) into p and oob with MSG_CMSG_CLOEXEC|MSG_DONTWAIT
// added to flags. It returns the data length (a packet's full length when
// flags has MSG_TRUNC), the control length and the message flags.
func Recvmsg(fd int, p, oob []byte, flags int) (n, oobn, mflags int, err error) {
	var iov unix.Iovec
	var msg unix.Msghdr
	if len(p) > 0 {
		iov.Base = &p[0]
		iov.SetLen(len(p))
		msg.Iov = &iov
		msg.SetIovlen(1)
	}
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	r, _, e := unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), uintptr(flags|unix.MSG_CMSG_CLOEXEC|unix.MSG_DONTWAIT))
	if e != 0 {
		return 0, 0, 0, e
	}
	return int(r), int(msg.Controllen), int(msg.Flags), nil
}

// Recvmmsg is recvmmsg(2) into msgs with MSG_CMSG_CLOEXEC|MSG_DONTWAIT; it
// returns how many messages it filled.
func Recvmmsg(fd int, msgs []unix.Mmsghdr) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)),
		unix.MSG_CMSG_CLOEXEC|unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
