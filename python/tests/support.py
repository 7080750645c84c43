"""Helpers for sealbuf's tests: descriptor and mapping counts, raw memfds
made the way another producer would make them, socket pairs, and a pool
producer written against docs/pool.md (so the reader is tested against the
wire format, not against itself)."""

from __future__ import annotations

import fcntl
import mmap
import os
import socket
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sealbuf  # noqa: E402
from sealbuf import _futex, _pool  # noqa: E402

F_ADD_SEALS = getattr(fcntl, "F_ADD_SEALS", 1033)
MFD_HUGETLB = getattr(os, "MFD_HUGETLB", 0x0004)
SEAL, SHRINK, GROW, WRITE, FUTURE_WRITE = 1, 2, 4, 8, 16
IMMUTABLE = SHRINK | GROW | WRITE

try:
    import numpy  # noqa: F401
    HAVE_NUMPY = True
except ImportError:
    HAVE_NUMPY = False


def counts():
    """(descriptors, memfd descriptors, memfd mappings) of this process."""
    fds = os.listdir("/proc/self/fd")
    memfds = 0
    for name in fds:
        try:
            if os.readlink("/proc/self/fd/" + name).startswith("/memfd:"):
                memfds += 1
        except OSError:
            pass
    with open("/proc/self/maps") as f:
        maps = sum(1 for line in f if "/memfd:" in line)
    return len(fds), memfds, maps


class Case(unittest.TestCase):
    """A TestCase that checks descriptor and mapping counts stay flat."""

    def setUp(self):
        self._before = counts()
        # Registered first, so it runs last: after every other cleanup.
        self.addCleanup(self.assertFlat, "descriptors or memfd mappings leaked (after cleanups)")

    def assertFlat(self, msg=None):
        """Counts as at setUp: call it where the test holds nothing any more
        (it runs again, automatically, after the cleanups)."""
        self.assertEqual(self._before, counts(), msg or "descriptors or memfd mappings leaked")

    def closing(self, obj):
        self.addCleanup(_close_quietly, obj)
        return obj

    def fd(self, fd):
        """Closes fd when the test ends unless it is closed already."""
        self.addCleanup(_close_fd_quietly, fd)
        return fd


def _close_quietly(obj):
    try:
        obj.close()
    except Exception:
        pass


def _close_fd_quietly(fd):
    try:
        os.close(fd)
    except OSError:
        pass


