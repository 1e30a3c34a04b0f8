"""fastsock.aio on one event loop: the default asyncio loop, or uvloop.

    aio_test.py [--loop asyncio|uvloop] [unittest arguments]

With --loop uvloop, uvloop must import: the run fails, never skips, where it
can't (CTest runs it under Debian's /usr/bin/python3, which has it).
Named so that python_unit's discovery (test_*.py) leaves it to its own tests.
"""

import asyncio
import errno
import io
import os
import random
import socket
import ssl
import sys
import tempfile
import threading
import time
import unittest

import fastsock
import fastsock.aio as aio
from _support import in_thread, pattern, reset, tcp_pair

LOOP = "asyncio"


def run(coro):
    if LOOP == "uvloop":
        import uvloop  # an ImportError fails the run: no skip
        return uvloop.run(coro) if hasattr(uvloop, "run") else _run_uvloop(coro, uvloop)
    return asyncio.run(coro)


def _run_uvloop(coro, uvloop):
    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def nonblocking_pair():
    return tcp_pair()


class Heartbeat:
    """A 1 ms task in the loop; worst is the longest gap beyond 1 ms, in ms."""

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
        return self.worst


class Stream:
    """A cheap deterministic stream: a prime-length unit repeated."""

    UNIT = pattern(65521, seed=7)

    def slice(self, off, n):
        phase = off % len(self.UNIT)
        reps = (phase + n) // len(self.UNIT) + 1
        return (self.UNIT * reps)[phase:phase + n]


