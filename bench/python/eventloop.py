#!/usr/bin/env python3
"""Python's event-loop benchmark: fastsock's awaitables and progressive
objects against asyncio's and uvloop's own idioms and the blocking calls.

    eventloop.py --server PATH --sizes 1048576,67108864,268435456 --rounds N

Starts the loopback server, runs every route x size x round, interleaved
(the order rotates each round), and prints one JSON object per measurement
on stdout (bench/eventloop.py reads them; diagnostics go to stderr):

    {"lang": "python", "loop": "asyncio", "route": "fastsock_aio_recvall",
     "size": 268435456, "round": 0, "mbps": 1234.5, "stall_ms": 1.9,
     "rss_peak_mb": 270.1, "rss_base_mb": 14.2}

uvloop's routes run in a child process under a Python that has uvloop
(--uvloop-python, default Debian's /usr/bin/python3, the build's ABI),
driven over a pipe so that both loops' routes interleave. Where uvloop can't
be imported the asyncio routes still run and the script exits 1.

Fields: mbps = size / transfer time (the 64-connection route: all bytes over
the time until the last one ended); stall_ms = the worst lateness beyond 1 ms
of a 1 ms heartbeat task in the same loop during the transfer (0 without a
loop); rss_peak_mb = VmHWM after writing 5 to /proc/self/clear_refs before
the transfer; rss_base_mb = the RSS just before it (the interpreter's own).
Every received byte count is checked, and samples of the data (start,
middle, end) against the stream; the sink checks every byte sent.

Routes, loop "asyncio" and "uvloop" (size = the --sizes):
  receive, fresh result unless said:
    blocking_recvall_in_coroutine   fastsock.recvall on a blocking socket, called in the coroutine
    blocking_recvall_executor       fastsock.recvall in loop.run_in_executor (a blocking socket)
    streamreader_readexactly        asyncio.open_connection(sock=) + StreamReader.readexactly(n)
    sock_recv_into_loop             loop.sock_recv_into into a fresh bytearray(n), memoryview slices
    buffered_protocol               a BufferedProtocol filling a fresh bytearray(n)
    fastsock_aio_recvall            await fastsock.aio.recvall (fresh bytes)
    fastsock_aio_recvall_into       await fastsock.aio.recvall_into a reused, touched bytearray
  send (the server's sink receives and checks):
    blocking_sendall_in_coroutine   fastsock.sendall on a blocking socket, in the coroutine
    sock_sendall                    loop.sock_sendall
    fastsock_aio_sendall            await fastsock.aio.sendall
    blocking_sendfile_in_coroutine  fastsock.sendfile on a blocking socket, in the coroutine
    sock_sendfile                   loop.sock_sendfile (asyncio only: uvloop 0.17 has none)
    sock_sendall_file_chunks        the file read in 1 MiB chunks, each sent with loop.sock_sendall
    fastsock_aio_sendfile           await fastsock.aio.sendfile
  size 16 MiB, whatever --sizes says (these rows add "conns"):
    fastsock_aio_recvall_64conn     64 connections x 16 MiB at once (size: per connection;
                                    mbps: aggregate; RSS holds size x conns)
    fastsock_aio_recvall_1conn      the same route with one connection, the reference
Loop "selectors" (size 64: 64-byte messages, 2 MiB of them; adds "us_per_msg"):
    receiver_into_64                a fastsock.Receiver(sock, 64, buffer=buf) per message
    sock_recv_into_64               sock.recv_into(buf, 64) per message
    receiver_fresh_64               a fastsock.Receiver(sock, 64) per message, result() bytes
    sock_recv_64                    sock.recv(64) per message
"""
import argparse
import asyncio
import gc
import json
import mmap
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time

import fastsock
import fastsock.aio as aio
from _bench import UNIT, Stream, check_sink_answer, log, status_mb

MiB = 1 << 20
SEED = 77
CONNS, CONN_SIZE = 64, 16 * MiB
MSG, MSG_TOTAL = 64, 2 * MiB
CHUNK = MiB

