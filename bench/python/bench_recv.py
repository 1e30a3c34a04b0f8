#!/usr/bin/env python3
"""fastsock.recvall and recv_into against the standard library, over loopback.

    PYTHONPATH=<build>/bindings/python bench/python/bench_recv.py \\
        --server <build>/tests/fastsock-loopback-server [--runs 7]

Prints, in one run, the median of --runs runs of each measurement:
- receiving 1 MiB and 256 MiB into a fresh object: fastsock.recvall, a
  bytearray filled by a recv_into loop, recv(n, MSG_WAITALL), and chunks of
  recv(64 KiB) joined with b''.join;
- the peak RSS of a fresh process that receives 256 MiB each way;
- the per-call cost of fastsock.recv_into and socket.recv_into on 64-byte
  messages.
Each transfer is timed from the request being sent to the last byte received.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

MiB = 1 << 20
CHUNK = 64 * 1024


def recv_fastsock(sock, n):
    import fastsock
    return fastsock.recvall(sock, n)


def recv_into_loop(sock, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise EOFError
        got += k
    return buf


def recv_waitall(sock, n):
    data = sock.recv(n, socket.MSG_WAITALL)
    if len(data) != n:
        raise EOFError
    return data


def recv_join(sock, n):
    chunks = []
    got = 0
    while got < n:
        chunk = sock.recv(min(CHUNK, n - got))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


METHODS = {
    "fastsock.recvall": recv_fastsock,
    "bytearray + recv_into loop": recv_into_loop,
    "recv(n, MSG_WAITALL)": recv_waitall,
    "b''.join(recv(64 KiB) chunks)": recv_join,
}


def connect(port, request):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(request.encode() + b"\n")
    return sock


def time_transfer(port, method, n):
    with socket.create_connection(("127.0.0.1", port)) as sock:
        start = time.perf_counter()
        sock.sendall(f"gen len={n} seed=1\n".encode())
        data = METHODS[method](sock, n)
        elapsed = time.perf_counter() - start
    assert len(data) == n
    return elapsed


def peak_rss_child(port, method, n):
    """Peak RSS (MiB) of a fresh interpreter that receives n bytes one way.

    VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child would report
    its parent's peak."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
        "import socket, bench_recv, fastsock\n"
        f"s = socket.create_connection(('127.0.0.1', {port}))\n"
        f"s.sendall(b'gen len={n} seed=1\\n')\n"
        f"data = bench_recv.METHODS[{method!r}](s, {n})\n"
        f"assert len(data) == {n}\n"
        "print(bench_recv.peak_kib())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(out.stdout) / 1024


def peak_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def per_call_ns(port, use_fastsock, calls):
    import fastsock
    buf = bytearray(64)
    with connect(port, f"gen len={64 * calls} seed=2") as sock:
        recv_into = sock.recv_into
        fs_recv_into = fastsock.recv_into
        time.sleep(0.05)  # let the server fill the socket buffer first
        start = time.perf_counter()
        if use_fastsock:
            for _ in range(calls):
                fs_recv_into(sock, buf, 64)
        else:
            for _ in range(calls):
                recv_into(buf, 64)
        elapsed = time.perf_counter() - start
    return elapsed / calls * 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200000)
    args = parser.parse_args()
    if args.runs < 5:
        parser.error("--runs must be at least 5")

    server = subprocess.Popen([args.server, "--idle-exit", "600"], stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline().split()[1])
    try:
        print(f"Python {sys.version.split()[0]}, median of {args.runs} runs each, loopback\n")
        for n in (1 * MiB, 256 * MiB):
            print(f"receive {n // MiB} MiB into a fresh object")
            times = {method: [] for method in METHODS}
            for method in METHODS:  # one warm-up round, not counted
                time_transfer(port, method, n)
            for _ in range(args.runs):  # interleaved, so drift hits every method alike
                for method in METHODS:
                    times[method].append(time_transfer(port, method, n))
            base = statistics.median(times["fastsock.recvall"])
            for method, runs in times.items():
                med = statistics.median(runs)
                print(f"  {method:32s} {med * 1e3:9.2f} ms  {n / med / MiB:8.0f} MiB/s"
                      f"  x{med / base:5.2f}  (min {min(runs) * 1e3:.2f} ms)")
            print()

        n = 256 * MiB
        print(f"peak RSS of a fresh process receiving {n // MiB} MiB (target for recvall <= 288 MiB)")
        for method in METHODS:
            rss = statistics.median(peak_rss_child(port, method, n) for _ in range(args.runs))
            print(f"  {method:32s} {rss:7.1f} MiB")
        empty = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, %r); "
                                "import socket, fastsock, bench_recv; print(bench_recv.peak_kib())"
                                % os.path.dirname(os.path.abspath(__file__))],
                               check=True, capture_output=True, text=True)
        print(f"  {'(interpreter + fastsock alone)':32s} {int(empty.stdout) / 1024:7.1f} MiB\n")

        print(f"per call, 64-byte messages ({args.calls} calls a run)")
        labels = {True: "fastsock.recv_into(sock, buf, 64)", False: "sock.recv_into(buf, 64)"}
        calls = {True: [], False: []}
        for _ in range(args.runs):
            for use in (True, False):
                calls[use].append(per_call_ns(port, use, args.calls))
        for use, label in labels.items():
            print(f"  {label:36s} {statistics.median(calls[use]):7.0f} ns  (min {min(calls[use]):.0f} ns)")
    finally:
        try:
            with socket.create_connection(("127.0.0.1", port)) as quit_conn:
                quit_conn.sendall(b"quit\n")
            server.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            server.kill()


if __name__ == "__main__":
    main()
