"""The consumer side of a pool (Go: pool.Accept, pool.Reader, pool.View;
the wire format is docs/pool.md's).

A producer (Go's pool.New) makes one memfd of fixed-size slots,
seals it shrink|grow|future_write and sends it once, in a hello. Then each
message is a 16-byte record naming a slot, its generation and its length,
plus a header; the consumer reads the slot in place and releases it with a
16-byte 'R' record, and only then does the producer reuse it.

Over the socket flavour the records travel as ordinary Conn messages. The
futex flavour (magic "sbpool\\0\\2") moves them into a second memfd, the
ring, which both sides map writable, and wakes a waiting side with
futex(2); the socket then carries wake-up records ('W') and the hang-up.
"""

from __future__ import annotations

import ctypes
import mmap
import socket
import struct
import sys
import threading

from . import _futex, _memfd, _wire
from ._conn import Conn
from ._errors import (BadLengthError, BadSlotError, DoubleReleaseError, HeaderTooLongError, MalformedError,
                      NotSealedError, PoolProtocolError, SlotBusyError, StaleGenerationError, TooManyFilesError,
                      UnsupportedError)
from ._seals import POOL, Seals, seal_names

HELLO = struct.Struct("<8sIIQQ")
HELLO_LEN = 32
RECORD = struct.Struct("<c3sIII")
RECORD_LEN = 16
MAGIC = b"sbpool\x00\x01"
MAGIC_RING = b"sbpool\x00\x02"
KIND_MESSAGE, KIND_RELEASE, KIND_WAKE = b"M", b"R", b"W"

MAX_SLOTS = 128
MAX_SLOT_SIZE = 1 << 31
MAX_HEADER = 64 << 10

# The ring (docs/pool.md "Futex pools"): byte offsets of the words.
RING_MSG_HEAD, RING_PROD_STATE, RING_REL_HEAD, RING_CONS_STATE, RING_REL_OFF = 0, 64, 128, 192, 256
RING_RUNNING, RING_FUTEX, RING_SOCKET = 0, 1, 2
_U32 = 0xFFFFFFFF
_WAKE_RECORD = RECORD.pack(KIND_WAKE, b"\0\0\0", 0, 0, 0)


def ring_layout(slots: int, max_header: int):
    """The ring's size, the size of one message entry and the offset of the
    message ring, for slots slots and headers of up to max_header bytes."""
    entry = (RECORD_LEN + 4 + max_header + 63) & ~63
    msg_off = (RING_REL_OFF + slots * RECORD_LEN + 63) & ~63
    return _page_up(msg_off + slots * entry), entry, msg_off


class Hello:
    __slots__ = ("slots", "max_header", "slot_size", "stride", "ring")

    def __init__(self, slots, max_header, slot_size, stride, ring):
        self.slots, self.max_header, self.slot_size, self.stride, self.ring = slots, max_header, slot_size, stride, ring