LOOP_ROUTES = [
    "blocking_recvall_in_coroutine", "blocking_recvall_executor", "streamreader_readexactly",
    "sock_recv_into_loop", "buffered_protocol", "fastsock_aio_recvall", "fastsock_aio_recvall_into",
    "blocking_sendall_in_coroutine", "sock_sendall", "fastsock_aio_sendall",
    "blocking_sendfile_in_coroutine", "sock_sendfile", "sock_sendall_file_chunks", "fastsock_aio_sendfile",
]
FIXED_ROUTES = ["fastsock_aio_recvall_64conn", "fastsock_aio_recvall_1conn"]
SELECTOR_ROUTES = ["receiver_into_64", "sock_recv_into_64", "receiver_fresh_64", "sock_recv_64"]


# ---- the stream (tests/README.md) ----------------------------------------------

stream = Stream(SEED)


def verify(data, n, route):
    if len(data) != n:
        raise SystemExit(f"{route}: received {len(data)} bytes, expected {n}")
    view = memoryview(data)
    for off in {0, n // 2, max(0, n - 4096)}:
        k = min(4096, n - off)
        if view[off:off + k] != stream(off, k):
            raise SystemExit(f"{route}: bytes at {off} differ from the stream")


# ---- memory ---------------------------------------------------------------------------

def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


# ---- the server ---------------------------------------------------------------------------

class Peer:
    def __init__(self, port):
        self.port = port

    def connect(self, request):
        c = socket.create_connection(("127.0.0.1", self.port))
        c.sendall(request.encode() + b"\n")
        return c

    def gen(self, n):
        return self.connect(f"gen len={n} seed={SEED}")

    def sink(self):
        return self.connect(f"sink seed={SEED}")

    @staticmethod
    def sink_answer(c, n, route):
        c.setblocking(True)
        check_sink_answer(c, n, route)


class Heartbeat:
    def __init__(self):
        self.worst = 0.0
        self.task = asyncio.ensure_future(self._beat())

    async def _beat(self):
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.worst = max(self.worst, (now - last) * 1000 - 1)
            last = now

    async def stop(self):
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        return max(0.0, self.worst)


class Into(asyncio.BufferedProtocol):
    def __init__(self, n):
        self.buf = bytearray(n)
        self.view = memoryview(self.buf)
        self.got, self.n = 0, n
        self.done = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint):
        # uvloop asks once more after the last byte: an empty buffer is an error there.
        return self.view[self.got:] if self.got < self.n else bytearray(4096)

    def buffer_updated(self, nbytes):
        self.got += nbytes
        if self.got == self.n and not self.done.done():
            self.done.set_result(self.buf)

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_exception(exc or EOFError(f"{self.got} of {self.n}"))


# ---- the routes -------------------------------------------------------------------------------

class Routes:
    def __init__(self, peer, path):
        self.peer, self.path = peer, path
        self.reused = None

    # Each returns (the received data or None, the sink connection or None).
    async def blocking_recvall_in_coroutine(self, loop, c, n):
        return fastsock.recvall(c, n)

    async def blocking_recvall_executor(self, loop, c, n):
        return await loop.run_in_executor(None, fastsock.recvall, c, n)

    async def streamreader_readexactly(self, loop, c, n):
        c.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=c, limit=256 * 1024)
        data = await reader.readexactly(n)
        writer.transport.abort()
        return data

    async def sock_recv_into_loop(self, loop, c, n):
        c.setblocking(False)
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = await loop.sock_recv_into(c, view[got:])
            if not k:
                raise EOFError
            got += k
        return buf

    async def buffered_protocol(self, loop, c, n):
        c.setblocking(False)
        proto = Into(n)
        transport, _ = await loop.create_connection(lambda: proto, sock=c)
        data = await proto.done
        transport.abort()
        return data

    async def fastsock_aio_recvall(self, loop, c, n):
        c.setblocking(False)
        return await aio.recvall(c, n)

    async def fastsock_aio_recvall_into(self, loop, c, n):
        # self.reused: a buffer already touched, as a program that keeps one
        # has it; made before the clock starts (measure), after the RSS base.
        c.setblocking(False)
        await aio.recvall_into(c, self.reused, n)
        return self.reused

    async def blocking_sendall_in_coroutine(self, loop, c, n, data, f):
        fastsock.sendall(c, data, 0, n)

    async def sock_sendall(self, loop, c, n, data, f):
        c.setblocking(False)
        await loop.sock_sendall(c, memoryview(data)[:n])

    async def fastsock_aio_sendall(self, loop, c, n, data, f):
        c.setblocking(False)
        await aio.sendall(c, data, 0, n)

    async def blocking_sendfile_in_coroutine(self, loop, c, n, data, f):
        fastsock.sendfile(c, f, 0, n)

    async def sock_sendfile(self, loop, c, n, data, f):
        c.setblocking(False)
        await loop.sock_sendfile(c, f, 0, n)

    async def sock_sendall_file_chunks(self, loop, c, n, data, f):
        c.setblocking(False)
        left = n
        while left:
            chunk = f.read(min(CHUNK, left))
            await loop.sock_sendall(c, chunk)
            left -= len(chunk)

    async def fastsock_aio_sendfile(self, loop, c, n, data, f):
        c.setblocking(False)
        await aio.sendfile(c, f, 0, n)


