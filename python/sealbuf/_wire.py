"""The wire format, one message at a time (Go: internal/wire, under Conn
and the pool).

SOCK_SEQPACKET: one message is one packet; its payload is exactly the
header bytes, its SCM_RIGHTS the descriptors in order.

SOCK_STREAM: one message is one frame: an 8-byte prefix — header length
(little-endian uint32, at most MAX_HEADER), descriptor count
(little-endian uint16, at most MAX_FILES), the bytes 'S' 'B' — sent with
the descriptors in one sendmsg, then the header bytes. The receiver never
reads past a frame's end, so descriptors cannot slip into another message.

Receive hygiene: MSG_CMSG_CLOEXEC; a control buffer with room for the
limit and for what the receiver's own socket options add; on MSG_CTRUNC, a
malformed or unexpected control message, too many descriptors or any
error, every descriptor that arrived is closed. Control messages the
receiver's socket options add to every message are not the peer's and
refuse nothing (Go: wire.ParseControl): an SCM_PIDFD's descriptor
(SO_PASSPIDFD) is closed at once, SCM_CREDENTIALS (SO_PASSCRED) and
SCM_SECURITY (SO_PASSSEC) are skipped.
"""

from __future__ import annotations

import array
import os
import socket
import struct

from ._errors import HeaderTooLongError, MalformedError, TooManyFilesError

#: The kernel's limit of descriptors in one message (SCM_MAX_FD).
MAX_FILES = 253
#: The largest header a stream frame may announce (16 MiB).
MAX_HEADER = 16 << 20
FRAME_LEN = 8
_FRAME = struct.Struct("<IH2s")
_MAGIC = b"SB"

_MSG_CMSG_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0x40000000)
_MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0x4000)
_SCM_RIGHTS = socket.SCM_RIGHTS
_SCM_PIDFD = getattr(socket, "SCM_PIDFD", 0x04)  # Linux 6.5+: installs a pidfd
_SCM_CREDENTIALS = getattr(socket, "SCM_CREDENTIALS", 0x02)
_SCM_SECURITY = getattr(socket, "SCM_SECURITY", 0x03)
_INT = array.array("i").itemsize


