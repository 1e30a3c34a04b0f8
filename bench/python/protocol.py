#!/usr/bin/env python3
"""Python's protocol benchmark (issue 17), run by bench/protocol.py:

    protocol.py --server PATH --rounds N [--quick]

  sendallv_3       64 B + 16 MiB + 2 B to a sink, 4 times per measurement:
                   fastsock.sendallv([head, body, tail]), one fastsock.sendall
                   of the bytes joined beforehand (join not timed), and
                   b"".join (timed) + fastsock.sendall; the three share each
                   of the 4 sink connections, in turn
  sendallv_100x64  100 pieces of 64 B per op, 2,000 ops (--quick: 500) per
                   route on one sink connection, the routes alternating in
                   slices of a tenth: sendallv, a fastsock.sendall per piece
  recvfile_shm     256 MiB (--quick: 64 MiB) into a new file in /dev/shm,
  recvfile_disk    or /var/tmp (no fsync), deleted after: fastsock.recvfile,
                   and sock.recv_into a reused 1 MiB bytearray + write of the
                   view to an unbuffered file; both over one connection, in
                   alternating quarters
  resp_1k          `resp len=1024`: "GET k\\r\\n", then "$1024\\r\\n" + body +
                   "\\r\\n", ping-pong, 20,000 requests (--quick: 2,000):
                   fastsock.Reader (readuntil, recvall(n + 2)), and
                   sock.makefile("rb") readline() + read(n + 2)
  resp_1m          the same with 1 MiB bodies, 300 requests (--quick: 50):
                   the Reader, and fastsock.recvall of the 10-byte header,
                   then of the body (bare recvall)
  split_4k         64 MiB (--quick: 16 MiB) of 4096-byte records (4095
  split_70         filler bytes + "\\n"), or 70-byte ones, in one bytes:
                   fastsock.split (memoryviews), fastsock.split_offsets
                   (an array('Q') of field ends), bytes.split(b"\\n")

The request of every resp route goes out with sock.sendall, so that only the
reading differs; the resp routes share one connection and alternate in
slices of a tenth of the requests (RespClient says why). Route order rotates each round. Every bench verifies its
bytes: the sink's answer (got=N match=M) for sends, the file's size and
samples of it for recvfile, each reply's framing, first and last bytes (all
of every 64th), and the record count and records for split. One JSON object
per measurement on stdout; diagnostics on stderr. rss_base_mb is VmRSS just
before the measured part (the split's buffer included), rss_peak_mb VmHWM
after it, reset by writing 5 to /proc/self/clear_refs.
"""
import argparse
import ctypes
import gc
import json
import os
import socket
import subprocess
import sys
import time

import fastsock
from _bench import Stream, check_sink_answer, log, status_mb

MiB = 1 << 20
SEED = 17


# ---- the stream (tests/README.md) ----------------------------------------------

stream = Stream(SEED)


# ---- memory ---------------------------------------------------------------------------

try:
    _malloc_trim = ctypes.CDLL(None).malloc_trim
except (OSError, AttributeError):
    _malloc_trim = None


def reset_peak():
    """Resets VmHWM to the current RSS, and returns that RSS: the base. Freed
    memory is given back first, so that one route's does not count in the
    next one's peak."""
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status_mb(b"VmRSS:")


# ---- the server ---------------------------------------------------------------------------

