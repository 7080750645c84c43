"""The errors sealbuf raises. Every refusal is a SealbufError; the classes
mirror the Go package's sentinels (memfd.ErrNotMemfd, ErrNotSealed,
ErrTooLarge, ErrMalformed, ErrTooManyFiles, io.ErrShortBuffer,
pool.ErrProtocol and its precise kinds)."""

from __future__ import annotations


class SealbufError(Exception):
    """Base class of every refusal: a descriptor, a message or a pool that
    does not meet the contract. Operating-system failures that are not
    refusals (a broken socket, an exhausted descriptor table) stay
    OSError; a peer that hung up is EOFError."""


class NotMemfdError(SealbufError):
    """The descriptor is not a memfd: a pipe, socket, device, directory,
    disk file or O_PATH descriptor (Go: memfd.ErrNotMemfd)."""


class NotSealedError(SealbufError):
    """The memfd lacks seals the policy requires (Go: ErrNotSealed).
    ``missing`` and ``present`` are the seal sets (sealbuf.Seals)."""

    def __init__(self, message: str, missing: int = 0, present: int = 0):
        super().__init__(message)
        self.missing = missing
        self.present = present

    def __reduce__(self):
        return (type(self), (self.args[0] if self.args else "", self.missing, self.present))


class TooLargeError(SealbufError):
    """The memfd is larger than max_size allows, or too large to map at all
    (Go: ErrTooLarge)."""


class MalformedError(SealbufError):
    """A message does not follow the wire format: a bad stream frame, a
    descriptor count that does not match the frame's, control data that does
    not parse, a peer that hung up inside a frame (Go: ErrMalformed)."""


class TooManyFilesError(SealbufError):
    """A message carried more descriptors than the Conn's limit (at most
    253, the kernel's), or the kernel truncated its control data
    (MSG_CTRUNC). Every descriptor received was closed (Go: ErrTooManyFiles)."""


class HeaderTooLongError(SealbufError):
    """A message's header was longer than ``max_header``. The message was
    consumed and its descriptors closed; the Conn stays usable (Go: an error
    matching io.ErrShortBuffer). ``size`` is the header's real length."""

    def __init__(self, message: str, size: int | None = None):
        super().__init__(message)
        self.size = size

    def __reduce__(self):
        return (type(self), (self.args[0] if self.args else "", self.size))


class UnsupportedError(SealbufError):
    """What the peer asks for cannot be done safely from this Python (the
    futex flavour of a pool on a machine without x86 memory ordering)."""


class PoolProtocolError(SealbufError):
    """A pool message from the producer broke the pool's wire format or its
    rules (Go: pool.ErrProtocol). The message was dropped, its descriptors
    closed; the next receive goes on. Subclasses name the precise rule."""


class BadSlotError(PoolProtocolError):
    """A slot index outside the pool (Go: pool.ErrBadSlot)."""


class BadLengthError(PoolProtocolError):
    """A length past the end of the slot (Go: pool.ErrBadLength); the slot was
    handed straight back."""


class StaleGenerationError(PoolProtocolError):
    """A message whose generation does not move forward (Go:
    pool.ErrStaleGeneration)."""


class SlotBusyError(PoolProtocolError):
    """The producer sent a slot the consumer still holds (Go:
    pool.ErrSlotBusy)."""


class DoubleReleaseError(SealbufError):
    """A View released twice (local misuse, not the peer's: Go:
    pool.ErrDoubleRelease)."""
