"""Python side of the benchmark: one variant per request, driven by bench/run.py.

    python3 bench/python/worker.py --port PORT --file DATAFILE --max BYTES

Speaks the driver's line protocol on stdin/stdout (see bench/README.md):
`list`, `run VARIANT BYTES`, `quit`. The driver decides the order of rounds,
so that every language's variants interleave with every other's.
"""
import argparse
import ctypes
import os
import select
import socket
import sys
import time

import fastsock

CHUNK = 64 * 1024


def rpc_requests(n):
    """Requests per request/response measurement (bench/run.py's RPC_REQUESTS)."""
    return 10000 if n <= 64 * 1024 else max(16, (256 << 20) // n)


def status_kib(field):
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def reset_peak():
    # "5" resets VmHWM to the current RSS (Linux >= 4.0).
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def page_offset_of(buf):
    """Where a buffer's bytes start within their 4 KiB page (the alignment control)."""
    if isinstance(buf, bytes):
        return (id(buf) + bytes.__basicsize__ - 1) % 4096
    return ctypes.addressof((ctypes.c_char * 1).from_buffer(buf)) % 4096


class Worker:
    def __init__(self, port, path, max_bytes):
        self.port = port
        self.path = path
        with open(path, "rb") as f:
            self.data = f.read(max_bytes)
        self.file = open(path, "rb")
        # Reused buffers, touched once here, as a program that keeps one would.
        self.reused = bytearray(max_bytes)
        self.small = bytearray(64)
        self.align = -1

    def connect(self, request):
        s = socket.create_connection(("127.0.0.1", self.port))
        s.sendall(request.encode())
        return s

    def gen(self, n):
        s = self.connect(f"gen len={n} seed=1\n")
        # The clock starts once data is there: the server's own set-up for a
        # request is not the receiving side's cost.
        select.select([s], [], [])
        return s

    # More of the sink's request, set by the driver's "sink OPTIONS"
    # (step=16384: a reader that takes 16 KiB a call).
    sink_extra = ""

    def sink(self):
        return self.connect(f"sink seed=1 off=0 {self.sink_extra}\n")

    @staticmethod
    def finish_send(s, n):
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while True:
            c = s.recv(128)
            if not c:
                break
            answer += c
        got = int(answer.split()[0].split(b"=")[1])
        if got != n:
            raise RuntimeError(f"sink got {got} of {n}")

    # ---- receive ---------------------------------------------------------
    def join_64k(self, s, n):
        chunks, got = [], 0
        while got < n:
            c = s.recv(min(CHUNK, n - got))
            if not c:
                raise EOFError
            chunks.append(c)
            got += len(c)
        return b"".join(chunks)

    def _recv_into_loop(self, s, buf, n):
        view, got = memoryview(buf), 0
        while got < n:
            k = s.recv_into(view[got:n], n - got)
            if not k:
                raise EOFError
            got += k
        return buf

    def bytearray_recv_into(self, s, n):
        return self._recv_into_loop(s, bytearray(n), n)

    def bytearray_recv_into_reused(self, s, n):
        return self._recv_into_loop(s, self.reused, n)

    def recv_waitall(self, s, n):
        data = s.recv(n, socket.MSG_WAITALL)
        if len(data) != n:  # a signal can cut it short
            data += self.join_64k(s, n - len(data))
        return data

    def makefile_read(self, s, n):
        with s.makefile("rb") as f:
            return f.read(n)

    def fastsock_recvall(self, s, n):
        return fastsock.recvall(s, n)

    def fastsock_recvall_timeout(self, s, n):
        # settimeout makes the fd O_NONBLOCK: the system-call target's case.
        s.settimeout(60)
        return fastsock.recvall(s, n)

    def fastsock_recvall_into(self, s, n):
        fastsock.recvall_into(s, self.reused, n)
        return self.reused

    # ---- send ------------------------------------------------------------
    def sendall(self, s, n):
        s.sendall(memoryview(self.data)[:n])

    def memoryview_loop(self, s, n):
        view, off = memoryview(self.data)[:n], 0
        while off < n:
            off += s.send(view[off:])

    def socket_sendfile(self, s, n):
        s.sendfile(self.file, 0, n)

    def fastsock_sendall(self, s, n):
        fastsock.sendall(s, self.data, 0, n)

    def fastsock_sendfile(self, s, n):
        fastsock.sendfile(s, self.file, 0, n)

    # ---- 64-byte sends: per-call cost -----------------------------------
    def sendall_64(self, s, n):
        chunk, sendall = self.data[:64], s.sendall
        for _ in range(n // 64):
            sendall(chunk)

    def fastsock_sendall_64(self, s, n):
        chunk, sendall = self.data[:64], fastsock.sendall
        for _ in range(n // 64):
            sendall(s, chunk)

    # ---- request/response: "GET\n", then an 8-byte length and the body ----
    # Each returns (first body, last body): equal, checked after the clock.
    def rpc_makefile(self, s, n):
        f = s.makefile("rb")  # buffered: the header and the body's start in one recv
        first = last = None
        for _ in range(rpc_requests(n)):
            s.sendall(b"GET\n")
            size = int.from_bytes(f.read(8), "big")
            last = f.read(size)
            first = first or last
        f.close()
        return first, last

    def rpc_recv_into(self, s, n):
        head, hview = bytearray(8), None
        hview = memoryview(head)
        first = last = None
        for _ in range(rpc_requests(n)):
            s.sendall(b"GET\n")
            got = 0
            while got < 8:
                got += s.recv_into(hview[got:], 8 - got)
            size = int.from_bytes(head, "big")
            last = self._recv_into_loop(s, bytearray(size), size)
            first = first or last
        return first, last

    def rpc_fastsock(self, s, n):
        recvall = fastsock.recvall
        first = last = None
        for _ in range(rpc_requests(n)):
            s.sendall(b"GET\n")
            last = recvall(s, int.from_bytes(recvall(s, 8), "big"))
            first = first or last
        return first, last

    # ---- 64-byte messages: per-call cost ---------------------------------
    def recv_into_64(self, s, n):
        buf, recv_into, got = self.small, s.recv_into, 0
        while got < n:
            got += recv_into(buf, 64)
        return None

    def fastsock_recv_into_64(self, s, n):
        buf, recv_into, got = self.small, fastsock.recv_into, 0
        while got < n:
            got += recv_into(s, buf, 64)
        return None

    # A length prefix or a small header: exactly 64 bytes, the data waiting.
    def recv_waitall_64(self, s, n):
        recv, got = s.recv, 0
        while got < n:
            got += len(recv(64, socket.MSG_WAITALL))
        return None

    def fastsock_recvall_64(self, s, n):
        recvall, got = fastsock.recvall, 0
        while got < n:
            got += len(recvall(s, 64))
        return None

    VARIANTS = {
        "join_64k": "recv", "bytearray_recv_into": "recv", "bytearray_recv_into_reused": "recv",
        "recv_waitall": "recv", "makefile_read": "recv", "fastsock_recvall": "recv",
        "fastsock_recvall_timeout": "recv", "fastsock_recvall_into": "recv",
        "sendall": "send", "memoryview_loop": "send", "socket_sendfile": "send",
        "fastsock_sendall": "send", "fastsock_sendfile": "send",
        "recv_into_64": "msg", "fastsock_recv_into_64": "msg",
        "recv_waitall_64": "msg", "fastsock_recvall_64": "msg",
        "rpc_makefile": "rpc", "rpc_recv_into": "rpc", "rpc_fastsock": "rpc",
        "sendall_64": "smallsend", "fastsock_sendall_64": "smallsend",
    }

    def run(self, name, n):
        side = self.VARIANTS[name]
        fn = getattr(self, name)
        s = (self.sink() if side in ("send", "smallsend") else
             self.connect(f"lenprefix len={n} seed=1\n") if side == "rpc" else self.gen(n))
        try:
            reset_peak()
            before = status_kib(b"VmRSS:")
            t0 = time.perf_counter()
            result = fn(s, n)
            if side in ("send", "smallsend"):
                self.finish_send(s, n)
            dt = time.perf_counter() - t0
            added = status_kib(b"VmHWM:") - before
            align = -1
            if side == "rpc":
                first, last = result
                if len(last) != n or first != last:
                    raise RuntimeError(f"{name}: replies of {len(first)} and {len(last)} bytes differ")
            elif side == "recv":
                if len(result) < n:
                    raise RuntimeError(f"{name}: got {len(result)} of {n}")
                if n > 0:
                    align = page_offset_of(result)
            del result
        finally:
            s.close()
        return dt, added * 1024, align


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--max", type=int, required=True)
    a = ap.parse_args()
    w = Worker(a.port, a.file, a.max)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "quit":
            break
        if cmd[0] == "list":
            out.write(" ".join(f"{k}:{v}" for k, v in Worker.VARIANTS.items()) + "\n")
        elif cmd[0] == "pid":
            out.write(f"{os.getpid()}\n")
        elif cmd[0] == "sink":
            w.sink_extra = " ".join(cmd[1:])
            out.write("ok\n")
        elif cmd[0] == "run":
            try:
                dt, added, align = w.run(cmd[1], int(cmd[2]))
                out.write(f"ok {dt:.9f} {added} {align}\n")
            except Exception as e:  # reported, and the driver stops
                out.write(f"err {type(e).__name__}: {e}\n".replace("\n", " ").rstrip() + "\n")
        out.flush()


if __name__ == "__main__":
    main()