class Server:
    def __init__(self, path):
        self.proc = subprocess.Popen([path], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise SystemExit(f"the server said {line!r}")
        self.port = int(line.split()[1])

    def connect(self, request):
        c = socket.create_connection(("127.0.0.1", self.port))
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.sendall(request.encode() + b"\n")
        return c

    def check_sink(self, c, n, route):
        try:
            check_sink_answer(c, n, route)
        finally:
            c.close()

    def stop(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as c:
                c.sendall(b"quit\n")
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def emit(bench, route, size, rnd, rate, unit, rss=None):
    row = {"lang": "python", "bench": bench, "route": route, "size": size, "round": rnd,
           "rate": round(rate, 1), "unit": unit}
    if rss is not None:
        row["rss_peak_mb"], row["rss_base_mb"] = round(rss[0], 1), round(rss[1], 1)
    print(json.dumps(row), flush=True)


def rotate(routes, rnd):
    k = rnd % len(routes)
    return routes[k:] + routes[:k]


# ---- sendallv ------------------------------------------------------------------------

V3_REPS = 4
SMALL_SLICES = 10


def bench_sendallv_3(server, rnd):
    """The three routes share each sink connection (a connection's rate
    depends on where the scheduler puts its two ends, see RespClient), in
    turn, V3_REPS connections in all. Each route's send is the next `size`
    bytes of the stream, as a head, a body and a tail of their own, so the
    sink checks every byte."""
    size = 64 + 16 * MiB + 2
    routes = ["sendallv", "sendall_prejoined", "join_then_sendall"]
    data = stream(0, size * len(routes))
    sets = [(data[o:o + 64], data[o + 64:o + size - 2], data[o + size - 2:o + size])
            for o in range(0, size * len(routes), size)]
    joined = [b"".join(parts) for parts in sets]  # for sendall_prejoined: not timed
    del data
    spent = dict.fromkeys(routes, 0.0)
    for rep in range(V3_REPS):
        gc.collect()
        c = server.connect(f"sink seed={SEED}")
        for k, route in enumerate(rotate(routes, rnd + rep)):
            t0 = time.perf_counter()
            if route == "sendallv":
                fastsock.sendallv(c, sets[k])
            elif route == "sendall_prejoined":
                fastsock.sendall(c, joined[k])
            else:
                fastsock.sendall(c, b"".join(sets[k]))
            spent[route] += time.perf_counter() - t0
        server.check_sink(c, size * len(routes), "sendallv_3")
    for route in rotate(routes, rnd):
        emit("sendallv_3", route, size, rnd, size * V3_REPS / spent[route] / 1e6, "MB/s")


def bench_sendallv_small(server, rnd, ops):
    """Both routes over one sink connection, alternating in slices of a
    tenth of the ops; each op sends the next 6400 bytes of the stream, so
    the sink checks all of them."""
    routes = rotate(["sendallv", "sendall_per_piece"], rnd)
    total = ops * len(routes)
    data = stream(0, total * 6400)
    ops_pieces = [[data[op * 6400 + k * 64:op * 6400 + (k + 1) * 64] for k in range(100)]
                  for op in range(total)]
    del data
    sendall, sendallv = fastsock.sendall, fastsock.sendallv
    spent = dict.fromkeys(routes, 0.0)
    per_slice = ops // SMALL_SLICES
    at = 0
    c = server.connect(f"sink seed={SEED}")
    for _ in range(SMALL_SLICES):
        for route in routes:
            mine = ops_pieces[at:at + per_slice]
            at += per_slice
            t0 = time.perf_counter()
            if route == "sendallv":
                for pieces in mine:
                    sendallv(c, pieces)
            else:
                for pieces in mine:
                    for p in pieces:
                        sendall(c, p)
            spent[route] += time.perf_counter() - t0
    server.check_sink(c, at * 6400, "sendallv_100x64")
    for route in routes:
        emit("sendallv_100x64", route, 6400, rnd, per_slice * SMALL_SLICES / spent[route], "ops/s")


# ---- recvfile ------------------------------------------------------------------------

def recv_stdlib(c, f, n):
    buf = bytearray(MiB)
    view = memoryview(buf)
    left = n
    while left:
        got = c.recv_into(buf, min(MiB, left))
        if not got:
            raise SystemExit(f"stdlib: the stream ended {left} bytes early")
        f.write(view[:got])
        left -= got
    return n


RECVFILE_SLICES = 4


def bench_recvfile(server, bench, directory, rnd, n):
    """Both routes over one connection, alternating in slices of n / 4 (a
    connection's rate depends on where its ends run, see RespClient), each
    into a new file of its own, which holds n bytes in the end. RSS: the
    worst slice's peak beyond the RSS just before it."""
    routes = rotate(["recvfile", "stdlib"], rnd)
    part = n // RECVFILE_SLICES
    paths = {r: os.path.join(directory, f"fastsock-protocol-py-{os.getpid()}-{rnd}-{r}") for r in routes}
    files = {}
    try:
        for r in routes:
            files[r] = open(paths[r], "wb", buffering=0)
        c = server.connect(f"gen len={part * RECVFILE_SLICES * len(routes)} seed={SEED}")
        spent = dict.fromkeys(routes, 0.0)
        worst = dict.fromkeys(routes, (0.0, 0.0))
        starts = {r: [] for r in routes}  # where each slice of a file came from in the stream
        at = 0
        for _ in range(RECVFILE_SLICES):
            for r in routes:
                base = reset_peak()
                t0 = time.perf_counter()
                got = fastsock.recvfile(c, files[r], part) if r == "recvfile" else recv_stdlib(c, files[r], part)
                spent[r] += time.perf_counter() - t0
                peak = status_mb(b"VmHWM:")
                if got != part:
                    raise SystemExit(f"{r}: {got} of {part} bytes")
                if peak - base >= worst[r][0] - worst[r][1]:
                    worst[r] = (peak, base)
                starts[r].append(at)
                at += part
        c.close()
        for r in routes:
            files[r].close()
            verify_file(r, paths[r], part, starts[r])
            emit(bench, r, n, rnd, part * RECVFILE_SLICES / spent[r] / 1e6, "MB/s", worst[r])
    finally:
        for r, f in files.items():
            f.close()
        for path in paths.values():
            if os.path.exists(path):
                os.unlink(path)


def verify_file(route, path, part, starts):
    """The file's size, and 64 KiB at the start, middle and end of each
    slice, against the stream bytes the slice came from."""
    n = part * len(starts)
    size = os.path.getsize(path)
    if size != n:
        raise SystemExit(f"{route}: the file holds {size} of {n} bytes")
    with open(path, "rb") as f:
        for k, start in enumerate(starts):
            for off in (0, part // 2, part - 65536):
                if os.pread(f.fileno(), 65536, k * part + off) != stream(start + off, 65536):
                    raise SystemExit(f"{route}: the file's bytes at {k * part + off} differ from the stream")


# ---- resp ---------------------------------------------------------------------------

REQUEST = b"GET k\r\n"


class RespClient:
    """The three ways to read replies, over one connection: a ping-pong's
    rate changes several-fold with where the scheduler puts the two ends
    (the same CPU, or one that wakes from idle), and that sticks to a
    connection, so every route runs over the same one, in alternating
    slices. Each reply is read whole, so a slice leaves nothing buffered
    for the next route's reader."""

    def __init__(self, c):
        self.c = c
        self.reader = fastsock.Reader(c)
        self.file = c.makefile("rb")

    def run(self, route, ops, want):
        n = len(want)
        c = self.c
        sendall = c.sendall
        bodies = []  # a sample, verified after the clock stops
        t0 = time.perf_counter()
        if route == "reader":
            readuntil, recvall = self.reader.readuntil, self.reader.recvall
            for k in range(ops):
                sendall(REQUEST)
                header = readuntil(b"\r\n")
                body = recvall(int(header[1:-2]) + 2)
                if body[:8] != want[:8] or body[-10:] != want[-8:] + b"\r\n":
                    raise SystemExit(f"reader: reply {k} differs from the stream")
                if k % 64 == 0:
                    bodies.append(body)
        elif route == "stdlib":
            readline, read = self.file.readline, self.file.read
            for k in range(ops):
                sendall(REQUEST)
                header = readline()
                body = read(int(header[1:-2]) + 2)
                if body[:8] != want[:8] or body[-10:] != want[-8:] + b"\r\n":
                    raise SystemExit(f"stdlib: reply {k} differs from the stream")
                if k % 64 == 0:
                    bodies.append(body)
        else:  # bare_recvall: the header's length is known, "$1048576\r\n"
            recvall = fastsock.recvall
            for k in range(ops):
                sendall(REQUEST)
                header = recvall(c, 10)
                body = recvall(c, int(header[1:8]) + 2)
                if body[:8] != want[:8] or body[-10:] != want[-8:] + b"\r\n":
                    raise SystemExit(f"bare_recvall: reply {k} differs from the stream")
                if k % 64 == 0:
                    bodies.append(body)
        dt = time.perf_counter() - t0
        for body in bodies:
            if len(body) != n + 2 or body[:n] != want:
                raise SystemExit(f"{route}: a reply differs from the stream")
        if self.reader.buffered:
            raise SystemExit(f"{route}: the Reader holds {self.reader.buffered} bytes after a slice")
        return dt

    def close(self):
        self.file.close()
        self.c.close()


RESP_SLICES = 10


def bench_resp(server, bench, length, ops, routes, rnd):
    want = stream(0, length)
    order = rotate(routes, rnd)
    client = RespClient(server.connect(f"resp len={length} seed={SEED}"))
    # Untimed first: the first route of a round otherwise pays for faulting
    # in the heap that the others reuse.
    for route in order:
        client.run(route, max(ops // 10, 10), want)
    gc.collect()
    spent = dict.fromkeys(order, 0.0)
    for _ in range(RESP_SLICES):
        for route in order:
            spent[route] += client.run(route, ops // RESP_SLICES, want)
    client.close()
    for route in order:
        emit(bench, route, length, rnd, ops // RESP_SLICES * RESP_SLICES / spent[route], "ops/s")


# ---- split ------------------------------------------------------------------------------

def bench_split(bench, record, rnd, total):
    records = total // record
    filler = b"x" * (record - 1)
    data = (filler + b"\n") * records
    size = len(data)
    for route in rotate(["fastsock_split", "fastsock_offsets", "stdlib_split"], rnd):
        base = reset_peak()
        t0 = time.perf_counter()
        if route == "fastsock_split":
            out = fastsock.split(data, b"\n")
        elif route == "fastsock_offsets":
            out = fastsock.split_offsets(data, b"\n")
        else:
            out = data.split(b"\n")
        dt = time.perf_counter() - t0
        peak = status_mb(b"VmHWM:")
        # n records end in n separators: n + 1 fields, the last one empty.
        if len(out) != records + 1:
            raise SystemExit(f"{route}: {len(out) - 1} records of {records}")
        if route == "fastsock_offsets":
            ok = data[:out[0]] == filler and data[out[-3] + 1:out[-2]] == filler and out[-1] == size
        else:
            ok = out[0] == filler and out[-2] == filler and len(out[-1]) == 0
        if not ok:
            raise SystemExit(f"{route}: a record's bytes differ")
        del out
        emit(bench, route, size, rnd, size / dt / 1e6, "MB/s", (peak, base))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    quick = args.quick
    recvfile_size = (64 if quick else 256) * MiB
    split_size = (16 if quick else 64) * MiB
    resp_1k_ops, resp_1m_ops = (2000, 50) if quick else (20000, 300)
    small_ops = 500 if quick else 2000

    server = Server(args.server)
    try:
        for rnd in range(args.rounds):
            bench_sendallv_3(server, rnd)
            bench_sendallv_small(server, rnd, small_ops)
            bench_recvfile(server, "recvfile_shm", "/dev/shm", rnd, recvfile_size)
            bench_recvfile(server, "recvfile_disk", "/var/tmp", rnd, recvfile_size)
            bench_resp(server, "resp_1k", 1024, resp_1k_ops, ["reader", "stdlib"], rnd)
            bench_resp(server, "resp_1m", MiB, resp_1m_ops, ["reader", "bare_recvall"], rnd)
            bench_split("split_4k", 4096, rnd, split_size)
            bench_split("split_70", 70, rnd, split_size)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
