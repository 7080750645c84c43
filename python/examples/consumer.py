"""The Python half of python/README.md's example: receives the Go
producer's matrix and reads it as a numpy array, with no copy.

    PYTHONPATH=python python3 python/examples/consumer.py /tmp/sealbuf-demo.sock
"""

import json
import sys
import time

import sealbuf

path = sys.argv[1]
for _ in range(300):  # wait up to 30 s for the producer to listen
    try:
        conn = sealbuf.dial(path)
        break
    except (FileNotFoundError, ConnectionRefusedError):
        time.sleep(0.1)
else:
    sys.exit("no producer listens on " + path)

with conn:
    header, (buf,) = conn.receive()  # checked first: a memfd sealed shrink|grow|write, or refused
    meta = json.loads(header)
    with buf:
        m = buf.ndarray(meta["dtype"], meta["shape"])  # read-only, on the producer's pages
        print(m.shape, m.dtype, m[1023, 1023], m.flags.writeable)
        conn.send(b"sum %d" % m.sum())
        del m  # the array must go before the buffer is closed