SEND_ROUTES = {r for r in LOOP_ROUTES if "send" in r}


async def measure(routes, loop_name, route, n):
    loop = asyncio.get_running_loop()
    peer = routes.peer
    conns, f, data = [], None, None
    if route in SEND_ROUTES:
        f = open(routes.path, "rb")
        data = mmap.mmap(f.fileno(), n, prot=mmap.PROT_READ) if "sendall" in route else None
        conns = [peer.sink()]
    elif route in FIXED_ROUTES:
        count = CONNS if route.endswith("64conn") else 1
        conns = [peer.gen(n) for _ in range(count)]
        for c in conns:
            c.setblocking(False)
    else:
        conns = [peer.gen(n)]
    gc.collect()
    base = status_mb(b"VmRSS:")
    reset_peak()
    if route == "fastsock_aio_recvall_into":
        routes.reused = bytearray(n)  # zero-filled: touched, not timed
    beat = Heartbeat()
    await asyncio.sleep(0.005)
    beat.worst = 0.0
    t0 = time.perf_counter()
    if route in SEND_ROUTES:
        await getattr(routes, route)(loop, conns[0], n, data, f)
        received = []
    elif route in FIXED_ROUTES:
        received = await asyncio.gather(*(aio.recvall(c, n) for c in conns))
    else:
        received = [await getattr(routes, route)(loop, conns[0], n)]
    elapsed = time.perf_counter() - t0
    await asyncio.sleep(0.003)  # the heartbeat's next beat sees a stall that just ended
    peak = status_mb(b"VmHWM:")
    stall = await beat.stop()
    for got in received:
        verify(got, n, route)
    if route in SEND_ROUTES:
        Peer.sink_answer(conns[0], n, route)
    del received
    routes.reused = None
    if data is not None:
        data.close()
    if f is not None:
        f.close()
    for c in conns:
        c.close()
    total = n * len(conns)
    row = {"lang": "python", "loop": loop_name, "route": route, "size": n,
           "mbps": round(total / elapsed / 1e6, 1), "stall_ms": round(stall, 2),
           "rss_peak_mb": round(peak, 1), "rss_base_mb": round(base, 1)}
    if route in FIXED_ROUTES:
        row["conns"] = len(conns)  # the payload in memory is size x conns
    return row


