"""Conn: sealed buffers over a UNIX socket (Go: Conn, Listen, Dial)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading

from . import _wire
from ._errors import MalformedError, TooManyFilesError
from ._sealed import Sealed, open_sealed


class Conn:
    """Hands sealed buffers to another process (Go's sealbuf.Conn speaks the
    same wire format): each message is a header of the caller's bytes plus
    the buffers' memfd descriptors.

    ``Conn(sock)`` wraps a connected AF_UNIX socket — SOCK_SEQPACKET
    (recommended: one message is one packet) or SOCK_STREAM (the 8-byte
    framing) — without duplicating it; the Conn owns it from then on (its
    timeout applies to send and receive). ``receive`` checks every
    descriptor as open_sealed does, with ``max_size`` (bytes, default no
    limit beyond what can be mapped) and ``require`` (seals added to
    shrink|grow|write); ``max_files`` (default and maximum 253) bounds the
    descriptors of one message. One thread may send while another receives;
    concurrent sends (and receives) are serialised. A context manager.
    """

    def __init__(self, sock: socket.socket, *, max_files: int = _wire.MAX_FILES,
                 max_size: int | None = None, require: int = 0):
        if sock.family != socket.AF_UNIX:
            raise ValueError("sealbuf: Conn needs an AF_UNIX socket, not %r" % sock.family)
        typ = sock.type
        if typ not in (socket.SOCK_SEQPACKET, socket.SOCK_STREAM):
            raise ValueError("sealbuf: Conn needs a SOCK_SEQPACKET or SOCK_STREAM socket, not %r" % typ)
        self.socket = sock
        self._stream = typ == socket.SOCK_STREAM
        self.max_files = max(0, min(int(max_files), _wire.MAX_FILES))
        self.max_size = max_size
        self.require = int(require)
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()

    @property
    def stream(self) -> bool:
        """True over SOCK_STREAM (framed), False over SOCK_SEQPACKET."""
        return self._stream

    def fileno(self) -> int:
        return self.socket.fileno()

    @property
    def closed(self) -> bool:
        return self.socket.fileno() < 0

    def send(self, header: bytes, *bufs: Sealed) -> None:
        """Sends header and the descriptors of bufs as one message. It lends
        bufs: the caller still owns them and may send the same buffer again,
        even twice in one message. A closed Sealed raises ValueError. No bufs:
        a header-only message; over SOCK_SEQPACKET an empty header with no
        buffers is refused (it would read as end of file)."""
        for i, b in enumerate(bufs):
            if not isinstance(b, Sealed):
                raise TypeError("sealbuf: send: buffer %d is a %s, not a Sealed (send_files sends raw descriptors)"
                                % (i, type(b).__name__))
        # Borrow every buffer for the whole send, as Go borrows through
        # RawConn.Control: a close() in another thread waits, so no number
        # can be closed and reused (and the wrong file sent) meanwhile.
        with contextlib.ExitStack() as borrowed:
            for b in sorted({id(b): b for b in bufs}.values(), key=id):
                borrowed.enter_context(b._lock)
            fds = []
            for i, b in enumerate(bufs):
                if b._fd < 0:
                    raise ValueError("sealbuf: send: buffer %d (%r) is closed" % (i, b.name))
                fds.append(b._fd)
            self.send_files(header, *fds)

    def send_files(self, header: bytes, *fds: int) -> None:
        """Sends header and any descriptors, memfds or not, with no checks:
        the low level of send (Go: SendFiles). It lends fds."""
        header = bytes(header)
        if len(fds) > _wire.MAX_FILES:
            raise TooManyFilesError("sealbuf: send: %d descriptors, more than the kernel's %d a message: split the "
                                    "message" % (len(fds), _wire.MAX_FILES))
        if not self._stream and not header and not fds:
            raise ValueError("sealbuf: send: an empty message with no buffers reads as end of file on "
                             "SOCK_SEQPACKET; send at least one header byte or buffer")
        if self._stream and len(header) > _wire.MAX_HEADER:
            raise ValueError("sealbuf: send: %d-byte header, more than the stream framing's %d"
                             % (len(header), _wire.MAX_HEADER))
        with self._send_lock:
            _wire.send_message(self.socket, self._stream, header, list(fds))

    def receive(self, max_header: int = 65536):
        """Receives one message: (header bytes, [Sealed, ...]).

        Every descriptor is checked as open_sealed checks it (with the Conn's
        max_size and require), in order. On any refusal — a descriptor that
        is not a memfd or lacks seals or is too large (NotMemfdError,
        NotSealedError, TooLargeError), more descriptors than max_files or a
        truncated control message (TooManyFilesError), a malformed message
        (MalformedError), a header longer than max_header
        (HeaderTooLongError: the message is consumed) — every descriptor of
        the message is closed, nothing is returned, and the Conn stays usable
        for the next message. The exception is a stream whose framing the
        peer broke ("out of step"): reported once, after which receive drops
        what still comes and raises EOFError at the hang-up, as Go's Conn
        does. The peer hung up: EOFError.
        """
        header, fds = self.receive_files(max_header)
        bufs = []
        try:
            for i, fd in enumerate(fds):
                try:
                    bufs.append(open_sealed(fd, self.max_size, require=self.require))
                except Exception as e:
                    e.args = ("sealbuf: receive: descriptor %d of %d refused (all %d closed): %s"
                              % (i, len(fds), len(fds), e),)
                    raise
        except BaseException:
            for b in bufs:
                b.close()
            _wire.close_fds(fds[len(bufs):])
            raise
        return header, bufs

    def receive_files(self, max_header: int = 65536):
        """Receives one message like receive but checks no descriptor: it
        returns (header, [fd, ...]), close-on-exec descriptors the caller
        owns (Go: ReceiveFiles). Errors about the message itself (limits,
        truncation, a header too long) still close every descriptor."""
        if max_header < 0:
            raise ValueError("sealbuf: receive: negative max_header")
        with self._recv_lock:
            if self._stream and getattr(self, "_broken", False):
                # The framing broke and receive said so once: no message
                # can be found any more. Drop what still comes (closing any
                # descriptor) until the hang-up, as Go's Conn does.
                self._drain_broken()
            if self._stream:
                try:
                    header, n, fds = _wire.recv_frame(self.socket, max_header, self.max_files)
                except MalformedError as e:
                    if getattr(e, "out_of_step", False):
                        self._broken = True
                    raise
            else:
                header, n, fds = _wire.recv_packet(self.socket, max_header, self.max_files)
        if n > max_header:
            _wire.close_fds(fds)
            raise _wire.header_too_long(n, max_header, len(fds))
        return header, fds

    def _drain_broken(self) -> None:
        anc = _wire.anc_space(self.max_files)
        while True:
            data, ancdata, mflags, _ = self.socket.recvmsg(65536, anc, _wire._MSG_CMSG_CLOEXEC)
            fds = []
            _wire.take_fds(ancdata, mflags, self.max_files, fds)
            _wire.close_fds(fds)
            if not data and not ancdata:
                raise EOFError("sealbuf: receive: the peer hung up (after breaking the stream's framing)")

    def close(self) -> None:
        """Closes the socket. Buffers already received stay valid."""
        self.socket.close()

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "stream" if self._stream else "seqpacket"
        return "<sealbuf.Conn %s fd=%d>" % (kind, self.socket.fileno())


def _address(path: str):
    """'@name' is the abstract namespace."""
    if isinstance(path, str) and path.startswith("@"):
        return "\0" + path[1:]
    return os.fspath(path)


def dial(path: str, **opts) -> Conn:
    """Connects to a SOCK_SEQPACKET listener at path ('@name' for the
    abstract namespace) and returns a Conn (opts as Conn's)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(_address(path))
        return Conn(sock, **opts)
    except BaseException:
        sock.close()
        raise


class Listener:
    """A SOCK_SEQPACKET listener; accept() returns a Conn. close() removes
    the socket file it created. A context manager."""

    def __init__(self, path: str, backlog: int = 16, **opts):
        self._opts = opts
        self.address = path
        self._unlink = None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            addr = _address(path)
            sock.bind(addr)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        if not addr.startswith("\0"):
            st = os.stat(addr)
            self._unlink = (addr, st.st_dev, st.st_ino)
        self.socket = sock

    def accept(self) -> Conn:
        sock, _ = self.socket.accept()
        try:
            return Conn(sock, **self._opts)
        except BaseException:
            sock.close()
            raise

    def fileno(self) -> int:
        return self.socket.fileno()

    def close(self) -> None:
        if self.socket.fileno() < 0:
            return
        self.socket.close()
        if self._unlink is not None:
            addr, dev, ino = self._unlink
            self._unlink = None
            try:  # only the file we bound, not one somebody put there since
                st = os.stat(addr)
                if (st.st_dev, st.st_ino) == (dev, ino):
                    os.unlink(addr)
            except OSError:
                pass

    def __enter__(self) -> "Listener":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def listen(path: str, **opts) -> Listener:
    """Listens on path ('@name' for the abstract namespace) for
    SOCK_SEQPACKET connections; accepted Conns get opts."""
    return Listener(path, **opts)
