"""Receiver and Sender: the progressive transfers, stepped by hand or by a
selectors loop, on real sockets and files."""

import errno
import os
import selectors
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest

import fastsock
from _support import child_env, in_thread, pattern, reset, socket_pair, tcp_pair

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python", "selectors_server.py")


def run_loop(xfer, timeout=10):
    """Steps xfer in a selectors loop until it ends; returns the step sizes."""
    moved = []
    with selectors.DefaultSelector() as sel:
        sel.register(xfer, xfer.want)
        while not xfer.ended:
            if not sel.select(timeout):
                raise AssertionError(f"no readiness within {timeout} s: {xfer!r}")
            moved.append(xfer.step())
    return moved


class ReceiverTest(unittest.TestCase):
    def test_fresh_result_is_the_filled_object(self):
        data = pattern(3 << 20)
        with tcp_pair() as (a, b):
            b.setblocking(False)
            r = fastsock.Receiver(b, len(data), budget=256 * 1024)
            self.assertEqual((r.want, r.done, r.ended, r.nbytes, r.expected),
                             (selectors.EVENT_READ, False, False, 0, len(data)))
            with self.assertRaisesRegex(RuntimeError, "not complete"):
                r.result()
            join = in_thread(a.sendall, data)
            steps = run_loop(r)
            join()
            self.assertTrue(max(steps) <= 256 * 1024)
            self.assertEqual(sum(steps), len(data))
            self.assertTrue(r.done and r.ended and r.want == 0)
            result = r.result()
            self.assertIs(type(result), bytes)
            self.assertIs(r.result(), result)  # handed out, never copied
            self.assertEqual(result, data)
            self.assertEqual(r.step(), 0)  # after the end: nothing moves

    def test_partial_while_running_is_the_filled_prefix(self):
        with socket_pair() as (a, b):
            r = fastsock.Receiver(b, 10)
            a.sendall(b"abcd")
            self.assertEqual(r.step(), 4)
            self.assertEqual(r.partial(), b"abcd")
            self.assertEqual(r.step(), 0)  # a blocking socket: a step still never waits
            self.assertEqual(r.nbytes, 4)

    def test_end_of_stream_reports_the_partial_bytes(self):
        with socket_pair() as (a, b):
            r = fastsock.Receiver(b, 100)
            a.sendall(b"x" * 40)
            a.close()
            with self.assertRaises(fastsock.IncompleteError) as cm:
                run_loop(r)
            exc = cm.exception
            self.assertEqual((exc.partial, exc.expected, exc.nbytes), (b"x" * 40, 100, 40))
            self.assertTrue(r.ended and not r.done)
            self.assertEqual(r.partial(), b"x" * 40)
            with self.assertRaises(fastsock.IncompleteError):
                r.step()  # the error again, not a silent 0
            with self.assertRaises(fastsock.IncompleteError):
                r.result()

    def test_reset_has_nbytes(self):
        with tcp_pair() as (a, b):
            r = fastsock.Receiver(b, 1 << 20)
            a.sendall(b"y" * 1000)
            while r.nbytes < 1000:
                r.step()
            reset(a)
            with self.assertRaises(ConnectionResetError) as cm:
                run_loop(r)
            self.assertEqual(cm.exception.nbytes, 1000)
            self.assertEqual(cm.exception.partial, b"y" * 1000)

    def test_close_ends_it_and_hands_out_the_prefix_without_copy(self):
        with socket_pair() as (a, b):
            buf = bytearray(10)
            r = fastsock.Receiver(b, 4, buffer=buf)
            r.close()
            buf.extend(b"z")  # the buffer is let go at once
            self.assertTrue(r.ended and not r.done and r.want == 0)
            r = fastsock.Receiver(b, 3 << 20)
            a.sendall(b"c" * 5000)
            while r.nbytes < 5000:
                r.step()
            copy = r.partial()
            r.close()
            shrunk = r.partial()
            self.assertEqual((copy, shrunk), (b"c" * 5000, b"c" * 5000))
            self.assertIs(r.partial(), shrunk)  # no copy once closed
            self.assertIn("closed", repr(r))
            with self.assertRaisesRegex(ValueError, "closed fastsock.Receiver: it stopped at 5000"):
                r.step()
            with self.assertRaisesRegex(ValueError, "closed"):
                r.result()
            r.close()  # twice: nothing more

    def test_close_from_another_thread_while_stepping(self):
        # A large step runs without the GIL; close() (or a step) from another
        # thread meanwhile must not free or move the memory it fills.
        data = pattern(16 << 20)
        with socket_pair() as (a, b):
            r = fastsock.Receiver(b, 64 << 20)
            writer = in_thread(a.sendall, data)

            def step_until_closed():
                while not r.ended:
                    try:
                        r.step()
                    except RuntimeError:  # the other thread's step runs
                        pass
                    except ValueError:  # closed
                        return

            stepper = in_thread(step_until_closed)
            while r.nbytes < len(data) // 2:
                try:
                    r.step()
                except RuntimeError:
                    pass
            r.close()
            stepper()
            b.shutdown(socket.SHUT_RDWR)  # the writer's send fails instead of waiting
            try:
                writer()
            except OSError:
                pass  # the reader closed first: fine
            got = r.partial()
            self.assertEqual(len(got), r.nbytes)
            self.assertGreaterEqual(r.nbytes, len(data) // 2)
            self.assertEqual(got, data[:len(got)])

    def test_into_a_buffer_at_an_offset(self):
        buf = bytearray(b"\xa5" * 100)
        with socket_pair() as (a, b):
            r = fastsock.Receiver(b, 50, buffer=buf, offset=30)
            # The buffer is held while the transfer runs: it can't move.
            with self.assertRaises(BufferError):
                buf.extend(b"z")
            a.sendall(pattern(60))
            run_loop(r)
            self.assertEqual(r.result(), 50)
            self.assertEqual(buf[30:80], pattern(50))
            self.assertEqual(buf[:30] + buf[80:], b"\xa5" * 50)
            self.assertIsNone(r.partial())
            buf.extend(b"z")  # released once it ended

    def test_into_rest_of_buffer_and_bad_ranges(self):
        with socket_pair() as (a, b):
            buf = bytearray(16)
            r = fastsock.Receiver(b, buffer=buf, offset=6)
            self.assertEqual(r.expected, 10)
            with self.assertRaisesRegex(ValueError, "offset"):
                fastsock.Receiver(b, 1, buffer=buf, offset=17)
            with self.assertRaisesRegex(ValueError, "nbytes"):
                fastsock.Receiver(b, 11, buffer=buf, offset=6)
            with self.assertRaises(TypeError):
                fastsock.Receiver(b, 1, buffer=b"read-only")
            with self.assertRaisesRegex(ValueError, "negative"):
                fastsock.Receiver(b, -1)
            with self.assertRaises(MemoryError):
                fastsock.Receiver(b, 1 << 62)
            with self.assertRaises(TypeError):
                fastsock.Receiver(b)
            with self.assertRaisesRegex(ValueError, "budget"):
                fastsock.Receiver(b, 1, budget=0)
            # A def's messages for a wrong call (the constructors are vectorcalls).
            with self.assertRaisesRegex(TypeError, "takes from 1 to 2 positional arguments but 3"):
                fastsock.Receiver(b, 1, buf)
            with self.assertRaisesRegex(TypeError, "unexpected keyword argument 'bogus'"):
                fastsock.Receiver(b, 1, bogus=2)
            with self.assertRaisesRegex(TypeError, "missing 1 required positional argument: 'data'"):
                fastsock.Sender(b)
            with self.assertRaisesRegex(TypeError, "multiple values for argument 'offset'"):
                fastsock.Sender(b, b"x", 0, offset=0)
            del r
            a.sendall(b"q")
            self.assertEqual(b.recv(1), b"q")  # nothing was consumed by refusals

    def test_zero_bytes_is_done_at_once(self):
        with socket_pair() as (_, b):
            r = fastsock.Receiver(b, 0)
            self.assertTrue(r.done)
            self.assertEqual(r.result(), b"")

    def test_tls_and_bad_sockets_refused(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        with context.wrap_socket(socket.socket(), server_hostname="example.org") as tls:
            with self.assertRaisesRegex(TypeError, "SSLSocket"):
                fastsock.Receiver(tls, 1)
            with self.assertRaisesRegex(TypeError, "SSLSocket"):
                fastsock.Sender(tls, b"x")
            with tempfile.TemporaryFile() as f:
                with self.assertRaisesRegex(TypeError, "SSLSocket"):
                    fastsock.Sender.from_file(tls, f)
        closed = socket.socket()
        closed.close()
        with self.assertRaises(OSError) as cm:
            fastsock.Receiver(closed, 1)
        self.assertEqual(cm.exception.errno, errno.EBADF)
        with tempfile.TemporaryFile() as f:
            r = fastsock.Receiver(f.fileno(), 1)
            with self.assertRaises(OSError) as cm:
                r.step()
            self.assertEqual((cm.exception.errno, cm.exception.nbytes), (errno.ENOTSOCK, 0))

    def test_budget_can_change_between_steps(self):
        with socket_pair() as (a, b):
            a.sendall(b"m" * 5000)
            r = fastsock.Receiver(b, 5000, budget=1000)
            self.assertEqual(r.step(), 1000)
            r.budget = 3000
            self.assertEqual(r.budget, 3000)
            self.assertEqual(r.step(), 3000)
            self.assertEqual(r.step(), 1000)
            self.assertTrue(r.done)
            self.assertIn("done", repr(r))


class SenderTest(unittest.TestCase):
    def test_range_from_an_offset(self):
        data = pattern(8 << 20)
        with tcp_pair() as (a, b):
            a.setblocking(False)
            s = fastsock.Sender(a, data, 1234, 6 << 20)
            self.assertEqual((s.want, s.expected), (selectors.EVENT_WRITE, 6 << 20))
            received = in_thread(fastsock.recvall, b, 6 << 20)
            steps = run_loop(s)
            self.assertEqual(s.result(), 6 << 20)
            self.assertTrue(max(steps) <= s.budget)
            self.assertEqual(received(), data[1234:1234 + (6 << 20)])

    def test_peer_gone_is_an_error_with_nbytes_not_sigpipe(self):
        with tcp_pair() as (a, b):
            s = fastsock.Sender(a, bytes(64 << 20))
            s.step()
            reset(b)
            with self.assertRaises(OSError) as cm:
                run_loop(s)
            self.assertIn(cm.exception.errno, (errno.EPIPE, errno.ECONNRESET))
            self.assertEqual(cm.exception.nbytes, s.nbytes)
            self.assertGreater(s.nbytes, 0)

    def test_bad_ranges(self):
        with socket_pair() as (a, _):
            with self.assertRaisesRegex(ValueError, "offset"):
                fastsock.Sender(a, b"abc", 4)
            with self.assertRaisesRegex(ValueError, "count"):
                fastsock.Sender(a, b"abc", 1, 3)
            with self.assertRaises(TypeError):
                fastsock.Sender(a, "text")
            self.assertTrue(fastsock.Sender(a, b"abc", 3).done)

    def test_from_file_progressive_sendfile(self):
        data = pattern(3 << 20)
        with tempfile.TemporaryFile() as f, tcp_pair() as (a, b):
            f.write(data)
            f.seek(77)
            a.setblocking(False)
            s = fastsock.Sender.from_file(a, f, 100, None, budget=512 * 1024)
            self.assertEqual(s.expected, len(data) - 100)
            received = in_thread(fastsock.recvall, b, len(data) - 100)
            run_loop(s)
            self.assertEqual(received(), data[100:])
            self.assertEqual(f.tell(), 77)  # left alone, as documented

    def test_from_file_refuses_a_pipe(self):
        r, w = os.pipe()
        try:
            with socket_pair() as (a, _):
                with self.assertRaisesRegex(ValueError, "regular file"):
                    fastsock.Sender.from_file(a, r)
        finally:
            os.close(r)
            os.close(w)


class ExampleTest(unittest.TestCase):
    def test_selectors_example_runs(self):
        out = subprocess.run([sys.executable, EXAMPLE, "--selftest"], env=child_env(),
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("5 of 5 clients answered correctly", out.stdout)


if __name__ == "__main__":
    unittest.main()