def selector_route(peer, route):
    """64-byte messages in a plain selectors loop: one select, one message."""
    n = MSG_TOTAL
    c = peer.gen(n)
    c.setblocking(False)
    buf = bytearray(MSG)
    got = 0
    with selectors.DefaultSelector() as sel:
        sel.register(c, selectors.EVENT_READ)
        select = sel.select
        t0 = time.perf_counter()
        if route == "sock_recv_into_64":
            recv_into = c.recv_into
            while got < n:
                select()
                k = recv_into(buf, MSG)
                if not k:
                    break
                got += k
        elif route == "sock_recv_64":
            recv = c.recv
            while got < n:
                select()
                k = len(recv(MSG))
                if not k:
                    break
                got += k
        elif route == "receiver_into_64":
            Receiver = fastsock.Receiver
            while got < n:
                r = Receiver(c, MSG, buffer=buf)
                while not r.done:
                    select()
                    r.step()
                got += MSG
        else:
            Receiver = fastsock.Receiver
            while got < n:
                r = Receiver(c, MSG)
                while not r.done:
                    select()
                    r.step()
                last = r.result()
                got += len(last)
        elapsed = time.perf_counter() - t0
    c.close()
    if got != n:
        raise SystemExit(f"{route}: received {got} bytes, expected {n}")
    return {"lang": "python", "loop": "selectors", "route": route, "size": MSG,
            "mbps": round(n / elapsed / 1e6, 2), "stall_ms": 0.0,
            "us_per_msg": round(elapsed / (n // MSG) * 1e6, 3)}


# ---- processes -------------------------------------------------------------------------------------

def new_loop(name):
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def child(args):
    """Runs routes on uvloop for the parent: `route size round` per stdin line."""
    loop = new_loop(args.child)
    asyncio.set_event_loop(loop)
    routes = Routes(Peer(args.port), args.file)
    print("ready", flush=True)
    for line in sys.stdin:
        route, size, rnd = line.split()
        row = loop.run_until_complete(measure(routes, args.child, route, int(size)))
        row["round"] = int(rnd)
        print(json.dumps(row), flush=True)
    loop.close()
    return 0


def start_server(path):
    proc = subprocess.Popen([path], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"the server said {line!r}")
    return proc, int(line.split()[1])


def stop_server(proc, port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"quit\n")
        proc.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()


def start_uvloop_child(args, port, path):
    argv = [args.uvloop_python, os.path.abspath(__file__), "--child", "uvloop", "--port", str(port),
            "--file", path]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    except OSError as exc:
        log(f"eventloop.py: no uvloop run: {exc}")
        return None
    if proc.stdout.readline().strip() != "ready":
        proc.wait()
        log(f"eventloop.py: no uvloop run: {args.uvloop_python} could not start it (uvloop missing?)")
        return None
    return proc


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server")
    ap.add_argument("--sizes", default=str(64 * MiB))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loops", default="asyncio,uvloop,selectors")
    ap.add_argument("--routes", help="only these routes (comma-separated)")
    ap.add_argument("--uvloop-python", default="/usr/bin/python3")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if not args.server:
        ap.error("--server is required")

    sizes = [int(s) for s in args.sizes.split(",")]
    loops = args.loops.split(",")
    only = set(args.routes.split(",")) if args.routes else None
    max_size = max(sizes + [CONN_SIZE])
    server, port = start_server(args.server)
    tmp = tempfile.NamedTemporaryFile(prefix="fastsock-eventloop-", delete=False)
    rc = 0
    uv = None
    try:
        block = stream(0, UNIT * 64)
        for _ in range(max_size // len(block) + 1):
            tmp.write(block)
        tmp.truncate(max_size)
        tmp.close()
        del block
        if "uvloop" in loops:
            uv = start_uvloop_child(args, port, tmp.name)
            if uv is None:
                rc = 1
        loop = new_loop("asyncio")
        asyncio.set_event_loop(loop)
        routes = Routes(Peer(port), tmp.name)
        items = []
        for name in ("asyncio", "uvloop"):
            if name not in loops or (name == "uvloop" and uv is None):
                continue
            for size in sizes:
                items += [(name, r, size) for r in LOOP_ROUTES
                          if not (name == "uvloop" and r == "sock_sendfile")]
            items += [(name, r, CONN_SIZE) for r in FIXED_ROUTES]
        if "selectors" in loops:
            items += [("selectors", r, MSG) for r in SELECTOR_ROUTES]
        if only:
            items = [i for i in items if i[1] in only]
        for rnd in range(args.rounds):
            shift = (rnd * max(1, len(items) // max(1, args.rounds))) % max(1, len(items))
            for name, route, size in items[shift:] + items[:shift]:
                if name == "uvloop":
                    uv.stdin.write(f"{route} {size} {rnd}\n")
                    uv.stdin.flush()
                    line = uv.stdout.readline()
                    if not line:
                        raise SystemExit(f"the uvloop child ended at {route} {size}")
                    print(line.strip(), flush=True)
                    continue
                if name == "selectors":
                    row = selector_route(routes.peer, route)
                else:
                    row = loop.run_until_complete(measure(routes, name, route, size))
                row["round"] = rnd
                print(json.dumps(row), flush=True)
        loop.close()
    finally:
        if uv is not None:
            uv.stdin.close()
            if uv.wait() != 0:
                rc = 1
        stop_server(server, port)
        os.unlink(tmp.name)
    return rc


if __name__ == "__main__":
    sys.exit(main())
