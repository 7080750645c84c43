"""from_bytes, open_sealed and Sealed: round trips, and every refusal of
open_sealed in Go's order, with descriptor and mapping counts flat."""

from __future__ import annotations

import errno
import mmap
import os
import socket
import tempfile
import unittest

from support import FUTURE_WRITE, GROW, HAVE_NUMPY, IMMUTABLE, SEAL, SHRINK, WRITE, Case, memfd, pattern

import sealbuf


class FromBytesTest(Case):
    def test_round_trip_sizes(self):
        for n in (0, 1, 4095, 4096, 4097, (1 << 20) + 3):
            data = pattern("from-bytes-%d" % n, n)
            with sealbuf.from_bytes(data, name="rt") as s:
                self.assertEqual(n, s.size)
                self.assertEqual(n, len(s))
                self.assertEqual("rt", s.name)
                self.assertTrue(s.seals & sealbuf.IMMUTABLE == sealbuf.IMMUTABLE, str(s.seals))
                self.assertTrue(s.seals & sealbuf.Seals.SEAL)
                with s.view as v:
                    self.assertTrue(v.readonly)
                    self.assertEqual(data, v.tobytes())

    def test_kernel_refuses_changes(self):
        with sealbuf.from_bytes(b"immutable") as s:
            fd = s.fileno()
            for attempt in (lambda: os.pwrite(fd, b"x", 0), lambda: os.ftruncate(fd, 1),
                            lambda: os.ftruncate(fd, 100)):
                with self.assertRaises(PermissionError):
                    attempt()
            with self.assertRaises(PermissionError):  # no writable shared mapping either
                mmap.mmap(fd, 9, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            flags = __import__("fcntl").fcntl(fd, __import__("fcntl").F_GETFD)
            self.assertTrue(flags & 1, "memfd is not close-on-exec")

    def test_bytes_like(self):
        import array
        a = array.array("I", range(1000))
        with sealbuf.from_bytes(a) as s, s.view as v:
            self.assertEqual(a.tobytes(), v.tobytes())
        with sealbuf.from_bytes(memoryview(b"abcdef")[1:4]) as s, s.view as v:
            self.assertEqual(b"bcd", bytes(v))
        with self.assertRaises(ValueError):
            sealbuf.from_bytes(memoryview(b"abcdef")[::2])

    def test_view_is_zero_copy(self):
        with sealbuf.from_bytes(b"x" * 8192) as s:
            with s.view as v1, s.view as v2:
                # two views of one mapping: the same memory, no copy
                self.assertEqual(v1.tobytes(), v2.tobytes())
            with open("/proc/self/maps") as f:
                self.assertEqual(1, sum(1 for line in f if "/memfd:sealbuf" in line))

    def test_close(self):
        s = sealbuf.from_bytes(b"close me")
        v = s.view
        with self.assertRaises(BufferError):
            s.close()  # a view is alive: nothing released
        self.assertFalse(s.closed)
        self.assertEqual(b"close me", v.tobytes())
        v.release()
        s.close()
        s.close()  # a second close does nothing
        self.assertTrue(s.closed)
        for use in (lambda: s.view, s.fileno):
            with self.assertRaises(ValueError):
                use()

    @unittest.skipUnless(HAVE_NUMPY, "numpy is not installed")
    def test_ndarray(self):
        import numpy
        src = numpy.arange(12, dtype="<f8")
        with sealbuf.from_bytes(src.tobytes()) as s:
            a = s.ndarray("<f8")
            self.assertTrue((a == src).all())
            self.assertFalse(a.flags.writeable)
            with self.assertRaises(ValueError):
                a[0] = 1
            with self.assertRaises(ValueError):
                a.flags.writeable = True
            b = s.ndarray(numpy.float64, (3, 4))
            self.assertEqual((3, 4), b.shape)
            self.assertEqual(11.0, b[2, 3])
            with self.assertRaises(ValueError):
                s.ndarray("<f8", (5, 5))
            with self.assertRaises(ValueError):
                s.ndarray("V7")
            with self.assertRaises(BufferError):
                s.close()
            del a, b
        with sealbuf.from_bytes(b"") as s:
            self.assertEqual(0, s.ndarray("<i4").size)


class OpenSealedTest(Case):
    def open_ok(self, fd, **kw):
        s = sealbuf.open_sealed(fd, **kw)
        self.closing(s)
        return s

    def refused(self, fd, exc, **kw):
        """open_sealed must refuse fd with exc, map nothing and leave fd open."""
        before = _maps()
        with self.assertRaises(exc) as cm:
            sealbuf.open_sealed(fd, **kw)
        self.assertEqual(before, _maps(), "mapped something before refusing")
        os.fstat(fd)  # still open: the caller's
        return cm.exception

    def test_sealed_memfd(self):
        data = pattern("open", 10000)
        fd = memfd(data, IMMUTABLE)
        s = sealbuf.open_sealed(fd)
        self.assertEqual(fd, s.fileno())  # owned, not duplicated
        self.assertEqual(len(data), s.size)
        self.assertEqual(IMMUTABLE, int(s.seals) & IMMUTABLE)
        self.assertEqual("test", s.name)
        with s.view as v:
            self.assertEqual(data, bytes(v))
        s.close()
        with self.assertRaises(OSError):
            os.fstat(fd)  # closed with the Sealed

    def test_read_only_descriptor(self):
        src = memfd(b"read only", IMMUTABLE | SEAL)
        fd = os.open("/proc/self/fd/%d" % src, os.O_RDONLY | os.O_CLOEXEC)
        os.close(src)
        with sealbuf.open_sealed(fd) as s, s.view as v:
            self.assertEqual(b"read only", bytes(v))

    def test_unsealed(self):
        fd = self.fd(memfd(b"open"))
        e = self.refused(fd, sealbuf.NotSealedError)
        self.assertEqual(IMMUTABLE, int(e.missing))
        self.assertIn("not sealed against shrink|grow|write (has none)", str(e))

    def test_partly_sealed(self):
        for seals, missing in ((SHRINK, "grow|write"), (SHRINK | GROW, "write"), (WRITE, "shrink|grow"),
                               (SHRINK | GROW | FUTURE_WRITE | SEAL, "write")):
            fd = self.fd(memfd(b"partly", seals))
            e = self.refused(fd, sealbuf.NotSealedError)
            self.assertIn("not sealed against %s " % missing, str(e))
            self.assertIsInstance(e, sealbuf.SealbufError)

    def test_require_adds(self):
        fd = self.fd(memfd(b"req", IMMUTABLE))
        e = self.refused(fd, sealbuf.NotSealedError, require=SEAL)
        self.assertEqual("seal", str(e.missing))
        s = sealbuf.open_sealed(fd, require=0)  # never weakens: the default still applies
        s.close()
        fd = self.fd(memfd(b"req", SHRINK))
        self.refused(fd, sealbuf.NotSealedError, require=SHRINK)

    def test_not_memfds(self):
        r, w = os.pipe()
        self.fd(r), self.fd(w)
        a, b = socket.socketpair()
        self.closing(a), self.closing(b)
        zero = self.fd(os.open("/dev/zero", os.O_RDONLY | os.O_CLOEXEC))
        d = self.fd(os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        src = self.fd(memfd(b"o_path", IMMUTABLE))
        opath = self.fd(os.open("/proc/self/fd/%d" % src, os.O_PATH | os.O_CLOEXEC))
        for fd, words in ((r, "pipe"), (w, "pipe"), (a.fileno(), "socket"), (zero, "character device"),
                          (d, "directory"), (opath, "O_PATH")):
            e = self.refused(fd, sealbuf.NotMemfdError)
            self.assertIn(words, str(e))

    def test_regular_file(self):
        with tempfile.NamedTemporaryFile(dir=_disk_dir()) as f:
            f.write(b"a regular file")
            f.flush()
            fd = self.fd(os.open(f.name, os.O_RDONLY | os.O_CLOEXEC))
            if _on_tmpfs(fd):
                self.refused(fd, sealbuf.NotSealedError)  # a tmpfs file is a memfd without seals
            else:
                e = self.refused(fd, sealbuf.NotMemfdError)
                self.assertIn("disk file system", str(e))

    @unittest.skipUnless(os.path.isdir("/dev/shm"), "no /dev/shm")
    def test_dev_shm_file(self):
        # A tmpfs file answers F_GET_SEALS (with "seal": no sealing allowed):
        # it passes as a memfd and fails on its seals.
        with tempfile.NamedTemporaryFile(dir="/dev/shm") as f:
            f.write(b"shm")
            f.flush()
            fd = self.fd(os.open(f.name, os.O_RDONLY | os.O_CLOEXEC))
            e = self.refused(fd, sealbuf.NotSealedError)
            self.assertIn("shrink|grow|write", str(e))

    def test_closed_and_bad_descriptors(self):
        fd = memfd(b"x", IMMUTABLE)
        os.close(fd)
        with self.assertRaises(OSError) as cm:
            sealbuf.open_sealed(fd)
        self.assertEqual(errno.EBADF, cm.exception.errno)
        for bad in (-1, "3", 3.0, None):
            with self.assertRaises(TypeError):
                sealbuf.open_sealed(bad)

    def test_zero_size(self):
        fd = memfd(b"", IMMUTABLE)
        with sealbuf.open_sealed(fd) as s:
            self.assertEqual(0, s.size)
            self.assertEqual(b"", bytes(s.view))
            self.assertTrue(s.view.readonly)

    def test_max_size(self):
        data = b"y" * 5000
        for limit, ok in ((5000, True), (5001, True), (1 << 40, True), (4999, False), (0, False)):
            fd = self.fd(memfd(data, IMMUTABLE))
            if ok:
                s = sealbuf.open_sealed(fd, max_size=limit)
                s.close()
            else:
                e = self.refused(fd, sealbuf.TooLargeError, max_size=limit)
                self.assertIn("5000 bytes", str(e))

    def test_sparse_terabyte(self):
        fd = self.fd(memfd(size=1 << 40, seals=IMMUTABLE))
        self.refused(fd, sealbuf.TooLargeError, max_size=1 << 20)
        # Without a limit it maps (nothing is read but two pages): a
        # consumer of untrusted peers sets max_size.
        with sealbuf.open_sealed(os.dup(fd)) as s, s.view as v:
            self.assertEqual(1 << 40, s.size)
            self.assertEqual(0, v[0])
            self.assertEqual(0, v[(1 << 40) - 1])

    def test_seals_order(self):
        # The seals are checked before the size: an unsealed huge memfd is
        # NotSealed, not TooLarge (Go's order).
        fd = self.fd(memfd(size=1 << 30, seals=SHRINK))
        self.refused(fd, sealbuf.NotSealedError, max_size=1)


def _maps():
    """Mappings of memfds and of tmpfs or disk files (the allocator's
    anonymous ones come and go)."""
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if "/memfd:" in line or "/dev/shm/" in line or "/tmp" in line)


def _disk_dir():
    for d in (os.path.dirname(os.path.abspath(__file__)), tempfile.gettempdir()):
        if os.access(d, os.W_OK):
            return d
    return None


def _on_tmpfs(fd):
    from sealbuf import _memfd
    return _memfd.fs_magic(fd) == _memfd.TMPFS_MAGIC


if __name__ == "__main__":
    unittest.main()
