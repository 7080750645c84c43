"""futex(2) on a word of a shared mapping, through ctypes (Go:
internal/futex). The operations are the shared (not process-private)
ones, keyed by the file page and offset, so the two processes may map the
word at different addresses.

Pure Python has no atomic read-modify-write and no memory fences. The
futex flavour of a pool gets both from the kernel: FUTEX_WAKE_OP applies an
atomic operation to a word (a locked instruction, a full barrier) and wakes
its waiters in one system call. Plain 4-byte loads and stores of aligned
words (memoryview of format "I") are single instructions; on x86 they are
also acquire loads and release stores (TSO), which is what the ring needs.
On other machines the ring would need fences Python cannot issue, so the
futex flavour is refused there (supported() is False)."""

from __future__ import annotations

import ctypes
import os
import platform

FUTEX_WAIT = 0
FUTEX_WAKE = 1
FUTEX_WAKE_OP = 5

FUTEX_OP_SET = 0
FUTEX_OP_ANDN = 3
FUTEX_OP_CMP_EQ = 0

_SYS_FUTEX = {"x86_64": 202, "amd64": 202, "i386": 240, "i486": 240, "i586": 240, "i686": 240}

_machine = platform.machine().lower()
_nr = _SYS_FUTEX.get(_machine)
_syscall = None


def supported() -> bool:
    """Whether the futex flavour can run here: an x86 machine (TSO) with
    libc's syscall()."""
    return _nr is not None and _load() is not None


def why_unsupported() -> str:
    if _nr is None:
        return ("this is a %s machine: Python cannot issue the memory fences a futex pool's ring needs beyond x86's "
                "ordering" % (platform.machine() or "unknown"))
    return "libc's syscall() cannot be loaded through ctypes"


def _load():
    global _syscall
    if _syscall is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.syscall
        except (OSError, AttributeError):
            return None
        fn.restype = ctypes.c_long
        _syscall = fn
    return _syscall


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def op(operation: int, oparg: int, cmp: int, cmparg: int) -> int:
    """FUTEX_OP(): the encoded operation of FUTEX_WAKE_OP."""
    return ((operation & 0xF) << 28) | ((cmp & 0xF) << 24) | ((oparg & 0xFFF) << 12) | (cmparg & 0xFFF)


def _call(addr: int, futex_op: int, val: int, timeout_or_val2, addr2: int, val3: int) -> int:
    r = _syscall(ctypes.c_long(_nr), ctypes.c_void_p(addr), ctypes.c_long(futex_op), ctypes.c_long(val),
                 timeout_or_val2, ctypes.c_void_p(addr2), ctypes.c_long(val3))
    if r < 0:
        return -ctypes.get_errno()
    return r


def wait(addr: int, expected: int, seconds: float) -> None:
    """Blocks while the word at addr holds expected, for at most seconds; it
    returns on a wake-up, a change, the timeout or a signal alike: the caller
    looks at the word again. The GIL is released while it waits."""
    sec = int(seconds)
    ts = _Timespec(sec, int((seconds - sec) * 1e9))
    _call(addr, FUTEX_WAIT, expected, ctypes.byref(ts), 0, 0)


def wake(addr: int, n: int = 1) -> int:
    r = _call(addr, FUTEX_WAKE, n, None, 0, 0)
    return max(r, 0)


def wake_op(addr: int, encoded_op: int) -> int:
    """FUTEX_WAKE_OP with addr as both words: atomically applies encoded_op
    to the word (a full barrier) and wakes one of its waiters if the
    comparison with the old value holds. Raises OSError on failure."""
    r = _call(addr, FUTEX_WAKE_OP, 0, ctypes.c_void_p(1), addr, encoded_op)
    if r < 0:
        raise OSError(-r, "futex FUTEX_WAKE_OP: " + os.strerror(-r))
    return r


#: Take a word from 1 (in futex(2)) to 0 (running) and wake its waiter;
#: leave 0 and 2 (parked on the socket) as they are: the compare-and-swap
#: 1 -> 0 of Go's claimWake, as one atomic ANDN.
CLAIM_WAKE = op(FUTEX_OP_ANDN, 1, FUTEX_OP_CMP_EQ, 1)


def set_op(value: int) -> int:
    """Atomically store value (an exchange: a full barrier), waking nobody."""
    return op(FUTEX_OP_SET, value, FUTEX_OP_CMP_EQ, 0xFFF)