def memfd(data=b"", seals=0, name="test", size=None):
    """A raw memfd holding data (truncated to size if given), seals added."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    if data:
        os.pwrite(fd, data, 0)
    if size is not None:
        os.ftruncate(fd, size)
    if seals:
        fcntl.fcntl(fd, F_ADD_SEALS, seals)
    return fd


def pattern(seed: str, n: int) -> bytes:
    """n deterministic bytes: SHA-256(seed) repeated (the Go tests' connPattern)."""
    import hashlib
    s = hashlib.sha256(seed.encode()).digest()
    return (s * (n // len(s) + 1))[:n]


def pair(typ=socket.SOCK_SEQPACKET, **opts):
    a, b = socket.socketpair(socket.AF_UNIX, typ)
    return sealbuf.Conn(a, **opts), sealbuf.Conn(b, **opts)


SOCKET_TYPES = (("seqpacket", socket.SOCK_SEQPACKET), ("stream", socket.SOCK_STREAM))


def huge_page_size() -> int:
    """The default huge page size (what MFD_HUGETLB uses), or 0."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("Hugepagesize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _free_huge_pages() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("HugePages_Free:"):
                return int(line.split()[1])
    return 0


def reserve_huge_pages(case: unittest.TestCase, n: int) -> None:
    """Makes n more default-size huge pages free for the test, through
    /proc/sys/vm/nr_hugepages (root only), and restores the old count when
    the test ends, unless someone else changed it meanwhile (other tests may
    reserve pages too); skips the test where that cannot be done (as Go's
    reserveHugePages)."""
    path = "/proc/sys/vm/nr_hugepages"
    try:
        with open(path) as f:
            old = f.read().strip()
        want = int(old) + n
    except (OSError, ValueError) as e:
        raise unittest.SkipTest("huge pages: %s" % e)
    try:
        with open(path, "w") as f:
            f.write(str(want))
    except OSError as e:
        raise unittest.SkipTest("huge pages: cannot reserve (%s); needs root" % e)
    case.addCleanup(_restore_quietly, path, str(want), old)
    if _free_huge_pages() < n:
        raise unittest.SkipTest("huge pages: asked for %d more, the kernel has %d free" % (n, _free_huge_pages()))


def _restore_quietly(path: str, ours: str, old: str) -> None:
    try:
        with open(path) as f:
            if f.read().strip() != ours:
                return
        with open(path, "w") as f:
            f.write(old)
    except OSError:
        pass


class PoolProducer:
    """A pool producer written from docs/pool.md: the hello, 'M' records,
    'R' records back; with futex=True the ring. Knobs let a test break every
    rule."""

    def __init__(self, conn, slots=4, slot_size=4096, max_header=64, futex=False, seals=None,
                 size=None, magic=None, extra_fds=(), ring_seals=None, ring_size=None, stride=None,
                 ring_hugetlb=False):
        self.conn = conn
        self.slots = slots
        self.slot_size = slot_size
        self.max_header = max_header
        self.stride = stride or (slot_size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
        self.futex = futex
        self.gen = [0] * slots
        self.fd = os.memfd_create("test-pool", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        total = self.slots * self.stride
        os.ftruncate(self.fd, total if size is None else size)
        fcntl.fcntl(self.fd, F_ADD_SEALS, SHRINK | GROW if seals is None else seals & (SHRINK | GROW))
        self.mem = mmap.mmap(self.fd, total if size is None else size, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)
        later = (FUTURE_WRITE | SEAL) if seals is None else seals & ~(SHRINK | GROW)
        if later:
            fcntl.fcntl(self.fd, F_ADD_SEALS, later)
        fds = [self.fd]
        self.ring = None
        if futex:
            rsize, self.entry, self.msg_off = _pool.ring_layout(slots, max_header)
            self.ring_fd = os.memfd_create("test-pool-ring", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING |
                                           (MFD_HUGETLB if ring_hugetlb else 0))
            os.ftruncate(self.ring_fd, rsize if ring_size is None else ring_size)
            if ring_seals is None:
                ring_seals = SHRINK | GROW | SEAL
            fcntl.fcntl(self.ring_fd, F_ADD_SEALS, ring_seals & (SHRINK | GROW))
            self.ring = mmap.mmap(self.ring_fd, rsize if ring_size is None else ring_size, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)
            if ring_seals & ~(SHRINK | GROW):
                fcntl.fcntl(self.ring_fd, F_ADD_SEALS, ring_seals & ~(SHRINK | GROW))
            self.words = memoryview(self.ring).cast("I")
            import ctypes
            self._anchor = ctypes.c_char.from_buffer(self.ring)
            self.base = ctypes.addressof(self._anchor)
            self.published = 0
            self.rel_taken = 0
            fds.append(self.ring_fd)
        fds.extend(extra_fds)
        if magic is None:
            magic = _pool.MAGIC_RING if futex else _pool.MAGIC
        hello = struct.pack("<8sIIQQ", magic, slots, max_header, slot_size, self.stride)
        conn.send_files(hello, *fds)

    def write(self, slot, data):
        off = slot * self.stride
        self.mem[off:off + len(data)] = data

    def send(self, slot, data=b"", header=b"", gen=None, length=None, fds=(), kind=b"M", raw=None):
        """Fills slot with data and sends its message; returns (gen)."""
        if gen is None:
            self.gen[slot] = (self.gen[slot] + 1) & 0xFFFFFFFF
            gen = self.gen[slot]
        self.write(slot, data)
        rec = struct.pack("<c3sIII", kind, b"\0\0\0", slot, gen, len(data) if length is None else length)
        if raw is not None:
            rec = raw
        if self.ring is None:
            self.conn.send_files(rec + header, *fds)
        else:
            e = self.msg_off + (self.published % self.slots) * self.entry
            self.ring[e:e + 16] = rec
            self.ring[e + 16:e + 20] = struct.pack("<I", len(header))
            self.ring[e + 20:e + 20 + len(header)] = header
            self.publish(1)
        return gen

    def publish(self, n):
        """Moves the message head n entries on and wakes the consumer."""
        self.published = (self.published + n) & 0xFFFFFFFF
        self.words[0] = self.published
        _futex.wake_op(self.base + _pool.RING_CONS_STATE, _futex.CLAIM_WAKE)
        if self.words[_pool.RING_CONS_STATE // 4] == _pool.RING_SOCKET:
            self.conn.send_files(struct.pack("<c3sIII", b"W", b"\0\0\0", 0, 0, 0))

    def releases(self, want=1, timeout=5.0):
        """Reads release records until want arrived: [(slot, gen), ...]."""
        import time
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < want:
            if self.ring is None:
                self.conn.socket.settimeout(max(0.01, deadline - time.monotonic()))
                payload, fds = self.conn.receive_files(256)
                assert not fds
                for i in range(0, len(payload), 16):
                    k, _, slot, gen, length = struct.unpack_from("<c3sIII", payload, i)
                    assert k == b"R" and length == 0, payload
                    out.append((slot, gen))
            else:
                head = self.words[_pool.RING_REL_HEAD // 4]
                while self.rel_taken != head:
                    off = _pool.RING_REL_OFF + (self.rel_taken % self.slots) * 16
                    k, _, slot, gen, length = struct.unpack_from("<c3sIII", self.ring, off)
                    assert k == b"R" and length == 0
                    out.append((slot, gen))
                    self.rel_taken = (self.rel_taken + 1) & 0xFFFFFFFF
                if len(out) < want:
                    if time.monotonic() > deadline:
                        raise TimeoutError("no release came")
                    time.sleep(0.0005)
        return out

    def close(self):
        if self.ring is not None:
            del self._anchor
            self.words.release()
            self.ring.close()
            os.close(self.ring_fd)
            self.ring = None
        if self.mem is not None:
            self.mem.close()
            self.mem = None
            os.close(self.fd)
        self.conn.close()
