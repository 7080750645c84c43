"""Seal bits (fcntl F_ADD_SEALS / F_GET_SEALS) and their names, printed as
the Go package prints memfd.Seals: lowercase names joined by "|" in kernel
bit order, "none" for the empty set."""

from __future__ import annotations

import enum
import fcntl

# fcntl names them on Python 3.9+ (F_ADD_SEALS/F_GET_SEALS since 3.8); the
# numbers are the kernel's and never change.
F_ADD_SEALS = getattr(fcntl, "F_ADD_SEALS", 1033)
F_GET_SEALS = getattr(fcntl, "F_GET_SEALS", 1034)


class Seals(enum.IntFlag):
    """A set of memfd seals. ``str()`` gives e.g. ``"seal|shrink|grow|write"``."""

    SEAL = 0x01  # the seal set itself can no longer change
    SHRINK = 0x02  # the file cannot get smaller
    GROW = 0x04  # the file cannot get larger
    WRITE = 0x08  # the contents cannot change
    FUTURE_WRITE = 0x10  # no new writable mappings or writes; existing writable mappings stay
    EXEC = 0x20  # the exec permission bits cannot change (Linux 6.3+)

    def __str__(self) -> str:
        return seal_names(int(self))

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


_NAMES = ("seal", "shrink", "grow", "write", "future_write", "exec")
_KNOWN = (1 << len(_NAMES)) - 1

#: What a consumer needs to read the bytes as immutable and fault-free:
#: no shrink, no grow, no write (Go: memfd.SealImmutable).
IMMUTABLE = Seals.SHRINK | Seals.GROW | Seals.WRITE

#: What Conn.send's buffers and from_bytes carry: immutable, and the seal
#: set closed.
SEALED = IMMUTABLE | Seals.SEAL

#: What a pool's memfd must carry (Go: poolSeals): a fixed size, and no new
#: writable mapping or write.
POOL = Seals.SHRINK | Seals.GROW | Seals.FUTURE_WRITE


def seal_names(bits: int) -> str:
    """Names of the seal bits, as Go's memfd.Seals.String prints them."""
    if bits == 0:
        return "none"
    parts = [name for i, name in enumerate(_NAMES) if bits & (1 << i)]
    rest = bits & ~_KNOWN
    if rest:
        parts.append(hex(rest))
    return "|".join(parts)


def as_seals(bits: int) -> Seals:
    """bits as a Seals, keeping bits that have no name."""
    try:
        return Seals(bits)
    except ValueError:  # an IntFlag that refuses unknown bits (never in 3.9-3.13)
        return Seals(bits & _KNOWN)
