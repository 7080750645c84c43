"""The pool reader against a producer written from docs/pool.md, both
flavours (socket records, futex ring) over both socket types: messages,
releases, the hang-up, and every refusal."""

from __future__ import annotations

import mmap
import os
import socket
import struct
import threading
import time
import unittest

from support import (FUTURE_WRITE, GROW, MFD_HUGETLB, SHRINK, SOCKET_TYPES, WRITE, Case, PoolProducer, counts,
                     huge_page_size, memfd, pair, reserve_huge_pages)

import sealbuf
from sealbuf import _futex, _pool

PG = mmap.PAGESIZE
FLAVOURS = [("socket", False)] + ([("futex", True)] if _futex.supported() else [])


class PoolTest(Case):
    def each(self, fn, flavours=FLAVOURS, **kw):
        for tname, typ in SOCKET_TYPES:
            for fname, futex in flavours:
                with self.subTest(socket=tname, flavour=fname):
                    a, b = pair(typ)
                    p = PoolProducer(a, futex=futex, **kw)
                    try:
                        r = sealbuf.accept_pool(b)
                    except BaseException:
                        p.close()
                        b.close()
                        raise
                    try:
                        fn(p, r)
                    finally:
                        r.close()
                        p.close()

    def test_messages_and_releases(self):
        def run(p, r):
            self.assertEqual((4, 4096, 64), (r.slots, r.slot_size, r.max_header))
            self.assertEqual(p.futex, r.futex)
            self.assertEqual(SHRINK | GROW | FUTURE_WRITE, int(r.seals) & (SHRINK | GROW | FUTURE_WRITE))
            for rnd in range(3):
                gens = [p.send(i, b"slot %d round %d" % (i, rnd), header=b"h%d" % i) for i in range(4)]
                views = []
                for i in range(4):
                    h, v = r.receive()
                    self.assertEqual(b"h%d" % i, h)
                    self.assertEqual((i, gens[i], len(b"slot %d round %d" % (i, rnd))), (v.slot, v.generation, v.size))
                    self.assertTrue(v.view.readonly)
                    self.assertEqual(b"slot %d round %d" % (i, rnd), bytes(v.view))
                    views.append(v)
                for v in views:
                    v.release()
                    self.assertTrue(v.released)
                    with self.assertRaises(ValueError):
                        v.view
                self.assertEqual(sorted((i, gens[i]) for i in range(4)), sorted(p.releases(4)))
            # Zero-length messages and full slots.
            p.send(0, b"")
            h, v = r.receive()
            self.assertEqual((b"", 0, b""), (h, v.size, bytes(v.view)))
            v.release()
            p.send(1, b"z" * 4096, header=b"m" * 64)
            h, v = r.receive()
            self.assertEqual((b"m" * 64, b"z" * 4096), (h, v.snapshot()))
            with v:
                pass  # a View is a context manager: released on exit
            self.assertEqual(2, len(p.releases(2)))
        self.each(run)

    def test_read_only_and_unwritable(self):
        def run(p, r):
            p.send(0, b"ro")
            h, v = r.receive()
            with self.assertRaises(TypeError):
                v.view[0] = 1
            # future_write: no new writable mapping of the pool, not even ours
            import mmap
            with self.assertRaises(PermissionError):
                mmap.mmap(p.fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            v.release()
        self.each(run)

    def test_producer_hangup(self):
        def run(p, r):
            p.send(0, b"before")
            p.send(1, b"hang-up")
            p.conn.socket.shutdown(socket.SHUT_RDWR)
            h, v0 = r.receive()
            h, v1 = r.receive()
            self.assertEqual(b"hang-up", bytes(v1.view))
            with self.assertRaises(EOFError):
                r.receive()
            self.assertEqual(b"before", bytes(v0.view))  # held views stay readable
            v0.release()  # local only: the producer is gone
            v1.release()
        self.each(run)

    def test_waits_for_messages(self):
        def run(p, r):
            def later():
                time.sleep(0.02)  # past the futex wait: the reader parks on the socket
                p.send(2, b"late")
            t = threading.Thread(target=later)
            t.start()
            h, v = r.receive()
            t.join()
            self.assertEqual(b"late", bytes(v.view))
            v.release()
            # a quick one: woken out of futex(2)
            t = threading.Thread(target=lambda: p.send(3, b"quick"))
            t.start()
            h, v = r.receive()
            t.join()
            self.assertEqual(b"quick", bytes(v.view))
            v.release()
            self.assertEqual(2, len(p.releases(2)))
        self.each(run)

    def test_protocol_violations(self):
        def run(p, r):
            def expect(exc, send, handed_back=None):
                before = counts()
                send()
                with self.assertRaises(exc):
                    r.receive()
                self.assertEqual(before, counts())
                if handed_back is not None:
                    self.assertEqual([handed_back], p.releases(1))
                # the next message goes through
                gen = p.send(3, b"next")
                h, v = r.receive()
                self.assertEqual((3, gen, b"next"), (v.slot, v.generation, bytes(v.view)))
                v.release()
                self.assertEqual([(3, gen)], p.releases(1))

            expect(sealbuf.BadSlotError, lambda: p.send(0, b"x", raw=struct.pack("<c3sIII", b"M", b"\0\0\0", 9, 1, 1)))
            g = p.gen[0] + 1
            expect(sealbuf.BadLengthError, lambda: p.send(0, b"x", length=4097), handed_back=(0, g))
            expect(sealbuf.StaleGenerationError, lambda: p.send(0, b"x", gen=g))
            expect(sealbuf.StaleGenerationError, lambda: p.send(0, b"x", gen=(g - 5) & 0xFFFFFFFF))
            expect(sealbuf.PoolProtocolError, lambda: p.send(0, b"x", kind=b"R"))
            expect(sealbuf.PoolProtocolError,
                   lambda: p.send(0, raw=struct.pack("<c3sIII", b"M", b"\0\1\0", 0, 99, 1)))
            # A slot we still hold.
            gen = p.send(1, b"held")
            h, held = r.receive()
            expect(sealbuf.SlotBusyError, lambda: p.send(1, b"again"))
            held.release()
            self.assertEqual([(1, gen)], p.releases(1))
            # A header longer than the hello announced: the slot is handed back.
            g1 = p.gen[2] + 1
            expect(sealbuf.PoolProtocolError, lambda: p.send(2, b"x", header=b"H" * 65), handed_back=(2, g1))
            if not p.futex:
                fd = memfd(b"stowaway", SHRINK | GROW | WRITE)
                try:
                    g1 = p.gen[2] + 1
                    expect(sealbuf.PoolProtocolError, lambda: p.send(2, b"x", fds=[fd]), handed_back=(2, g1))
                finally:
                    os.close(fd)
                expect(sealbuf.PoolProtocolError, lambda: p.conn.send_files(b"short"))
            else:
                expect(sealbuf.PoolProtocolError, lambda: p.publish(9))  # a head far ahead: skipped
                expect(sealbuf.PoolProtocolError, lambda: p.conn.send_files(b"not a wake-up record"))
            # releasing twice
            p.send(0, b"once")
            h, v = r.receive()
            v.release()
            with self.assertRaises(sealbuf.DoubleReleaseError):
                v.release()
        self.each(run, max_header=64)

    def test_broken_stream(self):
        # A producer that breaks a stream's framing: receive reports it once,
        # then waits for the hang-up and raises EOFError (Go: recvFrame,
        # brokenTold), whatever else comes meanwhile; a futex pool's ring
        # still carries its messages.
        for fname, futex in FLAVOURS:
            with self.subTest(flavour=fname):
                a, b = pair(socket.SOCK_STREAM)
                p = PoolProducer(a, futex=futex)
                r = sealbuf.accept_pool(b)
                try:
                    before = counts()
                    p.conn.socket.sendall(b"garbage!")  # no frame prefix
                    with self.assertRaises(sealbuf.PoolProtocolError) as cm:
                        r.receive()
                    self.assertIn("out of step", str(cm.exception))
                    if futex:
                        gen = p.send(0, b"in the ring")
                        h, v = r.receive()
                        self.assertEqual(b"in the ring", bytes(v.view))
                        v.release()
                        self.assertEqual([(0, gen)], p.releases(1))
                    # More bytes, a descriptor among them: read, dropped,
                    # closed; no second protocol error, a wait instead.
                    fd = memfd(b"stowaway", SHRINK | GROW | WRITE)
                    p.conn.socket.sendmsg([b"junk" * 100], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                             struct.pack("i", fd))])
                    os.close(fd)
                    r.conn.socket.settimeout(0.05)
                    with self.assertRaises(socket.timeout):
                        r.receive()
                    r.conn.socket.settimeout(None)
                    self.assertEqual(before, counts())
                    p.conn.socket.shutdown(socket.SHUT_RDWR)
                    with self.assertRaises(EOFError):
                        r.receive()
                    with self.assertRaises(EOFError):
                        r.receive()
                finally:
                    r.close()
                    p.close()

    def test_receiver_control_messages(self):
        # Control messages the consumer's own socket options add to every
        # message (SO_PASSPIDFD installs a pidfd, SO_PASSCRED adds
        # credentials) are not the producer's: the hello, the messages and
        # the futex pool's wake-up records still work, and every pidfd is
        # closed (Go: TestPoolHostilePidfd).
        options = [("SO_PASSCRED", socket.SO_PASSCRED), ("SO_PASSPIDFD", getattr(socket, "SO_PASSPIDFD", 76))]
        for oname, opt in options:
            for tname, typ in SOCKET_TYPES:
                for fname, futex in FLAVOURS:
                    with self.subTest(option=oname, socket=tname, flavour=fname):
                        before = counts()
                        a, b = pair(typ)
                        try:
                            b.socket.setsockopt(socket.SOL_SOCKET, opt, 1)
                        except OSError as e:
                            a.close()
                            b.close()
                            self.skipTest("%s: %s" % (oname, e))
                        p = PoolProducer(a, futex=futex)
                        r = sealbuf.accept_pool(b)
                        try:
                            for i in range(20):
                                if i == 10:  # the consumer waits: a futex pool wakes it over the socket
                                    t = threading.Timer(0.02, p.send, (i % 4, b"message %d" % i))
                                    t.start()
                                else:
                                    p.send(i % 4, b"message %d" % i)
                                h, v = r.receive()
                                self.assertEqual(b"message %d" % i, bytes(v.view))
                                v.release()
                                p.releases(1)
                                if i == 10:
                                    t.join()
                        finally:
                            r.close()
                            p.close()
                        self.assertEqual(before, counts(), "a pidfd was left open")

    def test_refused_control_data_hands_slot_back(self):
        # A message refused for its control data (here more descriptors than
        # the Conn's max_files) was still read whole: its slot is handed
        # straight back, every descriptor closed, and the next message goes
        # through.
        for tname, typ in SOCKET_TYPES:
            with self.subTest(socket=tname):
                a, b = pair(typ, max_files=1)
                p = PoolProducer(a)
                r = sealbuf.accept_pool(b)
                fd = memfd(b"stowaway", SHRINK | GROW | WRITE)
                try:
                    before = counts()
                    gen = p.send(0, b"x", fds=[fd, fd])
                    with self.assertRaises(sealbuf.PoolProtocolError) as cm:
                        r.receive()
                    self.assertIn("more than", str(cm.exception))
                    self.assertEqual([(0, gen)], p.releases(1), "the refused message's slot")
                    self.assertEqual(before, counts())
                    gen = p.send(1, b"next")
                    h, v = r.receive()
                    self.assertEqual((1, gen, b"next"), (v.slot, v.generation, bytes(v.view)))
                    v.release()
                    self.assertEqual([(1, gen)], p.releases(1))
                finally:
                    os.close(fd)
                    r.close()
                    p.close()

    def test_close(self):
        a, b = pair()
        p = PoolProducer(a)
        r = sealbuf.accept_pool(b)
        try:
            p.send(0, b"kept")
            h, v = r.receive()
            mv = v.view[1:]  # memory of the slot, beyond the View's own memoryview
            with self.assertRaises(BufferError):
                r.close()  # unmapping under mv would crash: refused, nothing closed
            self.assertFalse(r.closed)
            self.assertEqual(b"ept", bytes(mv))
            mv.release()
            r.close()
            r.close()
            self.assertTrue(r.closed)
            with self.assertRaises(ValueError):
                v.release()
            with self.assertRaises(ValueError):
                r.receive()
            with self.assertRaises(EOFError):  # the producer sees the hang-up
                p.conn.receive_files()
        finally:
            r.close()
            p.close()

    def test_close_wakes_waiting_receive(self):
        for fname, futex in FLAVOURS:
            with self.subTest(flavour=fname):
                a, b = pair()
                p = PoolProducer(a, futex=futex)
                r = sealbuf.accept_pool(b)
                got = []

                def wait():
                    try:
                        r.receive()
                    except BaseException as e:
                        got.append(e)
                t = threading.Thread(target=wait)
                t.start()
                time.sleep(0.02)
                r.close()
                t.join(5)
                self.assertFalse(t.is_alive())
                self.assertIsInstance(got[0], (EOFError, ValueError, OSError))
                p.close()


