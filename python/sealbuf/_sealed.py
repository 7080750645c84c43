"""Sealed: an immutable memfd and its read-only mapping; from_bytes makes
one, open_sealed checks and maps a received one (Go: FromBytes, Open)."""

from __future__ import annotations

import os
import threading

from . import _memfd
from ._seals import IMMUTABLE, SEALED, Seals


class Sealed:
    """An immutable shared-memory buffer: a memfd sealed at least
    shrink|grow|write, so nobody — not even its producer — can change its
    bytes or its size, and reading it can never fault.

    ``view`` is a read-only memoryview of the mapping (no copy); ``ndarray``
    a read-only numpy array over the same memory. A Sealed owns its
    descriptor (``fileno()`` lends it) and its mapping: ``close()`` releases
    both. close() refuses (BufferError, nothing released) while views of the
    mapping are still alive — memoryviews from ``view`` (use ``with s.view
    as v:``, or ``v.release()``), slices of them, numpy arrays — since
    unmapping under them would crash the process. A second close() does
    nothing. Sealed is a context manager.

    Python cannot survive a SIGBUS (a read past the end of a file that
    shrank), so sealbuf maps only what cannot fault: write-sealed buffers
    (and a pool's slots, which are sealed against any size change).
    """

    def __init__(self, fd: int, size: int, seals: Seals, name: str, mapping=None):
        # Internal: from_bytes and open_sealed make Sealed objects.
        self._fd = fd
        self._size = size
        self._seals = seals
        self._name = name
        self._map = mapping
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """The memfd's size in bytes (fixed: it is sealed)."""
        return self._size

    def __len__(self) -> int:
        return self._size

    @property
    def seals(self) -> Seals:
        """The seals present, read when the Sealed was made or opened."""
        return self._seals

    @property
    def name(self) -> str:
        """The memfd's name (the kernel's, for a received one)."""
        return self._name

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        """The memfd's descriptor, lent: the Sealed still owns it. Raises
        ValueError after close()."""
        fd = self._fd
        if fd < 0:
            raise ValueError("sealbuf: Sealed %r is closed" % self._name)
        return fd

    def _mapping(self):
        with self._lock:
            if self._fd < 0:
                raise ValueError("sealbuf: Sealed %r is closed" % self._name)
            if self._map is None and self._size > 0:
                self._map = _memfd.map_read_only(self._fd, self._size)
            return self._map

    @property
    def view(self) -> memoryview:
        """A read-only memoryview of the whole buffer, with no copy (an empty
        one for size 0). Each access makes a new memoryview of the same
        mapping; release it (``with s.view as v:``) before close()."""
        m = self._mapping()
        if m is None:
            return memoryview(b"")
        return memoryview(m)

    def ndarray(self, dtype, shape=None):
        """A read-only numpy array of dtype over the buffer, with no copy:
        the whole buffer (its size must be a multiple of the item size), or
        the first prod(shape) items shaped as shape. Needs numpy; the array
        keeps the mapping busy (close() refuses) until it is gone."""
        import numpy  # optional dependency: only this method needs it

        dt = numpy.dtype(dtype)
        m = self._mapping()
        buf = m if m is not None else b""
        if shape is None:
            if dt.itemsize == 0 or self._size % dt.itemsize:
                raise ValueError("sealbuf: a %d-byte buffer is no whole number of %s items"
                                 % (self._size, dt))
            count = self._size // dt.itemsize
        else:
            shape = (shape,) if isinstance(shape, int) else tuple(shape)
            count = 1
            for d in shape:
                count *= d
            if count * dt.itemsize > self._size:
                raise ValueError("sealbuf: shape %s of %s needs %d bytes, the buffer has %d"
                                 % (shape, dt, count * dt.itemsize, self._size))
        a = numpy.frombuffer(buf, dtype=dt, count=count)
        if shape is not None:
            a = a.reshape(shape)
        a.flags.writeable = False  # read-only already (the buffer is); made explicit
        return a

    def close(self) -> None:
        """Unmaps the buffer and closes the memfd. Raises BufferError, and
        releases nothing, while views of the mapping are alive."""
        with self._lock:
            if self._fd < 0:
                return
            if self._map is not None:
                try:
                    self._map.close()
                except BufferError:
                    raise BufferError(
                        "sealbuf: Sealed %r still has views of its mapping (memoryviews, slices, numpy "
                        "arrays): release them, then close it" % self._name) from None
                self._map = None
            fd, self._fd = self._fd, -1
        os.close(fd)

    def __enter__(self) -> "Sealed":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else "fd=%d" % self._fd
        return "<sealbuf.Sealed %r %d bytes seals=%s %s>" % (self._name, self._size, self._seals, state)


def from_bytes(data, name: str = "sealbuf") -> Sealed:
    """A sealed copy of data (any C-contiguous bytes-like object), exactly
    len(data) bytes: memfd_create (close-on-exec, no-exec where the kernel
    has it), pwrite (no producer mapping, no page zeroing), then the seals
    shrink|grow|write|seal. The caller owns the result and must close it;
    data is not retained."""
    mv = memoryview(data)
    if not mv.c_contiguous:
        raise ValueError("sealbuf: from_bytes needs C-contiguous data")
    mv = mv.cast("B") if mv.ndim != 1 or mv.format != "B" else mv
    fd = _memfd.create(name)
    try:
        _memfd.pwrite_all(fd, mv)
        _memfd.add_seals(fd, SEALED)
        seals = _memfd.get_seals(fd)
    except BaseException:
        os.close(fd)
        raise
    return Sealed(fd, len(mv), seals, name)


def open_sealed(fd: int, max_size: int | None = None, *, require: int = 0) -> Sealed:
    """Checks that fd is an immutable memfd and maps it read-only.

    Before anything is mapped it checks, in Go's order, that fd is a memfd
    (a regular file on tmpfs or hugetlbfs answering F_GET_SEALS, not O_PATH;
    else NotMemfdError), that it carries at least shrink|grow|write plus
    ``require`` (which only adds; else NotSealedError naming each missing
    seal), and that its size is at most max_size and mappable (else
    TooLargeError). O_RDWR and O_RDONLY descriptors both work.

    On success the Sealed owns fd (close the Sealed, not fd); on error fd
    stays the caller's, open and unchanged.
    """
    if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0:
        raise TypeError("sealbuf: open_sealed needs a descriptor number, not %r" % (fd,))
    info = _memfd.inspect(fd)
    size = _memfd.verify(info, IMMUTABLE | int(require), max_size)
    mapping = _memfd.map_read_only(fd, size)
    return Sealed(fd, size, info.seals, info.name, mapping)
