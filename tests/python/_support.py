"""Shared helpers for the Python-specific tests: real sockets, no server."""

import contextlib
import os
import socket
import struct
import threading
import time


def pattern(n, seed=1):
    """n bytes that show a misplaced chunk: not a repeat of any short unit."""
    block = bytes((i * 131 + seed * 17 + (i >> 8)) & 0xFF for i in range(65521))
    return (block * (n // len(block) + 1))[:n]


@contextlib.contextmanager
def socket_pair():
    """A connected pair of stream sockets (AF_UNIX), closed afterwards."""
    a, b = socket.socketpair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@contextlib.contextmanager
def tcp_pair():
    """A connected pair of TCP sockets over loopback."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    try:
        yield client, server
    finally:
        client.close()
        server.close()


def reset(sock):
    """Closes sock with an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def in_thread(fn, *args):
    """Runs fn(*args) in a started daemon thread; join() re-raises its error."""
    result = {}

    def run():
        try:
            result["value"] = fn(*args)
        except BaseException as exc:  # handed to the joining thread
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join(timeout=30):
        thread.join(timeout)
        if thread.is_alive():
            raise AssertionError(f"{fn.__name__} still running after {timeout} s")
        if "error" in result:
            raise result["error"]
        return result.get("value")

    return join


def send_later(sock, data, delay):
    def send():
        time.sleep(delay)
        sock.sendall(data)

    return in_thread(send)


def drain(sock):
    """Reads sock to the end of the stream; returns the byte count."""
    total = 0
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return total
        total += len(chunk)


def child_env():
    """The environment for a child Python that must import the same fastsock."""
    return dict(os.environ)