class AcceptPoolTest(Case):
    def refused(self, exc, typ=socket.SOCK_SEQPACKET, max_size=None, **kw):
        a, b = pair(typ)
        with a, b:
            before = counts()
            p = PoolProducer(a, **kw)
            try:
                with self.assertRaises(exc) as cm:
                    sealbuf.accept_pool(b, max_size=max_size)
            finally:
                p.close()
            self.assertEqual(before[1:], counts()[1:], "a refused pool left a memfd or a mapping")
            self.assertFalse(b.closed, "the Conn stays the caller's")
            return cm.exception

    def test_refusals(self):
        e = self.refused(sealbuf.NotSealedError, seals=SHRINK | GROW)
        self.assertIn("future_write", str(e))
        self.refused(sealbuf.NotSealedError, seals=SHRINK | FUTURE_WRITE)
        self.refused(sealbuf.TooLargeError, max_size=4 * 4096 - 1)
        self.refused(sealbuf.PoolProtocolError, size=4 * 4096 + 4096)
        self.refused(sealbuf.PoolProtocolError, magic=b"sbpool\x00\x03")
        self.refused(sealbuf.PoolProtocolError, magic=b"notapool")
        self.refused(sealbuf.PoolProtocolError, slots=129)
        self.refused(sealbuf.PoolProtocolError, max_header=(64 << 10) + 1)
        self.refused(sealbuf.PoolProtocolError, stride=100)
        # The stride runs from the slot size to the slot size rounded up to
        # a page (Go: parsePoolHello); a wider one would map memory no slot
        # uses.
        e = self.refused(sealbuf.PoolProtocolError, slot_size=PG, stride=2 * PG)
        self.assertIn("want %d to %d" % (PG, PG), str(e))
        self.refused(sealbuf.PoolProtocolError, slot_size=100, stride=PG + 1)
        self.refused(sealbuf.PoolProtocolError, slot_size=PG + 1, stride=3 * PG)
        fd = memfd(b"extra", SHRINK | GROW | WRITE)
        try:
            self.refused(sealbuf.PoolProtocolError, extra_fds=[fd])
        finally:
            os.close(fd)
        if _futex.supported():
            self.refused(sealbuf.NotSealedError, futex=True, ring_seals=SHRINK)
            self.refused(sealbuf.PoolProtocolError, futex=True, ring_seals=SHRINK | GROW | FUTURE_WRITE)
            self.refused(sealbuf.PoolProtocolError, futex=True, ring_size=4096 * 3)

    def test_stride_bounds(self):
        # Both ends of the stride's range are accepted.
        for slot_size, stride in ((100, 100), (100, PG), (PG + 1, PG + 1), (PG + 1, 2 * PG)):
            with self.subTest(slot_size=slot_size, stride=stride):
                a, b = pair()
                p = PoolProducer(a, slot_size=slot_size, stride=stride)
                try:
                    with sealbuf.accept_pool(b) as r:
                        p.send(3, b"s" * slot_size)
                        h, v = r.receive()
                        self.assertEqual(b"s" * slot_size, bytes(v.view))
                        v.release()
                finally:
                    p.close()

    def test_slots_not_populated(self):
        # Accept maps the slots without populating them (as Go's Accept): a
        # producer that never wrote its slots must not make the consumer
        # allocate slots x slot size up front. Memory comes as slots are
        # written and read.
        a, b = pair()
        p = PoolProducer(a, slots=64, slot_size=64 << 10)
        try:
            with sealbuf.accept_pool(b) as r:
                self.assertEqual(0, os.fstat(p.fd).st_blocks, "accepting the pool allocated its pages")
                p.send(3, b"x")
                h, v = r.receive()
                self.assertEqual(b"x", bytes(v.view))
                v.release()
                self.assertLess(os.fstat(p.fd).st_blocks * 512, 64 * (64 << 10) // 2)
        finally:
            p.close()

    def test_not_a_memfd(self):
        a, b = pair()
        with a, b:
            r, w = os.pipe()
            try:
                a.send_files(struct.pack("<8sIIQQ", b"sbpool\x00\x01", 1, 0, 4096, 4096), r)
                with self.assertRaises(sealbuf.NotMemfdError):
                    sealbuf.accept_pool(b)
                a.send_files(b"x" * 40)
                with self.assertRaises(sealbuf.PoolProtocolError):
                    sealbuf.accept_pool(b)
            finally:
                os.close(r)
                os.close(w)

    def test_conn_max_size_applies(self):
        a, b = pair(max_size=4096)
        with a, b:
            p = PoolProducer(a)
            try:
                with self.assertRaises(sealbuf.TooLargeError):
                    sealbuf.accept_pool(b)
            finally:
                p.close()

    @unittest.skipUnless(_futex.supported(), "the futex flavour is not supported here")
    def test_hugetlbfs_ring(self):
        # Both sides write the ring, so it cannot be write-sealed; on
        # hugetlbfs the producer could punch its page out and the consumer's
        # next access would raise SIGBUS: refused before it is mapped, as Go's
        # openRing refuses it. The ring is otherwise right (seals, size, and
        # the producer maps it), so only the file system is refused.
        hp = huge_page_size()
        shape = _hugetlb_ring_shape(hp) if hp else None
        if shape is None:
            self.skipTest("no ring layout is a whole number of %d-byte huge pages" % hp)
        try:
            os.close(os.memfd_create("probe", os.MFD_CLOEXEC | MFD_HUGETLB))
        except OSError as e:
            self.skipTest("no hugetlbfs memfd here: %s" % e)
        reserve_huge_pages(self, 1)
        slots, max_header = shape
        e = self.refused(sealbuf.PoolProtocolError, futex=True, slots=slots, max_header=max_header,
                         slot_size=4096, ring_hugetlb=True)
        self.assertIn("hugetlbfs", str(e))

    @unittest.skipIf(_futex.supported(), "the futex flavour is supported here")
    def test_futex_unsupported(self):
        self.refused(sealbuf.UnsupportedError, futex=True)


def _hugetlb_ring_shape(hp: int):
    """(slots, max_header) whose ring is a whole number of hp-byte pages
    (hugetlbfs sizes are), or None."""
    for slots in range(1, _pool.MAX_SLOTS + 1):
        for entry in range(64, ((20 + _pool.MAX_HEADER + 63) & ~63) + 1, 64):
            if _pool.ring_layout(slots, entry - 20)[0] % hp == 0:
                return slots, entry - 20
    return None


if __name__ == "__main__":
    unittest.main()
