"""The memfd itself: creating one (the creation ladder), checking that a
received descriptor is one (Go: memfd.Adopt), and mapping it read-only.

Nothing here reads or moves a file offset or changes status flags: all I/O
is positional (pwrite) or through mmap."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import stat
import sys
import threading
import time

from ._errors import NotMemfdError, NotSealedError, TooLargeError
from ._seals import F_ADD_SEALS, F_GET_SEALS, Seals, as_seals, seal_names

MFD_CLOEXEC = getattr(os, "MFD_CLOEXEC", 0x0001)
MFD_ALLOW_SEALING = getattr(os, "MFD_ALLOW_SEALING", 0x0002)
MFD_NOEXEC_SEAL = getattr(os, "MFD_NOEXEC_SEAL", 0x0008)  # Linux 6.3+

TMPFS_MAGIC = 0x01021994
HUGETLBFS_MAGIC = 0x958458F6

#: The largest size sealbuf maps: 128 TiB, the user address space of x86-64
#: with 4-level page tables (Go: maxMappable).
MAX_MAPPABLE = 1 << 47

PAGE_SIZE = mmap.PAGESIZE

_O_PATH = getattr(os, "O_PATH", 0o10000000)

# --- creating ---

_noexec_unsupported = False
_noexec_lock = threading.Lock()


def create(name: str) -> int:
    """memfd_create(name) with MFD_CLOEXEC|MFD_ALLOW_SEALING, and
    MFD_NOEXEC_SEAL where the kernel has it: on EINVAL only that flag is
    dropped (never ALLOW_SEALING), and the probe is cached once the call
    without it succeeds. EACCES (vm.memfd_noexec=2) is raised as is."""
    global _noexec_unsupported
    flags = MFD_CLOEXEC | MFD_ALLOW_SEALING
    if not _noexec_unsupported:
        try:
            return os.memfd_create(name, flags | MFD_NOEXEC_SEAL)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
        # EINVAL is also a bad name: cache the probe only if the call
        # without the flag succeeds.
        fd = os.memfd_create(name, flags)
        with _noexec_lock:
            _noexec_unsupported = True
        return fd
    return os.memfd_create(name, flags)


def pwrite_all(fd: int, data: memoryview) -> None:
    """Writes all of data at offset 0 with pwrite (the kernel caps one call
    near 2 GiB, so it loops)."""
    off = 0
    while off < len(data):
        n = os.pwrite(fd, data[off:], off)
        if n <= 0:
            raise OSError(errno.EIO, "pwrite wrote nothing")
        off += n


def add_seals(fd: int, seals: int) -> None:
    """F_ADD_SEALS. A write seal is refused with EBUSY while a writable
    shared mapping exists, but also, rarely, while some page still has an
    extra reference (the kernel waits ~75 ms, then gives up): that kind
    passes, so EBUSY is retried a few times (as Go's sealWrite)."""
    for attempt in range(3):
        try:
            fcntl.fcntl(fd, F_ADD_SEALS, seals)
            return
        except OSError as e:
            if e.errno != errno.EBUSY or attempt == 2:
                raise
            time.sleep(0.001)


def get_seals(fd: int) -> Seals:
    return as_seals(fcntl.fcntl(fd, F_GET_SEALS))


# --- checking a received descriptor ---


class Info:
    """What inspect observed. The seals are read before the size, so when
    they include shrink and grow the size is final."""

    __slots__ = ("seals", "size", "hugetlb", "name")

    def __init__(self, seals: Seals, size: int, hugetlb: bool, name: str):
        self.seals = seals
        self.size = size
        self.hugetlb = hugetlb
        self.name = name


def inspect(fd: int) -> Info:
    """Checks, without reading, writing or changing fd, that it is a memfd:
    a regular file on tmpfs or hugetlbfs whose seals can be queried, opened
    for I/O (not O_PATH). The order is Go's memfd.Adopt: F_GET_SEALS (it
    answers only for tmpfs and hugetlbfs files, so its success is the
    file-system check), fstat (S_ISREG, the size), fstatfs only to tell
    hugetlbfs from tmpfs, the name last. Raises NotMemfdError."""
    try:
        seals = get_seals(fd)
    except OSError as e:
        raise _diagnose(fd, e) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise NotMemfdError("it is a %s, not a regular file" % _file_kind(st.st_mode))
    hugetlb = False
    if st.st_blksize != PAGE_SIZE:
        magic = fs_magic(fd)
        if magic not in (TMPFS_MAGIC, HUGETLBFS_MAGIC):
            raise NotMemfdError(
                "it is a regular file on a disk file system (magic %#x), not on tmpfs or hugetlbfs" % magic)
        hugetlb = magic == HUGETLBFS_MAGIC
    return Info(seals, st.st_size, hugetlb, _kernel_name(fd))


def _diagnose(fd: int, seal_err: OSError) -> Exception:
    """Says why a descriptor whose seals cannot be queried is no memfd."""
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)  # EBADF for a closed number: raised as OSError
    if fl & _O_PATH:
        return NotMemfdError("an O_PATH descriptor cannot be read or mapped")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        return NotMemfdError("it is a %s, not a regular file" % _file_kind(st.st_mode))
    try:
        magic = fs_magic(fd)
    except OSError:
        magic = None
    if magic is not None and magic not in (TMPFS_MAGIC, HUGETLBFS_MAGIC):
        return NotMemfdError(
            "it is a regular file on a disk file system (magic %#x), not on tmpfs or hugetlbfs" % magic)
    return NotMemfdError("its seals cannot be queried (%s)" % os.strerror(seal_err.errno or 0))


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "pipe"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symbolic link")):
        if test(mode):
            return kind
    return "file of unknown type"


