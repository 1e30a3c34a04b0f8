"""What the Python bench scripts share: the loopback server's stream
(tests/README.md), diagnostics, memory readings and the sink's verdict.
The scripts run from this folder, so Python finds this module beside them
(and so does eventloop.py's uvloop child, started by its path)."""

import socket
import sys

UNIT = 65521


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Stream:
    """The server's stream for one seed: stream(off, n) is its bytes off to
    off + n, cut from a repeated unit (xorshift32, tests/README.md)."""

    def __init__(self, seed):
        x = (seed * 2654435761 + 0x7F4A7C15) & 0xFFFFFFFF or 1
        out = bytearray(UNIT)
        for i in range(UNIT):
            x ^= (x << 13) & 0xFFFFFFFF
            x ^= x >> 17
            x ^= (x << 5) & 0xFFFFFFFF
            out[i] = x & 0xFF
        self.unit = bytes(out)

    def __call__(self, off, n):
        phase = off % UNIT
        return (self.unit * ((phase + n) // UNIT + 1))[phase:phase + n]


def status_mb(field):
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return 0.0


def check_sink_answer(c, n, route):
    """Ends c's sending side and exits unless the sink got and matched n bytes."""
    c.shutdown(socket.SHUT_WR)
    answer = b""
    while not answer.endswith(b"\n"):
        chunk = c.recv(256)
        if not chunk:
            break
        answer += chunk
    fields = dict(w.split("=", 1) for w in answer.decode().split())
    if int(fields.get("got", -1)) != n or int(fields.get("match", -1)) != n:
        raise SystemExit(f"{route}: the sink answered {answer!r} for {n} bytes")