class AioTest(unittest.TestCase):
    def test_loop_is_the_one_asked_for(self):
        async def main():
            return type(asyncio.get_running_loop()).__module__

        module = run(main())
        self.assertEqual(module.split(".")[0], "uvloop" if LOOP == "uvloop" else "asyncio")

    def test_recvall_and_sendall_both_ways(self):
        data = pattern(20 << 20)

        async def main():
            with nonblocking_pair() as (a, b):
                a.setblocking(False)
                b.setblocking(False)
                send = asyncio.ensure_future(aio.sendall(a, data, 3, len(data) - 3))
                got = await aio.recvall(b, len(data) - 3)
                self.assertEqual(await send, len(data) - 3)
                self.assertEqual(got, data[3:])
                buf = bytearray(b"\xa5" * 1000)
                send = asyncio.ensure_future(aio.sendall(b, data, 0, 600))
                self.assertEqual(await aio.recvall_into(a, buf, 600, 100), 600)
                await send
                self.assertEqual(buf[100:700], data[:600])
                self.assertEqual(buf[:100] + buf[700:], b"\xa5" * 400)
                self.assertEqual(await aio.recvall(a, 0), b"")

        run(main())

    def test_full_duplex_and_two_of_a_kind(self):
        n = 16 << 20
        data = pattern(n)

        async def main():
            with nonblocking_pair() as (a, b):
                for s in (a, b):
                    s.setblocking(False)
                # a receives and sends at once; b the same, crosswise.
                tasks = [asyncio.ensure_future(c) for c in (
                    aio.recvall(a, n), aio.sendall(a, data), aio.recvall(b, n), aio.sendall(b, data))]
                await asyncio.sleep(0)
                with self.assertRaisesRegex(RuntimeError, "another receive is already running"):
                    await aio.recvall(a, 10)
                with self.assertRaisesRegex(RuntimeError, "another send is already running"):
                    await aio.sendall(a, b"x")
                got_a, sent_a, got_b, sent_b = await asyncio.gather(*tasks)
                self.assertEqual((sent_a, sent_b), (n, n))
                self.assertTrue(got_a == data and got_b == data)
                # Nothing left behind: no claim on the fds, no shared budget state.
                self.assertEqual((aio._busy, aio._loops), ({}, {}))

        run(main())

    def test_selector_loop_reader_not_replaced(self):
        if LOOP == "uvloop":
            self.skipTest("uvloop keeps its own readers out of reach (documented in fastsock.aio)")

        async def main():
            loop = asyncio.get_running_loop()
            with nonblocking_pair() as (a, b):
                b.setblocking(False)
                pending = asyncio.ensure_future(loop.sock_recv(b, 10))
                await asyncio.sleep(0)
                with self.assertRaisesRegex(RuntimeError, "already has a reader"):
                    await aio.recvall(b, 10)
                a.sendall(b"0123456789")
                self.assertEqual(await pending, b"0123456789")  # its reader is still there

        run(main())

    def test_end_of_stream_and_reset(self):
        async def main():
            with nonblocking_pair() as (a, b):
                b.setblocking(False)
                a.sendall(b"p" * 5000)
                a.shutdown(socket.SHUT_WR)
                with self.assertRaises(fastsock.IncompleteError) as cm:
                    await aio.recvall(b, 10000)
                e = cm.exception
                self.assertEqual((e.partial, e.expected, e.nbytes), (b"p" * 5000, 10000, 5000))
            with nonblocking_pair() as (a, b):
                b.setblocking(False)
                a.sendall(b"r" * 3000)
                loop = asyncio.get_running_loop()
                loop.call_later(0.05, reset, a)
                with self.assertRaises(ConnectionResetError) as cm:
                    await aio.recvall(b, 1 << 20)
                self.assertEqual((cm.exception.nbytes, cm.exception.partial), (3000, b"r" * 3000))
            with nonblocking_pair() as (a, b):
                a.setblocking(False)
                asyncio.get_running_loop().call_later(0.05, reset, b)
                with self.assertRaises(OSError) as cm:
                    await aio.sendall(a, bytes(64 << 20))
                self.assertIn(cm.exception.errno, (errno.EPIPE, errno.ECONNRESET))
                self.assertGreater(cm.exception.nbytes, 0)

        run(main())

    def test_fd_closed_while_registered(self):
        async def main():
            with nonblocking_pair() as (a, b):
                b.setblocking(False)
                task = asyncio.ensure_future(aio.recvall(b, 100))
                await asyncio.sleep(0.01)
                b.close()
                t0 = time.perf_counter()
                with self.assertRaises(OSError) as cm:
                    await asyncio.wait_for(task, 5)
                self.assertEqual((cm.exception.errno, cm.exception.nbytes), (errno.EBADF, 0))
                self.assertLess(time.perf_counter() - t0, 1.0)

        run(main())

    def test_tls_refused_and_blocking_socket_accepted(self):
        async def main():
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            with context.wrap_socket(socket.socket(), server_hostname="example.org") as tls:
                with self.assertRaisesRegex(TypeError, "SSLSocket"):
                    await aio.recvall(tls, 1)
                with self.assertRaisesRegex(TypeError, "SSLSocket"):
                    await aio.sendall(tls, b"x")
            # A blocking socket: accepted, and it doesn't block the loop.
            with nonblocking_pair() as (a, b):
                self.assertTrue(b.getblocking())
                task = asyncio.ensure_future(aio.recvall(b, 3 << 20))
                # Nothing arrives, and the loop still runs (a blocked loop
                # would never get here: the bytes are sent below).
                await asyncio.wait_for(asyncio.sleep(0.2), 5)
                self.assertFalse(task.done())
                await asyncio.get_running_loop().run_in_executor(None, a.sendall, pattern(3 << 20))
                self.assertEqual(await task, pattern(3 << 20))
                self.assertTrue(b.getblocking())

        run(main())

    def test_timeouts_report_progress(self):
        async def main():
            with nonblocking_pair() as (a, b):
                b.setblocking(False)
                a.sendall(b"t" * 700)
                with self.assertRaises(TimeoutError) as cm:
                    await aio.recvall(b, 1000, timeout=0.05)
                self.assertEqual((cm.exception.nbytes, cm.exception.partial), (700, b"t" * 700))
                a.sendall(b"u" * 100)
                try:
                    async with asyncio.timeout(0.05):
                        await aio.recvall(b, 1000)
                except TimeoutError as exc:
                    cancelled = aio.progress(exc)
                    self.assertEqual(cancelled.nbytes, 100)
                    self.assertEqual(cancelled.transfer.partial(), b"u" * 100)
                    cancelled.transfer.close()  # abandoned: the result shrunk in place
                    self.assertEqual(cancelled.transfer.partial(), b"u" * 100)
                    with self.assertRaisesRegex(ValueError, "closed"):
                        cancelled.transfer.step()
                else:
                    self.fail("no TimeoutError")
                buf = bytearray(1000)
                a.sendall(b"v" * 10)
                try:
                    await asyncio.wait_for(aio.recvall_into(b, buf, 1000), 0.05)
                except TimeoutError as exc:
                    moved = aio.progress(exc).nbytes
                else:
                    self.fail("no TimeoutError")
                self.assertEqual(moved, 10)
                # Resumed from the position reported: nothing lost.
                a.sendall(b"w" * 990)
                self.assertEqual(await aio.recvall_into(b, buf, 1000 - moved, moved), 990)
                self.assertEqual(buf, b"v" * 10 + b"w" * 990)

        run(main())

    def test_held_transfer_resumes_after_cancellation(self):
        async def main():
            with nonblocking_pair() as (a, b):
                b.setblocking(False)
                r = fastsock.Receiver(b, 6000)
                a.sendall(b"h" * 2500)
                task = asyncio.ensure_future(aio.transfer(r))
                await asyncio.sleep(0.02)
                task.cancel()
                with self.assertRaises(asyncio.CancelledError) as cm:
                    await task
                self.assertEqual((r.nbytes, cm.exception.nbytes), (2500, 2500))
                self.assertIs(cm.exception.transfer, r)
                self.assertEqual(r.partial(), b"h" * 2500)
                a.sendall(b"i" * 3500)
                self.assertEqual(await aio.transfer(r), b"h" * 2500 + b"i" * 3500)

        run(main())

    def test_random_cancellations_lose_nothing(self):
        """1,000 cancellations at random points of a stream, each resumed from
        the position reported, every byte verified against the stream."""
        rng = random.Random(1234)
        stream = Stream()
        unit = len(Stream.UNIT)
        block = Stream.UNIT * 64  # whole units: the writer's stream stays in phase

        async def main():
            with nonblocking_pair() as (a, b):
                b.setblocking(False)
                stop = threading.Event()

                def write():
                    try:
                        while not stop.is_set():
                            a.sendall(block)
                    except OSError:  # the reader closed: the test is over
                        pass

                writer = in_thread(write)
                pos = cancelled = midway = 0
                saved = aio.LOOP_BUDGET
                aio.LOOP_BUDGET = 16 << 10  # many steps per receive: many boundaries to stop at
                try:
                    while cancelled < 1000:
                        n = rng.choice((1 << 10, 64 << 10, 256 << 10))
                        held = fastsock.Receiver(b, n) if cancelled % 2 else None
                        buf = bytearray(n)
                        # Half resume from the CancelledError's nbytes after
                        # recvall_into, half from a Receiver the test holds.
                        task = asyncio.ensure_future(
                            aio.transfer(held) if held else aio.recvall_into(b, buf))
                        for _ in range(rng.randrange(0, 4)):
                            await asyncio.sleep(0)
                        task.cancel()
                        try:
                            got = await task
                            moved = n
                        except asyncio.CancelledError as exc:
                            if not hasattr(exc, "nbytes"):
                                # Cancelled before the call began: documented
                                # as nothing moved.
                                self.assertTrue(held is None or held.nbytes == 0)
                                continue
                            cancelled += 1
                            moved = exc.nbytes
                            midway += 0 < moved < n
                            got = held.partial() if held else None
                            if held:
                                self.assertEqual(moved, held.nbytes)
                        if held:
                            buf[:moved] = got
                        self.assertTrue(buf[:moved] == stream.slice(pos, moved),
                                        f"bytes at {pos} differ after {cancelled} cancellations")
                        pos += moved
                finally:
                    aio.LOOP_BUDGET = saved
                    stop.set()
                    b.close()
                    writer()
                self.assertGreater(midway, 300, "too few cancellations landed inside a transfer")
                self.assertGreater(pos, 10 * unit)

        run(main())

    def test_sendfile_positions_and_fallback(self):
        data = pattern(5 << 20)

        async def main():
            with tempfile.TemporaryFile() as f, nonblocking_pair() as (a, b):
                f.write(data)
                a.setblocking(False)
                got = in_thread(fastsock.recvall, b, len(data) - 1000)
                self.assertEqual(await aio.sendfile(a, f, 1000), len(data) - 1000)
                self.assertEqual(got(), data[1000:])
                self.assertEqual(f.tell(), len(data))
                got = in_thread(fastsock.recvall, b, 3000)
                self.assertEqual(await aio.sendfile(a, io.BytesIO(data), 10, 3000), 3000)
                self.assertEqual(got(), data[10:3010])
                r, w = os.pipe()
                try:
                    with self.assertRaisesRegex(ValueError, "regular file"):
                        await aio.sendfile(a, r)
                finally:
                    os.close(r)
                    os.close(w)
                with self.assertRaisesRegex(ValueError, "count"):
                    await aio.sendfile(a, f, 0, 0)

        run(main())

    def test_large_fresh_result_does_not_stall_the_loop(self):
        n = 64 << 20

        async def attempt():
            with nonblocking_pair() as (a, b):
                b.setblocking(False)
                writer = in_thread(a.sendall, bytes(n))
                await asyncio.sleep(0.05)
                beat = Heartbeat()
                got = await aio.recvall(b, n)
                stall = await beat.stop()
                writer()
                self.assertEqual(len(got), n)
                return stall

        async def main():
            # The target is 5 ms (bench/python/eventloop.py measures it). On a
            # machine shared with other builds a gap of tens of ms now and
            # then is the machine's, so the best of three counts; the whole
            # 64 MiB faulted or copied in one piece is 40 ms and more, every
            # time.
            stalls = []
            for _ in range(3):
                stalls.append(await attempt())
                if stalls[-1] < 30:
                    break
            self.assertLess(min(stalls), 30, f"worst heartbeat stalls {stalls} ms")

        run(main())


def main():
    global LOOP
    args = sys.argv[1:]
    if args[:1] == ["--loop"]:
        LOOP, args = args[1], args[2:]
    if LOOP not in ("asyncio", "uvloop"):
        sys.exit(f"unknown loop {LOOP!r}")
    if LOOP == "uvloop":
        import uvloop  # noqa: F401 -- fails the run where uvloop is missing
    unittest.main(argv=[sys.argv[0]] + args)


if __name__ == "__main__":
    main()