def _kernel_name(fd: int) -> str:
    """The kernel's name: /proc/self/fd's "/memfd:NAME (deleted)" as NAME;
    other tmpfs files keep their path; "" without /proc."""
    try:
        link = os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        return ""
    if link.startswith("/memfd:"):
        link = link[len("/memfd:"):]
        if link.endswith(" (deleted)"):
            link = link[: -len(" (deleted)")]
    return link


class _Statfs(ctypes.Structure):
    # struct statfs starts with f_type (__fsword_t: a long on 64-bit ports,
    # an int on 32-bit ones: ctypes.c_long either way, except s390x, which
    # has no word-sized f_type); the rest is room.
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 256)]


_libc = None


def fs_magic(fd: int) -> int:
    """fstatfs(fd).f_type's low 32 bits (the magic is 32 bits everywhere;
    hugetlbfs's overflows a 32-bit int)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.fstatfs.argtypes = (ctypes.c_int, ctypes.POINTER(_Statfs))
        _libc.fstatfs.restype = ctypes.c_int
    buf = _Statfs()
    if _libc.fstatfs(fd, ctypes.byref(buf)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "fstatfs: " + os.strerror(e))
    return buf.f_type & 0xFFFFFFFF


# --- the policy, checked before anything is mapped ---


def verify(info: Info, require: int, max_size: int | None) -> int:
    """Go's verifyInfo: required seals ⊆ present (never equality: kernels
    add seals such as exec on their own), then the size against max_size and
    what can be mapped. Returns the size."""
    missing = require & ~int(info.seals)
    if missing:
        raise not_sealed(info.name, missing, info.seals)
    if max_size is not None and info.size > max_size:
        raise TooLargeError("memfd %r has %d bytes, more than the %d allowed (max_size)"
                            % (info.name, info.size, max_size))
    if info.size > MAX_MAPPABLE or info.size > sys.maxsize:
        raise TooLargeError("memfd %r has %d bytes, more than can be mapped" % (info.name, info.size))
    return info.size


def not_sealed(name: str, missing: int, present: int) -> NotSealedError:
    return NotSealedError(
        "memfd %r is not sealed against %s (has %s): the sender must seal the buffer (or add these seals) "
        "before sending it" % (name, seal_names(missing), seal_names(int(present))),
        missing=as_seals(missing), present=as_seals(int(present)))


# --- mapping ---

_TRACKFD = sys.version_info >= (3, 13)


def map_file(fd: int, size: int, prot: int, flags: int) -> mmap.mmap:
    """mmap of the first size bytes (size > 0). On Python 3.13+ the mmap
    object does not dup fd (trackfd=False); before, it holds a close-on-exec
    duplicate of its own, closed with it."""
    if _TRACKFD:
        return mmap.mmap(fd, size, flags=flags, prot=prot, trackfd=False)
    return mmap.mmap(fd, size, flags=flags, prot=prot)


def map_read_only(fd: int, size: int) -> mmap.mmap | None:
    """A read-only mapping of a write-sealed memfd: MAP_SHARED|PROT_READ,
    or MAP_PRIVATE|PROT_READ (the same pages, no copy) where the kernel
    (before 6.7) refuses shared mappings of write-sealed memfds with EPERM.
    None for size 0 (nothing to map)."""
    if size == 0:
        return None
    try:
        return map_file(fd, size, mmap.PROT_READ, mmap.MAP_SHARED)
    except PermissionError:
        return map_file(fd, size, mmap.PROT_READ, mmap.MAP_PRIVATE)