def parse_hello(b: bytes) -> Hello:
    """Decodes and bounds-checks a hello (Go: parsePoolHello)."""
    if len(b) >= 8 and b[:7] == MAGIC[:7] and b[:8] not in (MAGIC, MAGIC_RING):
        raise PoolProtocolError("a pool hello of format version %d; this sealbuf speaks versions 1 and 2 "
                                "(a futex pool): upgrade it" % b[7])
    if len(b) != HELLO_LEN or b[:8] not in (MAGIC, MAGIC_RING):
        raise PoolProtocolError("the first message is not a pool hello (%d bytes, want %d starting %r or %r): is "
                                "the peer a sealbuf pool.Writer?" % (len(b), HELLO_LEN, MAGIC, MAGIC_RING))
    magic, slots, max_header, slot_size, stride = HELLO.unpack(b)
    if slots == 0 or slots > MAX_SLOTS:
        raise PoolProtocolError("hello announces %d slots, want 1 to %d" % (slots, MAX_SLOTS))
    if max_header > MAX_HEADER:
        raise PoolProtocolError("hello announces %d-byte headers, more than %d" % (max_header, MAX_HEADER))
    if slot_size == 0 or slot_size > MAX_SLOT_SIZE:
        raise PoolProtocolError("hello announces %d-byte slots, want 1 to %d" % (slot_size, MAX_SLOT_SIZE))
    widest = _page_up(slot_size)
    if (stride < slot_size or stride > widest or stride > _memfd.MAX_MAPPABLE // slots
            or stride > sys.maxsize // slots):
        # At most the slot size rounded up to a page: a wider stride would
        # map (and let the producer make the consumer's reads allocate)
        # memory no slot uses.
        raise PoolProtocolError("hello announces a stride of %d bytes for %d-byte slots: want %d to %d"
                                % (stride, slot_size, slot_size, widest))
    return Hello(slots, max_header, slot_size, stride, magic == MAGIC_RING)


def _page_up(n: int) -> int:
    """n rounded up to a whole number of pages."""
    return (n + _memfd.PAGE_SIZE - 1) & ~(_memfd.PAGE_SIZE - 1)


def parse_record(b: bytes, kind: bytes):
    """Decodes a record of the expected kind: (slot, generation, length)."""
    if len(b) < RECORD_LEN:
        raise PoolProtocolError("a %d-byte pool message, shorter than its %d-byte record" % (len(b), RECORD_LEN))
    k, reserved, slot, gen, length = RECORD.unpack_from(b)
    if k != kind or reserved != b"\0\0\0":
        raise PoolProtocolError("record of kind %r (reserved bytes %s), want %r" % (k, reserved.hex(" "), kind))
    return slot, gen, length


def accept_pool(conn: Conn, max_size: int | None = None, *, futex_wait: float = 0.001) -> "PoolReader":
    """Receives a pool's hello from conn (sent by Go's pool.New) and maps the
    pool (Go: pool.Accept).

    Before mapping anything it checks, in Go's order, the hello (else
    PoolProtocolError), that the descriptor is a memfd (NotMemfdError),
    sealed at least shrink|grow|future_write (NotSealedError, naming each
    missing seal: without them the producer could resize the pool under us,
    or we could map it writable), that its size is exactly what the hello
    announces (PoolProtocolError) and fits max_size and the Conn's max_size
    (TooLargeError). It then maps the pool read-only and shared. For a
    futex pool it checks the ring first: a memfd not on hugetlbfs, sealed
    shrink|grow, not against writes, of the size the hello implies;
    ``futex_wait`` is how long a receive waits in futex(2) before it parks
    on the socket.

    It maps the pool without populating it: memory is used as the producer
    fills slots (its cost) and as the consumer reads them. max_size (and
    the Conn's max_size) therefore bounds address space and the shared
    memory the consumer's reads can make the kernel allocate: a producer
    that never wrote its slots makes each page the consumer reads a fresh
    zeroed page, up to slots x slot size.

    On every error the received descriptors are closed and conn stays the
    caller's; on success the PoolReader owns conn.
    """
    limit = conn.max_size
    if max_size is not None:
        limit = max_size if limit is None else min(limit, max_size)
    try:
        hello, fds = conn.receive_files(HELLO_LEN + 1)
    except HeaderTooLongError as e:
        raise PoolProtocolError("sealbuf: accept pool: the first message is not a pool hello (%s)" % e) from None
    try:
        h = parse_hello(hello)
        want = 2 if h.ring else 1
        if len(fds) != want:
            raise PoolProtocolError("the hello carries %d descriptors, want exactly %d (all closed)" % (len(fds), want))
        if h.ring and not _futex.supported():
            raise UnsupportedError("a futex pool cannot be read here: %s. Ask the producer for a socket pool (no "
                                   "pool.WithFutex)" % _futex.why_unsupported())
        ring = _open_ring(fds[1], h) if h.ring else None
        try:
            pool_map, seals = _open_slots(fds[0], h, limit)
        except BaseException:
            if ring is not None:
                ring.close()
            raise
    except Exception as e:
        e.args = ("sealbuf: accept pool: %s" % e,)
        raise
    finally:
        _wire.close_fds(fds)  # the mappings are what stays
    return PoolReader(conn, h, pool_map, seals, ring, futex_wait)


def _open_slots(fd: int, h: Hello, limit):
    info = _memfd.inspect(fd)
    size = _memfd.verify(info, POOL, limit)
    if size != h.slots * h.stride:
        raise PoolProtocolError("memfd %r has %d bytes, but the hello announces %d slots x %d"
                                % (info.name, size, h.slots, h.stride))
    # Not populated (Go: openSlots): populating would make the kernel
    # allocate every page of a pool the producer never wrote, for us.
    return _memfd.map_file(fd, size, mmap.PROT_READ, mmap.MAP_SHARED), info.seals


def _open_ring(fd: int, h: Hello) -> "_Ring":
    info = _memfd.inspect(fd)
    size, _, _ = ring_layout(h.slots, h.max_header)
    if info.hugetlb:
        # Both sides write the ring, so it cannot be sealed against writes,
        # and on hugetlbfs a producer could punch its page out: once the huge
        # page pool is empty, our next access would raise SIGBUS, which
        # Python cannot survive.
        raise PoolProtocolError("ring memfd %r is on hugetlbfs, where a page can be punched out under the "
                                "consumer's reads: a sealbuf producer never makes one" % info.name)
    missing = (Seals.SHRINK | Seals.GROW) & ~int(info.seals)
    if missing:
        e = _memfd.not_sealed(info.name, missing, info.seals)
        raise NotSealedError("the ring: %s" % e, missing=e.missing, present=e.present)
    if int(info.seals) & (Seals.WRITE | Seals.FUTURE_WRITE):
        raise PoolProtocolError("ring memfd %r is sealed against writes (%s): the consumer could not publish its "
                                "releases" % (info.name, seal_names(int(info.seals))))
    if info.size != size:
        raise PoolProtocolError("ring memfd %r has %d bytes, want %d for %d slots and %d-byte headers"
                                % (info.name, info.size, size, h.slots, h.max_header))
    m = _memfd.map_file(fd, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED)
    return _Ring(m, h)


class _Ring:
    """The consumer's mapping of a futex pool's ring. It writes only its own
    words (release head, consumer state) and the release ring, and reads the
    producer's; every entry is copied once, then checked."""

    def __init__(self, m: mmap.mmap, h: Hello):
        self.map = m
        self.slots = h.slots
        self.max_header = h.max_header
        _, self.entry, self.msg_off = ring_layout(h.slots, h.max_header)
        self.mem = memoryview(m)
        self.words = self.mem.cast("I")  # aligned native uint32: single loads and stores
        self._anchor = ctypes.c_char.from_buffer(m)
        base = ctypes.addressof(self._anchor)
        self.prod_state_addr = base + RING_PROD_STATE
        self.cons_state_addr = base + RING_CONS_STATE
        self.published = 0  # releases this side published
        self.taken = 0  # messages this side took

    def peer_head(self) -> int:
        return self.words[RING_MSG_HEAD // 4]

    def set_state(self, value: int) -> None:
        """Atomically stores our state (a full barrier: the load of the
        producer's head that follows cannot pass it)."""
        _futex.wake_op(self.cons_state_addr, _futex.set_op(value))

    def store_state(self, value: int) -> None:
        self.words[RING_CONS_STATE // 4] = value

    def prod_state(self) -> int:
        return self.words[RING_PROD_STATE // 4]

    def take_message(self):
        """The next message entry: None when there is none, else (record or
        None, header, error or None)."""
        head = self.peer_head()
        n = (head - self.taken) & _U32
        if n == 0:
            return None
        if n > self.slots:
            self.taken = head
            return None, b"", PoolProtocolError(
                "the peer's message ring head moved %d entries ahead, more than its %d entries (skipped)"
                % (n, self.slots))
        off = self.msg_off + (self.taken % self.slots) * self.entry
        self.taken = (self.taken + 1) & _U32
        fixed = bytes(self.mem[off: off + RECORD_LEN + 4])  # our copy: the producer may be writing
        try:
            rec = parse_record(fixed, KIND_MESSAGE)
        except PoolProtocolError as e:
            return None, b"", e
        (hl,) = struct.unpack_from("<I", fixed, RECORD_LEN)
        if hl > self.max_header:
            return rec, b"", PoolProtocolError(
                "a %d-byte header, longer than the %d bytes the producer announced (message dropped, slot handed "
                "back)" % (hl, self.max_header))
        start = off + RECORD_LEN + 4
        return rec, bytes(self.mem[start: start + hl]), None

    def publish_release(self, slot: int, gen: int) -> None:
        off = RING_REL_OFF + (self.published % self.slots) * RECORD_LEN
        self.mem[off: off + RECORD_LEN] = RECORD.pack(KIND_RELEASE, b"\0\0\0", slot, gen, 0)
        self.published = (self.published + 1) & _U32
        self.words[RING_REL_HEAD // 4] = self.published  # a release store on x86

    def claim_wake(self) -> int:
        """After publishing: wakes the producer if it waits in futex(2)
        (its state 1 -> 0, atomically, as Go's compare-and-swap) and returns
        its state after that: RING_SOCKET means it is parked on the socket
        and needs a wake-up record."""
        _futex.wake_op(self.prod_state_addr, _futex.CLAIM_WAKE)
        return self.prod_state()

    def close(self) -> None:
        del self._anchor
        self.words.release()
        self.mem.release()
        self.map.close()


class PoolReader:
    """The consumer side of a pool (Go: pool.Reader): maps the producer's
    slots read-only once; receive() returns each message as a View of a
    slot, with no copy. Release every View: the producer reuses a slot only
    after its release, and blocks when all are held.

    Trust: the pool's size is sealed, so reading a View never faults,
    whatever the producer does, and this process cannot write the slots.
    But the slots are NOT write-sealed: the producer keeps its writable
    mapping, and a producer that breaks the protocol can change the bytes
    while you read them. Read in place when you trust the producer or a
    change is harmless (you checksum, forward, display); when you validate
    and then act on what you validated, copy first (View.snapshot()). For
    bytes nobody can change, use Sealed buffers (Conn.receive).

    The PoolReader owns its Conn (close() closes it, and the producer takes
    every slot back). receive() calls are serialised; View.release() may run
    on another thread. A context manager.
    """

    def __init__(self, conn: Conn, h: Hello, pool_map: mmap.mmap, seals: Seals, ring, futex_wait: float):
        self._conn = conn
        self._h = h
        self._map = pool_map
        self._seals = seals
        self._ring = ring
        self._futex_wait = futex_wait
        self._held = [None] * h.slots  # generation while a View holds the slot
        self._last = [0] * h.slots  # the newest generation received
        self._views = {}  # slot -> View, for close()
        self._lock = threading.Lock()
        self._recv_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._closed = False
        self._peer_gone = False
        self._news = None  # futex pool: a protocol violation seen on the socket
        self._broken = False  # a stream out of step, reported once already

    slots = property(lambda self: self._h.slots, doc="The number of slots.")
    slot_size = property(lambda self: self._h.slot_size, doc="The size of every slot in bytes.")
    max_header = property(lambda self: self._h.max_header, doc="The largest header the producer sends.")
    futex = property(lambda self: self._h.ring, doc="Whether records travel through a futex ring.")
    seals = property(lambda self: self._seals, doc="The pool memfd's seals, read when it was accepted.")
    conn = property(lambda self: self._conn, doc="The Conn (owned by the PoolReader).")

    @property
    def closed(self) -> bool:
        return self._closed

    def receive(self):
        """Waits for the next message: (header bytes, View).

        The producer hung up: EOFError (Views held stay readable until
        close()). A message that breaks the protocol — a slot outside the
        pool (BadSlotError), a length past the slot (BadLengthError), a
        generation that does not move forward (StaleGenerationError), a slot
        we still hold (SlotBusyError), descriptors attached, a malformed
        record — raises a PoolProtocolError; the message is dropped (a slot
        we could have taken is handed straight back) and the next receive
        goes on. Over a stream whose framing the producer broke no message
        boundary can be found any more: that PoolProtocolError comes once,
        then receive waits for the hang-up and raises EOFError (a futex
        pool's ring still delivers its messages first). The socket's timeout
        applies to the wait.
        """
        with self._recv_lock:
            if self._closed:
                raise ValueError("sealbuf: pool: receive on a closed PoolReader")
            if self._ring is not None:
                rec, header, err = self._recv_ring()
            else:
                rec, header, err = self._recv_socket()
            if rec is None:
                raise err
            slot, gen, length = rec
            with self._lock:
                if self._closed:
                    raise ValueError("sealbuf: pool: the PoolReader was closed during receive")
                verr = self._accept(slot, gen, length)
                if verr is None and err is None:
                    v = View(self, slot, gen, length)
                    self._views[slot] = v
                    return header, v
                hand_back = verr is None or isinstance(verr, BadLengthError)
                if hand_back:
                    self._held[slot] = None
            if hand_back:
                self._send_release(slot, gen)
            raise verr if verr is not None else err

    def _accept(self, slot: int, gen: int, length: int):
        """Validates a message record and marks its slot held (Go:
        acceptLocked). Returns the refusal, or None."""
        h = self._h
        if slot >= h.slots:
            return BadSlotError("sealbuf: pool: the producer sent slot %d of a %d-slot pool" % (slot, h.slots))
        if self._held[slot] is not None:
            return SlotBusyError("sealbuf: pool: the producer sent slot %d (generation %d) while we still hold it "
                                 "(generation %d)" % (slot, gen, self._held[slot]))
        delta = (gen - self._last[slot]) & _U32
        if delta == 0 or delta >= 1 << 31:  # int32(gen - last) <= 0
            return StaleGenerationError("sealbuf: pool: the producer sent slot %d generation %d, not newer than "
                                        "generation %d received before" % (slot, gen, self._last[slot]))
        self._last[slot] = gen
        self._held[slot] = gen
        if length > h.slot_size:
            return BadLengthError("sealbuf: pool: the producer sent %d bytes of a %d-byte slot (slot %d generation "
                                  "%d, handed back)" % (length, h.slot_size, slot, gen))
        return None

    # --- the socket flavour ---

    def _recv_raw(self, limit: int):
        """One Conn message, its descriptors closed: (payload, real length,
        error for descriptors attached). A stream whose framing breaks here
        raises its PoolProtocolError this once; the callers then read it
        with _drain_broken."""
        conn = self._conn
        try:
            if conn.stream:
                payload, n, fds = _wire.recv_frame(conn.socket, limit, conn.max_files)
            else:
                payload, n, fds = _wire.recv_packet(conn.socket, limit, conn.max_files)
        except EOFError:
            self._peer_gone = True
            raise EOFError("sealbuf: pool: the producer hung up") from None
        except (MalformedError, TooManyFilesError) as e:
            msg = str(e)
            if msg.startswith("sealbuf: receive: "):
                msg = msg[len("sealbuf: receive: "):]
            err = PoolProtocolError("sealbuf: pool: %s" % msg)
            if getattr(e, "out_of_step", False):
                self._broken = True
            whole = getattr(e, "whole_message", None)
            if whole is None:
                raise err from None
            # Refused for its control data (more descriptors than fit, a
            # malformed or unexpected control message; all closed), but read
            # whole: its record still names a slot to hand back, as Go's
            # closeAttached lets Receive do.
            payload, n = whole
            return payload, n, err
        err = None
        if fds:
            _wire.close_fds(fds)
            err = PoolProtocolError("sealbuf: pool: the peer attached descriptors to a pool message (%d received, "
                                    "all closed)" % len(fds))
        return payload, n, err

    def _drain_broken(self) -> None:
        """Reads a stream whose framing broke (Go: drainBroken): no message
        can be found in it any more, but the hang-up must still be seen.
        Waits (under the socket's timeout) for what comes, discards it,
        closes any descriptors that came along, and raises EOFError at the
        hang-up."""
        conn = self._conn
        fds: list = []
        try:
            data, ancdata, mflags, _ = _wire._recvmsg(conn.socket, 1 << 16, _wire.anc_space(conn.max_files))
            _wire.take_fds(ancdata, mflags, conn.max_files, fds)
        except EOFError:
            data = b""
        finally:
            _wire.close_fds(fds)
        if not data:
            self._peer_gone = True
            raise EOFError("sealbuf: pool: the producer hung up")

    def _recv_socket(self):
        if self._broken:
            # The framing broke and receive said so once: only the hang-up
            # is left to find (Go: recvFrame, brokenTold).
            while True:
                self._drain_broken()
        limit = RECORD_LEN + self._h.max_header
        payload, n, err = self._recv_raw(limit)
        try:
            rec = parse_record(payload, KIND_MESSAGE)
        except PoolProtocolError as e:
            e.args = ("sealbuf: pool: %s" % e,)
            return None, b"", e
        if err is None and n > limit:
            err = PoolProtocolError("sealbuf: pool: a header longer than the %d bytes the producer announced "
                                    "(message dropped, slot handed back)" % self._h.max_header)
        return rec, payload[RECORD_LEN:], err

    # --- the futex flavour ---

    def _recv_ring(self):
        r = self._ring
        while True:
            got = r.take_message()
            if got is not None:
                rec, header, err = got
                if err is not None:
                    err.args = ("sealbuf: pool: %s" % err,)
                return rec, header, err
            if self._news is not None:
                err, self._news = self._news, None
                return None, b"", err
            if self._peer_gone:
                raise EOFError("sealbuf: pool: the producer hung up")
            self._ring_wait()

    def _ring_wait(self) -> None:
        """Waits until the producer publishes past what we took: in futex(2)
        on our state word for futex_wait seconds, then parked on the socket,
        where the producer's wake-up record or its hang-up ends the wait. It
        may return with nothing new; the caller looks again."""
        r = self._ring
        seen = r.taken
        if r.peer_head() != seen:
            return
        r.set_state(RING_FUTEX)
        if r.peer_head() == seen:
            _futex.wait(r.cons_state_addr, RING_FUTEX, self._futex_wait)
        if r.peer_head() != seen:
            r.store_state(RING_RUNNING)
            return
        # Nothing new: from here on a publisher sends a wake-up record
        # instead of waking the futex (Go: the swap futex -> socket; a
        # publisher that took our state to running first is seen below).
        r.set_state(RING_SOCKET)
        try:
            if r.peer_head() != seen:
                return
            self._park_on_socket()
        finally:
            r.store_state(RING_RUNNING)

    def _park_on_socket(self) -> None:
        if self._broken:
            # The ring still carries messages; the socket only the hang-up
            # (and wake-up records that cannot be told from the rest).
            try:
                self._drain_broken()
            except EOFError:
                pass  # _peer_gone is set: receive reports it after the ring's messages
            return
        try:
            payload, n, err = self._recv_raw(RECORD_LEN)
        except EOFError:
            return  # _peer_gone is set: receive reports it after the ring's messages
        except PoolProtocolError as e:
            self._news = e
            return
        if err is None and (n != RECORD_LEN or payload != _WAKE_RECORD):
            err = PoolProtocolError("sealbuf: pool: a %d-byte message on the socket of a futex pool, where only "
                                    "16-byte wake-up records travel" % n)
        if err is not None:
            self._news = err

    # --- releases ---

    def _release(self, v: "View") -> None:
        with self._lock:
            if self._closed:
                raise ValueError("sealbuf: pool: release on a closed PoolReader")
            if self._held[v.slot] != v.generation or self._views.get(v.slot) is not v:
                raise DoubleReleaseError("sealbuf: pool: release of slot %d generation %d: released already"
                                         % (v.slot, v.generation))
            self._held[v.slot] = None
            del self._views[v.slot]
            v._drop()
            gone = self._peer_gone
        if not gone:
            self._send_release(v.slot, v.generation)

    def _send_release(self, slot: int, gen: int) -> None:
        """Sends one release record: into the ring, or over the socket. A
        producer that is gone makes it local only."""
        try:
            with self._send_lock:
                if self._closed:
                    return
                if self._ring is not None:
                    self._ring.publish_release(slot, gen)
                    if self._ring.claim_wake() != RING_SOCKET:
                        return
                    record = _WAKE_RECORD
                else:
                    record = RECORD.pack(KIND_RELEASE, b"\0\0\0", slot, gen, 0)
                _wire.send_message(self._conn.socket, self._conn.stream, record, [])
        except (BrokenPipeError, ConnectionResetError, EOFError):
            self._peer_gone = True

    def close(self) -> None:
        """Closes the Conn (the producer gets every slot back), unmaps the
        pool and the ring. Every View is invalid from here on. Raises
        BufferError, and closes nothing, while memoryviews or arrays made
        from a View's memory are still alive (unmapping under them would
        crash the process). A second close() does nothing. A receive()
        waiting in another thread returns (EOFError or ValueError)."""
        with self._lock:
            if self._closed:
                return
            for v in list(self._views.values()):
                v._drop()
            try:
                self._map.close()
            except BufferError:
                raise BufferError("sealbuf: pool: memory of a View is still in use (a memoryview, a slice, a numpy "
                                  "array): release it, then close the PoolReader") from None
            self._closed = True
            self._views.clear()
        with self._send_lock:
            try:  # wakes a receive() waiting on the socket, and tells the producer
                self._conn.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            if self._ring is not None:
                try:  # wakes a producer in futex(2): it finds the hang-up on the socket; and our own waiter
                    self._ring.claim_wake()
                    _futex.wake(self._ring.cons_state_addr)
                except OSError:
                    pass
            self._conn.close()
        if self._ring is not None:
            with self._recv_lock:  # a receive() running uses the ring: it returns first
                self._ring.close()

    def __enter__(self) -> "PoolReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class View:
    """One received message (Go: pool.View): a read-only, zero-copy window
    on the slot the producer filled. Release it when done: the producer
    cannot reuse the slot before. See PoolReader for what it guarantees and
    what it does not (the producer can still write the slot)."""

    __slots__ = ("_r", "slot", "generation", "size", "_mv", "_released")

    def __init__(self, r: PoolReader, slot: int, gen: int, size: int):
        self._r = r
        self.slot = slot  #: the slot's index
        self.generation = gen  #: the slot's generation for this message
        self.size = size  #: the message length in bytes
        self._mv = None
        self._released = False

    def __len__(self) -> int:
        return self.size

    @property
    def released(self) -> bool:
        return self._released

    @property
    def view(self) -> memoryview:
        """The message: a read-only memoryview of size bytes of the slot,
        valid until release() (which releases it) or the reader's close()."""
        if self._released:
            raise ValueError("sealbuf: pool: view of a released View (slot %d generation %d)"
                             % (self.slot, self.generation))
        if self._mv is None:
            off = self.slot * self._r._h.stride
            whole = memoryview(self._r._map)
            self._mv = whole[off: off + self.size]
            whole.release()
        return self._mv

    def snapshot(self) -> bytes:
        """A private copy of the message: bytes the producer can no longer
        change."""
        return bytes(self.view)

    def release(self) -> None:
        """Hands the slot back to the producer (a 16-byte release record).
        A second release raises DoubleReleaseError; after the reader's
        close(), ValueError. When the producer is gone the release is only
        local."""
        if self._r.closed:
            raise ValueError("sealbuf: pool: release on a closed PoolReader")
        if self._released:
            raise DoubleReleaseError("sealbuf: pool: release of slot %d generation %d: released already"
                                     % (self.slot, self.generation))
        self._r._release(self)

    def _drop(self) -> None:
        self._released = True
        mv, self._mv = self._mv, None
        if mv is not None:
            try:
                mv.release()
            except BufferError:
                pass  # exported further (numpy): the reader's close() will refuse until it is gone

    def __enter__(self) -> "View":
        return self

    def __exit__(self, *exc) -> None:
        if not self._released:
            self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return "<sealbuf.View slot=%d generation=%d %d bytes %s>" % (self.slot, self.generation, self.size, state)
