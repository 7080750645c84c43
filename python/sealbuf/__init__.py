"""sealbuf for Python: the consumer (and producer) side of sealed memfd
buffers passed between processes, speaking the wire format of the Go
package github.com/sealbuf/sealbuf with nothing but the standard library
(numpy optional, for Sealed.ndarray). Linux only.

    conn = sealbuf.dial("/run/app.sock")          # SOCK_SEQPACKET
    header, bufs = conn.receive()                 # each: a memfd sealed shrink|grow|write, or refused
    for b in bufs:
        with b, b.view as v:                      # read-only, zero-copy, cannot fault
            process(header, v)

Producer: ``conn.send(b"header", sealbuf.from_bytes(data))``. Pools (Go's
pool.New): ``reader = sealbuf.accept_pool(conn)``, ``header, v =
reader.receive()``, ``v.view``, ``v.release()``.

Python cannot survive a SIGBUS, so sealbuf maps only what cannot fault:
memfds sealed against shrinking — write-sealed buffers (immutable), and a
pool's slots (sealed against any size change, but not against the
producer's writes).
"""

from ._conn import Conn, Listener, dial, listen
from ._errors import (BadLengthError, BadSlotError, DoubleReleaseError, HeaderTooLongError, MalformedError,
                      NotMemfdError, NotSealedError, PoolProtocolError, SealbufError, SlotBusyError,
                      StaleGenerationError, TooLargeError, TooManyFilesError, UnsupportedError)
from ._pool import PoolReader, View, accept_pool
from ._sealed import Sealed, from_bytes, open_sealed
from ._seals import IMMUTABLE, Seals
from ._wire import MAX_FILES, MAX_HEADER

__version__ = "0.1.0"

__all__ = [
    "Conn", "Listener", "dial", "listen",
    "Sealed", "from_bytes", "open_sealed",
    "PoolReader", "View", "accept_pool",
    "Seals", "IMMUTABLE", "MAX_FILES", "MAX_HEADER",
    "SealbufError", "NotMemfdError", "NotSealedError", "TooLargeError", "MalformedError", "TooManyFilesError",
    "HeaderTooLongError", "UnsupportedError", "PoolProtocolError", "BadSlotError", "BadLengthError",
    "StaleGenerationError", "SlotBusyError", "DoubleReleaseError",
]
