"""The Python side of the Go interop tests (python_interop_test.go in the
repository root). The Go test starts it with a role, and with its end of a
socketpair as descriptor 3 where the role needs one:

    receive            Go sends, Python receives with Conn.receive, reports
                       what it found (JSON header) and, for "echo ..."
                       messages, replies with a from_bytes copy
    send REGULAR       Python sends sealed buffers and hostile descriptors
    pool FLAVOUR N     Go's Pool produces, Python's accept_pool reads N
                       messages and prints a JSON summary on stdout
    dial PATH          Python dials Go's listener
    listen PATH        Go dials Python's listener (prints "ready" first)
    bench MODE N SIZE  the Go -> Python throughput run (python_bench_test.go):
                       N messages of SIZE bytes, sealed or through a plain
                       stream socket

Not a test module itself (unittest discovers test*.py only)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sealbuf  # noqa: E402

F_ADD_SEALS = getattr(fcntl, "F_ADD_SEALS", 1033)
SHRINK, GROW, WRITE = 2, 4, 8


def pattern(seed: str, n: int) -> bytes:
    s = hashlib.sha256(seed.encode()).digest()
    return (s * (n // len(s) + 1))[:n]


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def attempt(fn) -> str:
    try:
        fn()
        return "allowed"
    except PermissionError:
        return "refused"
    except OSError as e:
        return "error: %s" % e


def raw_memfd(name: str, data: bytes, seals: int) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.pwrite(fd, data, 0)
    if seals:
        fcntl.fcntl(fd, F_ADD_SEALS, seals)
    return fd


def conn3() -> sealbuf.Conn:
    return sealbuf.Conn(socket.socket(fileno=3))


def role_receive() -> None:
    with conn3() as conn:
        while True:
            try:
                header, bufs = conn.receive(max_header=1 << 20)
            except EOFError:
                return
            except sealbuf.SealbufError as e:
                conn.send(json.dumps({"error": type(e).__name__, "message": str(e), "fds": fd_count()}).encode())
                continue
            report = {"header": header.decode(), "bufs": []}
            echo = b""
            for b in bufs:
                fd = b.fileno()
                with b.view as v:
                    report["bufs"].append({
                        "size": b.size, "seals": int(b.seals), "sha256": hashlib.sha256(v).hexdigest(),
                        "readonly": v.readonly,
                        "write": attempt(lambda: os.pwrite(fd, b"x", 0)),
                        "shrink": attempt(lambda: os.ftruncate(fd, b.size - 1)) if b.size else "refused",
                        "grow": attempt(lambda: os.ftruncate(fd, b.size + 1)),
                    })
                    if header.startswith(b"echo"):
                        echo += bytes(v)
                b.close()
            report["fds"] = fd_count()
            if header.startswith(b"echo"):
                with sealbuf.from_bytes(echo, name="py-echo") as reply:
                    conn.send(json.dumps(report).encode(), reply)
            else:
                conn.send(json.dumps(report).encode())


def role_send(regular: str) -> None:
    with conn3() as conn:
        r, w = os.pipe()
        reg = os.open(regular, os.O_RDONLY | os.O_CLOEXEC)
        sealed = sealbuf.from_bytes(pattern("py-sealed", 10000), name="py-sealed")
        conn.send(b"sealed", sealed)
        conn.send_files(b"unsealed", raw_memfd("py-unsealed", b"open", 0))
        conn.send_files(b"shrink-only", raw_memfd("py-shrink", b"shrink", SHRINK))
        conn.send_files(b"shrink-grow", raw_memfd("py-size", b"size", SHRINK | GROW))
        conn.send_files(b"pipe", r)
        conn.send_files(b"regular", reg)
        many = [sealbuf.from_bytes(pattern("py-many-%d" % i, 1000 + i)) for i in range(16)]
        conn.send(b"many", *many)
        conn.send_files(b"mixed", sealed.fileno(), r, sealed.fileno())
        bad = raw_memfd("py-bad", b"bad", 0)
        conn.send_files(b"many-one-unsealed", *([m.fileno() for m in many[:8]] + [bad] + [m.fileno() for m in many[8:]]))
        with sealbuf.from_bytes(b"") as empty:
            conn.send(b"empty", empty)
        conn.send(b"header-only")
        conn.send(b"sealed-again", sealed)
        with sealbuf.from_bytes(pattern("py-big", 8 << 20)) as big:
            conn.send(b"big", big)


def role_pool(flavour: str, count: int) -> None:
    conn = conn3()
    reader = sealbuf.accept_pool(conn, max_size=64 << 20)
    with reader:
        if reader.futex != (flavour == "futex"):
            sys.exit("accept_pool: futex=%s, the test asked for a %s pool" % (reader.futex, flavour))
        got = 0
        sizes = 0
        while True:
            try:
                header, v = reader.receive()
            except EOFError:
                break
            i, n = (int(x) for x in header.split())
            if i != got or v.size != n:
                sys.exit("message %d: header %r, %d bytes" % (got, header, v.size))
            if not v.view.readonly or v.view != pattern("pool-%d" % i, n):
                sys.exit("message %d: wrong bytes" % i)
            sizes += n
            got += 1
            v.release()
        print(json.dumps({"received": got, "bytes": sizes, "futex": reader.futex, "slots": reader.slots,
                          "seals": int(reader.seals)}))
    if got != count:
        sys.exit("received %d messages, want %d" % (got, count))


def role_dial(path: str) -> None:
    with sealbuf.dial(path) as conn, sealbuf.from_bytes(pattern("dial", 5000)) as buf:
        conn.send(b"dialled", buf)
        header, bufs = conn.receive()
        if header != b"ok" or len(bufs) != 1 or bufs[0].view != pattern("go-reply", 3000):
            sys.exit("bad reply %r" % header)
        bufs[0].close()


def role_listen(path: str) -> None:
    with sealbuf.listen(path) as ln:
        print("ready", flush=True)
        with ln.accept() as conn:
            header, bufs = conn.receive()
            conn.send(b"echo " + header, *bufs)  # forwards the memfds it received
            for b in bufs:
                b.close()


def role_bench(mode: str, count: int, size: int) -> None:
    """Receives count messages of size bytes, touches every page of each
    (the bytes are then in this process's memory, as after a socket read)
    and checks its sequence number; "ready" before, "done" after (a pool:
    a warm-up message before, and the releases say when it is done)."""
    sock = socket.socket(fileno=3)
    if mode == "socket":
        buf = bytearray(size)
        mv = memoryview(buf)
        sock.sendall(b"ready")
        for i in range(count):
            got = 0
            while got < size:
                n = sock.recv_into(mv[got:])
                if n == 0:
                    sys.exit("message %d: the peer hung up after %d bytes" % (i, got))
                got += n
            if struct.unpack_from("<Q", buf)[0] != i:
                sys.exit("message %d: wrong sequence number" % i)
        sock.sendall(b"done")
        return
    if mode == "pool":
        with sealbuf.accept_pool(sealbuf.Conn(sock)) as reader:
            i = -1  # a first message, "warm-up", before the clock starts
            while True:
                try:
                    header, v = reader.receive()
                except EOFError:
                    break
                with v:
                    v.view[::4096].tobytes()
                    seq = struct.unpack_from("<q", v.view)[0]
                if v.size != size or seq != i:
                    sys.exit("message %d: %d bytes, sequence number %d" % (i, v.size, seq))
                i += 1
        if i != count:
            sys.exit("received %d messages, want %d" % (i, count))
        return
    with sealbuf.Conn(sock) as conn:
        conn.send(b"ready")
        for i in range(count):
            header, (b,) = conn.receive()
            with b, b.view as v:
                v[::4096].tobytes()  # touch every page: the mapping is made lazily by the kernel
                seq = struct.unpack_from("<Q", v)[0]
            if b.size != size or seq != (0 if mode == "sealed-reused" else i):
                sys.exit("message %d: %d bytes, sequence number %d" % (i, b.size, seq))
        conn.send(b"done")


def main() -> None:
    role, args = sys.argv[1], sys.argv[2:]
    if role == "receive":
        role_receive()
    elif role == "send":
        role_send(args[0])
    elif role == "pool":
        role_pool(args[0], int(args[1]))
    elif role == "dial":
        role_dial(args[0])
    elif role == "listen":
        role_listen(args[0])
    elif role == "bench":
        role_bench(args[0], int(args[1]), int(args[2]))
    else:
        sys.exit("unknown role %r" % role)


if __name__ == "__main__":
    main()