def close_fds(fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def frame_prefix(header_len: int, files: int) -> bytes:
    return _FRAME.pack(header_len, files, _MAGIC)


def parse_frame(b: bytes):
    """Decodes a prefix, refusing lengths and counts over the limits."""
    header_len, files, magic = _FRAME.unpack(b)
    if magic != _MAGIC:
        raise MalformedError("bad frame magic %r (is the peer speaking sealbuf's stream framing?)" % magic)
    if header_len > MAX_HEADER:
        raise MalformedError("frame announces a %d-byte header, more than %d" % (header_len, MAX_HEADER))
    if files > MAX_FILES:
        raise MalformedError("frame announces %d descriptors, more than %d" % (files, MAX_FILES))
    return header_len, files


# The room a control buffer keeps beyond max_files descriptors for what the
# receiver's own socket options add to every message, before the peer's
# SCM_RIGHTS (an SCM_PIDFD, SCM_CREDENTIALS, SCM_SECURITY), so that they
# do not truncate the peer's descriptors (Go: wire.ControlSlack).
_CONTROL_SLACK = socket.CMSG_SPACE(4) + socket.CMSG_SPACE(12) + socket.CMSG_SPACE(64)


def anc_space(max_files: int) -> int:
    return socket.CMSG_SPACE(max_files * _INT) + _CONTROL_SLACK


def take_fds(ancdata, flags: int, max_files: int, fds: list):
    """Appends to fds every descriptor the peer sent (SCM_RIGHTS; at once,
    so that the caller closes them whatever happens next) and returns the
    error the message earns, or None. A descriptor the kernel installed for
    the receiver's own socket option (SCM_PIDFD) is closed here; control
    messages that carry none (SCM_CREDENTIALS, SCM_SECURITY) are skipped
    (Go: wire.ParseControl)."""
    err = None
    for level, typ, data in ancdata:
        if level == socket.SOL_SOCKET and typ == _SCM_RIGHTS:
            whole = len(data) - len(data) % _INT
            fds.extend(array.array("i", data[:whole]))
            if whole != len(data) and err is None:
                err = MalformedError("SCM_RIGHTS of %d bytes" % len(data))
        elif level == socket.SOL_SOCKET and typ == _SCM_PIDFD:
            if len(data) == _INT:
                close_fds(array.array("i", data))
            elif err is None:
                err = MalformedError("SCM_PIDFD of %d bytes" % len(data))
        elif level == socket.SOL_SOCKET and typ in (_SCM_CREDENTIALS, _SCM_SECURITY):
            pass
        elif err is None:
            err = MalformedError("unexpected control message level %d type %d" % (level, typ))
    if err is None and flags & socket.MSG_CTRUNC:
        err = TooManyFilesError(
            "the control message was truncated (MSG_CTRUNC): the peer sent more than %d descriptors, "
            "or other control data" % max_files)
    if err is None and len(fds) > max_files:
        err = TooManyFilesError("%d descriptors, more than the limit of %d a message" % (len(fds), max_files))
    return err


def _recvmsg(sock, bufsize: int, anc: int, flags: int = 0):
    """recvmsg with MSG_CMSG_CLOEXEC. A peer that closed with our messages
    unread resets the socket: the kernel reports that once, before what the
    peer sent is read, so read on (as Go's Conn.recv)."""
    flags |= _MSG_CMSG_CLOEXEC
    try:
        return sock.recvmsg(bufsize, anc, flags)
    except ConnectionResetError:
        pass
    try:
        return sock.recvmsg(bufsize, anc, flags)
    except ConnectionResetError as e:
        raise EOFError("sealbuf: receive: the peer hung up (%s)" % e) from None


def _recvmsg_into(sock, buf: bytearray, anc: int, flags: int):
    flags |= _MSG_CMSG_CLOEXEC
    try:
        return sock.recvmsg_into([buf], anc, flags)
    except ConnectionResetError:
        pass
    try:
        return sock.recvmsg_into([buf], anc, flags)
    except ConnectionResetError as e:
        raise EOFError("sealbuf: receive: the peer hung up (%s)" % e) from None


def recv_packet(sock, limit: int, max_files: int):
    """Receives one SOCK_SEQPACKET message: (payload up to limit bytes, the
    payload's real length, descriptors). The caller owns the descriptors;
    on an exception none is left open. A hang-up raises EOFError. A message
    refused for its control data was still read whole: the error's
    ``whole_message`` is (payload, length), for a caller that answers it
    anyway (the pool hands its slot back)."""
    buf = bytearray(limit)
    fds: list = []
    try:
        # MSG_TRUNC in flags: the kernel returns the packet's real length.
        n, ancdata, mflags, _ = _recvmsg_into(sock, buf, anc_space(max_files), socket.MSG_TRUNC)
        err = take_fds(ancdata, mflags, max_files, fds)
        if err is not None:
            err = _with_note(err, "all %d received descriptors closed" % len(fds))
            err.whole_message = (bytes(memoryview(buf)[: min(n, limit)]), n)
            raise err
        if n == 0 and not ancdata and not mflags & socket.MSG_CTRUNC:
            raise EOFError("sealbuf: receive: the peer hung up")
        return bytes(memoryview(buf)[: min(n, limit)]), n, fds
    except BaseException:
        close_fds(fds)
        raise


def recv_frame(sock, limit: int, max_files: int):
    """Receives one SOCK_STREAM frame, never reading past its end; returns
    like recv_packet. When the descriptors break a limit it closes them at
    once, reads the rest of the frame anyway (so the next receive starts at
    the next frame) and then raises: a peer can neither make one receive
    hold more than the limit nor push the stream out of step. Such an error
    carries ``whole_message`` as recv_packet's do."""
    fds: list = []
    state = {"err": None}
    anc = anc_space(max_files)

    def read(n: int, announced: int) -> bytes:
        try:
            data, ancdata, mflags, _ = _recvmsg(sock, n, anc)
        except EOFError as e:  # a reset: a hang-up
            if announced >= 0 or fds or state["err"] is not None or n < FRAME_LEN:
                raise MalformedError("the peer hung up inside a frame (%s)" % e) from None
            raise
        perr = take_fds(ancdata, mflags, max_files, fds)
        if perr is not None and state["err"] is None:
            state["err"] = perr
        check(announced)
        return data

    def check(announced: int) -> None:
        if state["err"] is None and len(fds) > max_files:
            state["err"] = TooManyFilesError("more than %d descriptors in one message" % max_files)
        if state["err"] is None and announced >= 0 and len(fds) > announced:
            state["err"] = MalformedError("frame announced %d descriptors but carried more" % announced)
        if state["err"] is not None:
            close_fds(fds)
            del fds[:]

    try:
        prefix = b""
        while len(prefix) < FRAME_LEN:
            data = read(FRAME_LEN - len(prefix), -1)
            if not data:
                if not prefix and not fds and state["err"] is None:
                    raise EOFError("sealbuf: receive: the peer hung up")
                raise MalformedError("the peer hung up inside a frame")
            prefix += data
        try:
            header_len, files = parse_frame(prefix)
        except MalformedError as e:
            err = MalformedError("%s (the stream is out of step: close the Conn)" % e)
            err.out_of_step = True
            raise err from None
        check(files)
        parts = []
        got = kept = 0
        while got < header_len:
            want = min(header_len - got, 1 << 20)
            data = read(want, files)
            if not data:
                raise MalformedError("the peer hung up inside a frame")
            got += len(data)
            if kept < limit:
                parts.append(data[: limit - kept])
                kept += len(parts[-1])
        payload = b"".join(parts)
        err = None
        if state["err"] is not None:
            err = _with_note(state["err"], "all received descriptors closed")
        elif len(fds) != files:
            err = MalformedError("frame announced %d descriptors but carried %d (all closed)" % (files, len(fds)))
        if err is not None:
            err.whole_message = (payload, header_len)
            raise err
        return payload, header_len, fds
    except BaseException:
        close_fds(fds)
        raise


def _with_note(err: Exception, note: str) -> Exception:
    err.args = ("sealbuf: receive: %s (%s)" % (err, note),)
    return err


def header_too_long(n: int, limit: int, files: int) -> HeaderTooLongError:
    return HeaderTooLongError(
        "sealbuf: receive: %d-byte header, larger than max_header=%d (message dropped, its %d descriptors "
        "closed)" % (n, limit, files), size=n)


def send_message(sock, stream: bool, header, fds) -> None:
    """Sends header and fds as one message (a packet, or a frame on a stream
    socket, looping over short writes: only the first sendmsg carries the
    descriptors)."""
    anc = [(socket.SOL_SOCKET, _SCM_RIGHTS, array.array("i", fds))] if fds else []
    if not stream:
        n = sock.sendmsg([header], anc, _MSG_NOSIGNAL)
        if n != len(header):
            raise OSError("sealbuf: send: sendmsg sent %d of a %d-byte packet" % (n, len(header)))
        return
    data = memoryview(frame_prefix(len(header), len(fds)) + bytes(header))
    n = sock.sendmsg([data], anc, _MSG_NOSIGNAL)
    while n < len(data):
        data = data[n:]
        n = sock.sendmsg([data], [], _MSG_NOSIGNAL)
