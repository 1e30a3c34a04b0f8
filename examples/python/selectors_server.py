#!/usr/bin/env python3
"""The classic non-blocking server, with fastsock's progressive objects.

Each client sends a 16-byte header (payload size n, reply offset k, both
64-bit big-endian), then n bytes. The server receives the n bytes
progressively, each time the socket is readable, into one bytes object that
is allocated once and never zero-filled, then sends payload[k:] back from
that offset each time the socket is writable: no slicing, no joins.

    selectors_server.py [--port P]     serve until interrupted
    selectors_server.py --selftest     serve, run a few clients, check, exit
"""
import argparse
import os
import selectors
import socket
import struct
import sys
import threading

import fastsock

HEADER = struct.Struct(">QQ")


class Connection:
    def __init__(self, sel, sock):
        self.sel, self.sock = sel, sock
        self.header = bytearray(HEADER.size)
        self.stage = "header"
        self.xfer = fastsock.Receiver(sock, HEADER.size, buffer=self.header)
        sel.register(sock, self.xfer.want, self)

    def ready(self):
        try:
            self.xfer.step()
        except (EOFError, OSError) as exc:  # IncompleteError is an EOFError
            print(f"client gone after {exc.nbytes} bytes: {exc!r}", file=sys.stderr)
            return self.close()
        while self.xfer.done:  # the next stage may have nothing to move
            if self.stage == "header":
                n, self.k = HEADER.unpack(self.header)
                self.stage, self.xfer = "payload", fastsock.Receiver(self.sock, n)
            elif self.stage == "payload":
                payload = self.xfer.result()  # the bytes object itself, no copy
                k = min(self.k, len(payload))
                self.stage, self.xfer = "reply", fastsock.Sender(self.sock, payload, k)
            else:
                return self.close()
        self.sel.modify(self.sock, self.xfer.want, self)

    def close(self):
        self.sel.unregister(self.sock)
        self.sock.close()


def serve(listener, stop):
    listener.setblocking(False)
    with selectors.DefaultSelector() as sel:
        sel.register(listener, selectors.EVENT_READ, None)
        while not stop.is_set():
            for key, _ in sel.select(timeout=0.1):
                if key.data is None:
                    sock, _ = listener.accept()
                    sock.setblocking(False)
                    Connection(sel, sock)
                else:
                    key.data.ready()


def selftest(port):
    sizes = [(0, 0), (1, 0), (100_000, 99_999), (5 << 20, 12345), (20 << 20, 0)]
    errors = []

    def client(n, k):
        payload = os.urandom(n)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
            fastsock.sendall(c, HEADER.pack(n, k) + payload)
            back = fastsock.recvall(c, n - k)
        if back != payload[k:]:
            errors.append(f"n={n} k={k}: wrong reply")

    threads = [threading.Thread(target=client, args=nk) for nk in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors:
        print(e, file=sys.stderr)
    print(f"{len(sizes) - len(errors)} of {len(sizes)} clients answered correctly")
    return 1 if errors else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--selftest", action="store_true")
    args = parser.parse_args()
    listener = socket.create_server(("127.0.0.1", args.port))
    stop = threading.Event()
    if not args.selftest:
        print(f"listening on port {listener.getsockname()[1]}")
        serve(listener, stop)
        return 0
    server = threading.Thread(target=serve, args=(listener, stop))
    server.start()
    try:
        return selftest(listener.getsockname()[1])
    finally:
        stop.set()
        server.join()
        listener.close()


if __name__ == "__main__":
    sys.exit(main())
