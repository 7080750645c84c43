"""Conn over both socket types: round trips, and every refusal of a
message — each closes every descriptor of the message and leaves the Conn
usable — with descriptor and mapping counts flat."""

from __future__ import annotations

import array
import fcntl
import os
import socket
import struct
import tempfile
import threading
import unittest

from support import GROW, IMMUTABLE, SHRINK, SOCKET_TYPES, Case, counts, memfd, pair, pattern

import sealbuf


def raw_send(sock, data, fds=()):
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    return sock.sendmsg([data], anc)


def frame(header_len, files, magic=b"SB"):
    return struct.pack("<IH2s", header_len, files, magic)


class ConnTest(Case):
    def each_type(self, fn):
        for name, typ in SOCKET_TYPES:
            with self.subTest(socket=name):
                a, b = pair(typ)
                try:
                    fn(a, b, typ)
                finally:
                    a.close()
                    b.close()

    def expect_next(self, a, b):
        """The Conn still works: the next message goes through."""
        with sealbuf.from_bytes(b"after") as s:
            a.send(b"next", s)
        h, bufs = b.receive()
        self.assertEqual(b"next", h)
        self.assertEqual([b"after"], [bytes(x.view) for x in bufs])
        for x in bufs:
            x.close()

    def test_round_trip(self):
        def run(a, b, typ):
            one = self.closing(sealbuf.from_bytes(b"one"))
            big = self.closing(sealbuf.from_bytes(pattern("big", 3 << 20)))
            empty = self.closing(sealbuf.from_bytes(b""))
            for header, bufs in ((b"one", [one]), (b"same twice", [one, big, one]), (b"", [big]),
                                 (b"zero bytes", [empty]), (b"header only", []), (b"x" * 65536, [one])):
                a.send(header, *bufs)
                h, got = b.receive()
                self.assertEqual(header, h)
                self.assertEqual([bytes(x.view) for x in bufs], [bytes(x.view) for x in got])
                for x in got:
                    self.assertEqual(IMMUTABLE, int(x.seals) & IMMUTABLE)
                    self.assertTrue(fcntl.fcntl(x.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
                    x.close()
            # both directions
            b.send(b"back", one)
            h, got = a.receive()
            self.assertEqual((b"back", b"one"), (h, bytes(got[0].view)))
            got[0].close()
        self.each_type(run)

    def test_empty_message(self):
        a, b = pair(socket.SOCK_SEQPACKET)
        with a, b:
            with self.assertRaises(ValueError):
                a.send(b"")  # would read as end of file
        a, b = pair(socket.SOCK_STREAM)
        with a, b:
            a.send(b"")  # a frame: fine on a stream
            self.assertEqual((b"", []), b.receive())

    def test_hangup(self):
        def run(a, b, typ):
            a.send(b"last")
            a.close()
            self.assertEqual((b"last", []), b.receive())
            with self.assertRaises(EOFError):
                b.receive()
            with self.assertRaises(EOFError):
                b.receive()
        self.each_type(run)

    def test_peer_gone_with_unread_data(self):
        def run(a, b, typ):
            a.send(b"unread by a")  # a never reads b's reply: closing a resets the socket
            b.send(b"reply")
            b.receive()
            a.send(b"before close")
            a.close()
            self.assertEqual(b"before close", b.receive()[0])
            with self.assertRaises(EOFError):
                b.receive()
        self.each_type(run)

    def test_refusals(self):
        tmpdir = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, tmpdir)

        def run(a, b, typ):
            r, w = os.pipe()
            path = os.path.join(tmpdir, "regular")
            with open(path, "wb") as f:
                f.write(b"regular")
            reg = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            os.unlink(path)
            good = memfd(b"good", IMMUTABLE)
            fds = {"unsealed": memfd(b"u"), "shrink-only": memfd(b"s", SHRINK),
                   "shrink-grow": memfd(b"sg", SHRINK | GROW), "big": memfd(b"b" * 5000, IMMUTABLE)}
            try:
                a.max_size = None
                cases = [
                    ([fds["unsealed"]], sealbuf.NotSealedError),
                    ([fds["shrink-only"]], sealbuf.NotSealedError),
                    ([fds["shrink-grow"]], sealbuf.NotSealedError),
                    ([r], sealbuf.NotMemfdError),
                    ([good, r, good], sealbuf.NotMemfdError),
                    ([good] * 8 + [fds["unsealed"]] + [good] * 8, sealbuf.NotSealedError),
                    ([good, fds["big"]], sealbuf.TooLargeError),
                ]
                for sent, exc in cases:
                    before = counts()
                    a.send_files(b"bad", *sent)
                    b.max_size = 4096
                    with self.assertRaises(exc) as cm:
                        b.receive()
                    b.max_size = None
                    self.assertIn("all %d closed" % len(sent), str(cm.exception))
                    self.assertEqual(before, counts(), "%s: a descriptor of the refused message leaked" % exc)
                    self.expect_next(a, b)
                before = counts()
                a.send_files(b"regular", reg)
                with self.assertRaises((sealbuf.NotMemfdError, sealbuf.NotSealedError)):
                    b.receive()
                self.assertEqual(before, counts())
            finally:
                for fd in [r, w, reg, good] + list(fds.values()):
                    os.close(fd)
        self.each_type(run)

    def test_send_closed_or_foreign(self):
        def run(a, b, typ):
            s = sealbuf.from_bytes(b"gone")
            ok = self.closing(sealbuf.from_bytes(b"ok"))
            s.close()
            with self.assertRaises(ValueError):
                a.send(b"closed", ok, s)  # nothing is sent
            with self.assertRaises(TypeError):
                a.send(b"raw", 0)  # a raw descriptor goes through send_files
            self.expect_next(a, b)
        self.each_type(run)

    def test_many_descriptors(self):
        def run(a, b, typ):
            s = self.closing(sealbuf.from_bytes(b"many"))
            a.send(b"253", *([s] * 253))
            h, bufs = b.receive()
            self.assertEqual(253, len(bufs))
            for x in bufs:
                x.close()
            with self.assertRaises(sealbuf.TooManyFilesError):
                a.send(b"254", *([s] * 254))  # refused before anything is sent
            self.expect_next(a, b)
        self.each_type(run)

    def test_kernel_limit(self):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with a, b:
            fd = memfd(b"k", IMMUTABLE)
            try:
                with self.assertRaises(OSError):  # the kernel's SCM_MAX_FD: nobody can send 254 at once
                    raw_send(a, b"254", [fd] * 254)
            finally:
                os.close(fd)

    def test_max_files(self):
        def run(a, b, typ):
            b.max_files = 4
            s = self.closing(sealbuf.from_bytes(b"limit"))
            a.send(b"four", *([s] * 4))
            h, bufs = b.receive()
            self.assertEqual(4, len(bufs))
            for x in bufs:
                x.close()
            before = counts()
            a.send(b"five", *([s] * 5))
            with self.assertRaises(sealbuf.TooManyFilesError):
                b.receive()  # packets: MSG_CTRUNC; streams: more than the limit
            self.assertEqual(before, counts())
            self.expect_next(a, b)
        self.each_type(run)

    def test_stream_254_in_one_frame(self):
        # Over a stream, two sendmsg calls can put 254 descriptors into one
        # frame: refused, all closed, the stream still in step.
        a, b = pair(socket.SOCK_STREAM)
        with a, b:
            fd = memfd(b"x", IMMUTABLE)
            try:
                before = counts()
                raw_send(a.socket, frame(4, 253) + b"ab", [fd] * 200)
                raw_send(a.socket, b"cd", [fd] * 54)
                with self.assertRaises((sealbuf.TooManyFilesError, sealbuf.MalformedError)):
                    b.receive()
                self.assertEqual(before, counts())
                self.expect_next(a, b)
            finally:
                os.close(fd)

    def test_stream_frame_lies(self):
        a, b = pair(socket.SOCK_STREAM)
        with a, b:
            fd = memfd(b"x", IMMUTABLE)
            try:
                before = counts()
                raw_send(a.socket, frame(2, 1) + b"hi", [fd, fd])  # more than announced
                with self.assertRaises(sealbuf.MalformedError):
                    b.receive()
                raw_send(a.socket, frame(2, 2) + b"hi", [fd])  # fewer than announced
                with self.assertRaises(sealbuf.MalformedError):
                    b.receive()
                self.assertEqual(before, counts())
                self.expect_next(a, b)
                raw_send(a.socket, frame(2, 0, b"XX") + b"hi")  # out of step
                with self.assertRaises(sealbuf.MalformedError) as cm:
                    b.receive()
                self.assertIn("out of step", str(cm.exception))
                raw_send(b.socket, frame(17 << 20, 0))
                with self.assertRaises(sealbuf.MalformedError):
                    a.receive()
            finally:
                os.close(fd)

    def test_stream_broken_then_eof(self):
        """A broken framing is reported once; then receive drops what still
        comes (closing its descriptors) and raises EOFError at the hang-up,
        as Go's Conn does."""
        a, b = pair(socket.SOCK_STREAM)
        with b:
            before = counts()
            raw_send(a.socket, b"garbage!garbage!")
            with self.assertRaises(sealbuf.MalformedError):
                b.receive()
            fd = memfd(b"stray", 0)
            raw_send(a.socket, frame(5, 1) + b"hello", [fd])  # looks like a frame: dropped all the same
            os.close(fd)
            a.close()
            with self.assertRaises(EOFError):
                b.receive()
            self.assertEqual((before[0] - 1,) + before[1:], counts())  # a is closed; the stray memfd too

    def test_stream_hangup_inside_frame(self):
        a, b = pair(socket.SOCK_STREAM)
        with b:
            before = counts()
            fd = memfd(b"x", IMMUTABLE)
            raw_send(a.socket, frame(10, 1) + b"short", [fd])
            os.close(fd)
            a.close()
            with self.assertRaises(sealbuf.MalformedError):
                b.receive()
            with self.assertRaises(EOFError):
                b.receive()
            self.assertEqual((before[0] - 1,) + before[1:], counts())  # a is closed; the received memfd too

    def test_header_too_long(self):
        def run(a, b, typ):
            s = self.closing(sealbuf.from_bytes(b"h"))
            before = counts()
            a.send(b"x" * 100, s, s)
            with self.assertRaises(sealbuf.HeaderTooLongError) as cm:
                b.receive(max_header=99)
            self.assertEqual(100, cm.exception.size)
            self.assertEqual(before, counts(), "descriptors of a dropped message leaked")
            a.send(b"y" * 99, s)
            h, bufs = b.receive(max_header=99)  # exactly the limit: fine
            self.assertEqual(b"y" * 99, h)
            bufs[0].close()
            self.expect_next(a, b)
        self.each_type(run)

    def test_receiver_control_messages(self):
        # Control messages the receiver's own socket options add to every
        # message are not the peer's and refuse nothing, as in Go
        # (wire.ParseControl): SO_PASSPIDFD's SCM_PIDFD installs a pidfd,
        # which is closed at once; SO_PASSCRED's SCM_CREDENTIALS is skipped.
        # The control buffer has room for them beside max_files
        # descriptors, so they do not truncate the peer's.
        opts = [o for o in (socket.SO_PASSCRED, getattr(socket, "SO_PASSPIDFD", 76)) if _settable(o)]
        if not opts:
            self.skipTest("neither SO_PASSCRED nor SO_PASSPIDFD can be set here")
        for name, typ in SOCKET_TYPES:
            for max_files in (1, 253):
                with self.subTest(socket=name, max_files=max_files):
                    a, b = pair(typ, max_files=max_files)
                    with a, b:
                        for o in opts:
                            b.socket.setsockopt(socket.SOL_SOCKET, o, 1)
                        s = self.closing(sealbuf.from_bytes(b"c"))
                        before = counts()
                        for i in range(20):
                            a.send(b"%d" % i, s)
                            h, bufs = b.receive()
                            self.assertEqual((b"%d" % i, [b"c"]), (h, [bytes(x.view) for x in bufs]))
                            for x in bufs:
                                x.close()
                        self.assertEqual(before, counts(), "a pidfd was left open")
                        # max_files still holds: two descriptors for one.
                        if max_files == 1:
                            a.send(b"two", s, s)
                            with self.assertRaises(sealbuf.TooManyFilesError):
                                b.receive()
                            self.assertEqual(before, counts())
                        self.expect_next(a, b)

    def test_take_fds(self):
        # The parsing itself (Go: wire.ParseControl's cases): the peer's
        # SCM_RIGHTS are taken, a pidfd closed, credentials skipped, and
        # anything else refused.
        from sealbuf import _wire
        sol = socket.SOL_SOCKET
        r, w = os.pipe()
        try:
            fds = []
            creds = struct.pack("iII", os.getpid(), os.getuid(), os.getgid())
            self.assertIsNone(_wire.take_fds([(sol, 2, creds), (sol, socket.SCM_RIGHTS, struct.pack("i", r))],
                                             0, 253, fds))
            self.assertEqual([r], fds)
            pidfd = os.dup(w)
            fds = []
            self.assertIsNone(_wire.take_fds([(sol, 4, struct.pack("i", pidfd))], 0, 253, fds))
            self.assertEqual([], fds)
            with self.assertRaises(OSError):
                os.fstat(pidfd)  # closed
            for anc in ([(sol, 99, b"")], [(socket.SOL_IP, 1, b"xxxx")], [(sol, 4, b"\0" * 8)],
                        [(sol, socket.SCM_RIGHTS, b"\0" * 5)]):
                with self.subTest(anc=anc):
                    self.assertIsInstance(_wire.take_fds(anc, 0, 253, []), sealbuf.MalformedError)
            self.assertIsInstance(_wire.take_fds([], socket.MSG_CTRUNC, 253, []), sealbuf.TooManyFilesError)
        finally:
            os.close(r)
            os.close(w)

    def test_receive_files_and_timeout(self):
        a, b = pair(socket.SOCK_SEQPACKET)
        with a, b:
            r, w = os.pipe()
            a.send_files(b"raw", r, w)
            h, fds = b.receive_files()
            self.assertEqual(2, len(fds))
            for fd in fds + [r, w]:
                os.close(fd)
            b.socket.settimeout(0.01)
            with self.assertRaises(socket.timeout):
                b.receive()
            b.socket.settimeout(None)
            self.expect_next(a, b)

    def test_concurrent_send_receive(self):
        def run(a, b, typ):
            n = 200
            s = self.closing(sealbuf.from_bytes(pattern("conc", 10000)))
            errs = []

            def sender():
                try:
                    for i in range(n):
                        a.send(b"%d" % i, s)
                except Exception as e:  # pragma: no cover
                    errs.append(e)
            t = threading.Thread(target=sender)
            t.start()
            for i in range(n):
                h, bufs = b.receive()
                self.assertEqual(b"%d" % i, h)
                with bufs[0].view as v:
                    self.assertEqual(10000, len(v))
                bufs[0].close()
            t.join()
            self.assertEqual([], errs)
        self.each_type(run)

    def test_wrong_sockets(self):
        u = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with u, self.assertRaises(ValueError):
            sealbuf.Conn(u)
        d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with d, self.assertRaises(ValueError):
            sealbuf.Conn(d)


class DialListenTest(Case):
    def test_path_and_abstract(self):
        d = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, d)
        for path in (os.path.join(d, "sock"), "@sealbuf-test-%d" % os.getpid()):
            with self.subTest(path=path):
                with sealbuf.listen(path) as ln:
                    c = sealbuf.dial(path)
                    s = ln.accept()
                    with c, s, sealbuf.from_bytes(b"dialled") as buf:
                        self.assertFalse(c.stream)
                        c.send(b"hi", buf)
                        h, bufs = s.receive()
                        self.assertEqual((b"hi", b"dialled"), (h, bytes(bufs[0].view)))
                        bufs[0].close()
                self.assertFalse(os.path.exists(path))
        with self.assertRaises(OSError):
            sealbuf.dial(os.path.join(d, "nobody"))

    def test_options_reach_accepted_conns(self):
        with sealbuf.listen("@sealbuf-opts-%d" % os.getpid(), max_size=3) as ln:
            c = sealbuf.dial(ln.address)
            s = ln.accept()
            with c, s, sealbuf.from_bytes(b"four") as buf:
                c.send(b"x", buf)
                with self.assertRaises(sealbuf.TooLargeError):
                    s.receive()


def _settable(opt: int) -> bool:
    """Whether this kernel knows the socket option opt."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        b.setsockopt(socket.SOL_SOCKET, opt, 1)
        return True
    except OSError:
        return False
    finally:
        a.close()
        b.close()


if __name__ == "__main__":
    unittest.main()
