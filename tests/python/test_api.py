"""Arguments, errors, the socket-module parity and the documentation."""

import errno
import inspect
import io
import os
import pickle
import pydoc
import socket
import ssl
import tempfile
import time
import unittest

import fastsock
from _support import drain, in_thread, pattern, reset, socket_pair, tcp_pair


def outcome(fn, *args):
    """(exception type, message) or ('ok', result), to compare two calls."""
    try:
        return "ok", fn(*args)
    except Exception as exc:
        return type(exc), str(exc)


class BadArgumentsTest(unittest.TestCase):
    def assert_nothing_moved(self, a, b):
        b.sendall(b"first")
        self.assertEqual(a.recv(5), b"first")

    def test_recvall_sizes(self):
        with socket_pair() as (a, b):
            with self.assertRaisesRegex(ValueError, "'n' must not be negative"):
                fastsock.recvall(a, -1)
            with self.assertRaises(TypeError):
                fastsock.recvall(a, 1.5)
            with self.assertRaises(TypeError):
                fastsock.recvall(a, "10")
            with self.assertRaises(MemoryError):
                fastsock.recvall(a, 10 ** 15)
            with self.assertRaises(MemoryError):
                fastsock.recvall(a, 2 ** 70)
            self.assert_nothing_moved(a, b)
            self.assertEqual(fastsock.recvall(a, 0), b"")

    def test_ranges_refused_before_any_byte_moves(self):
        buf = bytearray(b"\xa5") * 100
        with socket_pair() as (a, b):
            b.sendall(b"data")
            refused = [
                (fastsock.recvall_into, (a, buf, 101)),
                (fastsock.recvall_into, (a, buf, 51, 50)),
                (fastsock.recvall_into, (a, buf, 0, 101)),
                (fastsock.recvall_into, (a, buf, -1)),
                (fastsock.recvall_into, (a, buf, 1, -1)),
                (fastsock.recvall_into, (a, buf, 2 ** 64 - 1)),
                (fastsock.recvall_into, (a, buf, 2 ** 64 - 2, 1)),
                (fastsock.recvall_into, (a, buf, 2 ** 80)),
                (fastsock.recvall_into, (a, buf, 1, 2 ** 80)),
                (fastsock.recv_into, (a, buf, 101)),
                (fastsock.recv_into, (a, buf, -3)),
                (lambda *x: fastsock.recv_into(*x, offset=96), (a, buf, 5)),
                (lambda *x: fastsock.recv_into(*x, offset=101), (a, buf)),
                (lambda *x: fastsock.recv_into(*x, offset=-1), (a, buf)),
            ]
            for fn, args in refused:
                with self.subTest(args=args[2:]):
                    with self.assertRaises(ValueError):
                        fn(*args)
            with self.assertRaisesRegex(ValueError, r"^recvall_into\(\) argument 'nbytes'"):
                fastsock.recvall_into(a, buf, 51, 50)
            with self.assertRaisesRegex(ValueError, r"^recvall_into\(\) argument 'offset'"):
                fastsock.recvall_into(a, buf, 0, 101)
            self.assertEqual(buf, b"\xa5" * 100)
            self.assertEqual(a.recv(4), b"data")

    def test_send_ranges(self):
        with socket_pair() as (a, b):
            for call in (fastsock.send, fastsock.sendall):
                for offset, count in ((11, None), (5, 6), (-1, None), (0, -1), (1, 2 ** 64 - 2),
                                      (0, 2 ** 64 - 1), (2 ** 70, None)):
                    with self.subTest(call=call.__name__, offset=offset, count=count):
                        with self.assertRaises(ValueError):
                            call(a, b"0123456789", offset, count)
            with self.assertRaisesRegex(ValueError, r"^sendall\(\) argument 'count'"):
                fastsock.sendall(a, b"0123456789", 5, 6)
            with self.assertRaisesRegex(ValueError, r"^send\(\) argument 'offset'"):
                fastsock.send(a, b"0123456789", -1)
            self.assertEqual(fastsock.sendall(a, b"0123456789", 10), 0)
            self.assertEqual(fastsock.send(a, b"0123456789", 9, 1), 1)
            a.shutdown(socket.SHUT_WR)
            self.assertEqual(b.recv(100), b"9")

    def test_bad_sockets(self):
        closed = socket.socket()
        closed.close()

        class NotInt:
            def fileno(self):
                return "3"

        cases = [("text", TypeError), (None, TypeError), (3.0, TypeError), (NotInt(), TypeError),
                 (closed, OSError), (-1, OSError), (2 ** 40, OSError)]
        for sock, exc in cases:
            with self.subTest(sock=repr(sock)):
                with self.assertRaises(exc) as cm:
                    fastsock.recvall(sock, 1)
                if exc is OSError:
                    self.assertEqual(cm.exception.errno, errno.EBADF)
                with self.assertRaises(exc):
                    fastsock.sendall(sock, b"x")
                with self.assertRaises(exc):
                    fastsock.recv_into(sock, bytearray(1))
        with tempfile.TemporaryFile() as f:
            with self.assertRaises(OSError) as cm:
                fastsock.recvall(f.fileno(), 1)
            self.assertEqual(cm.exception.errno, errno.ENOTSOCK)
            with self.assertRaises(OSError) as cm:
                fastsock.recvall(f, 1)  # an object with fileno() that is no socket
            self.assertEqual(cm.exception.errno, errno.ENOTSOCK)

    def test_int_fd_and_fileno_objects(self):
        with socket_pair() as (a, b):
            class Wrapper:
                def fileno(self):
                    return a.fileno()

            b.sendall(b"abcdef")
            self.assertEqual(fastsock.recvall(a.fileno(), 3), b"abc")
            self.assertEqual(fastsock.recvall(Wrapper(), 3), b"def")

    def test_ssl_socket_refused(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        with context.wrap_socket(socket.socket(), server_hostname="example.org") as tls:
            for call in (lambda: fastsock.recvall(tls, 1), lambda: fastsock.sendall(tls, b"x"),
                         lambda: fastsock.recv_into(tls, bytearray(1)), lambda: fastsock.send(tls, b"x"),
                         lambda: fastsock.recvall_into(tls, bytearray(1))):
                with self.assertRaisesRegex(TypeError, "SSLSocket"):
                    call()
            with tempfile.TemporaryFile() as f:
                with self.assertRaisesRegex(TypeError, "SSLSocket"):
                    fastsock.sendfile(tls, f)

    def test_timeouts(self):
        with socket_pair() as (a, b):
            with self.assertRaisesRegex(ValueError, "out of range"):
                fastsock.recvall(a, 1, timeout=-1)
            with self.assertRaises(ValueError):
                fastsock.recvall(a, 1, timeout=float("nan"))
            with self.assertRaises(TypeError):
                fastsock.recvall(a, 1, timeout="1")
            for call in (lambda: fastsock.recvall(a, 1, timeout=0),
                         lambda: fastsock.recvall_into(a, bytearray(1), timeout=0),
                         lambda: fastsock.sendall(a, b"x", timeout=0)):
                with self.assertRaisesRegex(ValueError, "timeout=0"):
                    call()
            self.assert_nothing_moved(a, b)

    def test_non_blocking_socket_refused_by_all_or_nothing_calls(self):
        with socket_pair() as (a, b), tempfile.TemporaryFile() as f:
            f.write(b"file")
            f.flush()
            a.setblocking(False)
            for call in (lambda: fastsock.recvall(a, 1), lambda: fastsock.recvall_into(a, bytearray(1)),
                         lambda: fastsock.sendall(a, b"x"), lambda: fastsock.sendfile(a, f),
                         lambda: fastsock.sendfile(a, io.BytesIO(b"x"))):
                with self.assertRaisesRegex(ValueError, "^non-blocking sockets are not supported$"):
                    call()
            # ... as the socket module's own sendfile does.
            with self.assertRaisesRegex(ValueError, "^non-blocking sockets are not supported$"):
                a.sendfile(f)
            # An explicit timeout overrides the socket's own.
            b.sendall(b"xy")
            self.assertEqual(fastsock.recvall(a, 2, timeout=1), b"xy")
            self.assertEqual(a.gettimeout(), 0.0)


class ErrorsTest(unittest.TestCase):
    def test_timeout_like_socket_module(self):
        with socket_pair() as (a, b):
            a.settimeout(0.2)
            b.sendall(b"12345")
            with self.assertRaises(TimeoutError) as cm:
                fastsock.recvall(a, 10)
            exc = cm.exception
            self.assertEqual((exc.args, exc.errno), (("timed out",), None))
            self.assertEqual((exc.nbytes, exc.partial), (5, b"12345"))
            with self.assertRaises(TimeoutError) as theirs:
                a.recv(1)
            self.assertEqual(str(exc), str(theirs.exception))

    def test_timeout_bounds_the_whole_call(self):
        # A trickle that always arrives within the timeout must not extend it.
        with socket_pair() as (a, b):
            def trickle():
                for _ in range(20):
                    time.sleep(0.05)
                    try:
                        b.send(b"t")
                    except OSError:
                        return

            join = in_thread(trickle)
            started = time.monotonic()
            with self.assertRaises(TimeoutError) as cm:
                fastsock.recvall(a, 100, timeout=0.3)
            elapsed = time.monotonic() - started
            join()
        self.assertLess(elapsed, 0.6)
        self.assertGreater(cm.exception.nbytes, 0)

    def test_reset_carries_nbytes_and_partial(self):
        with tcp_pair() as (client, server):
            server.sendall(b"abc")
            time.sleep(0.1)
            reset(server)
            with self.assertRaises(ConnectionResetError) as cm:
                fastsock.recvall(client, 100)
        self.assertEqual(cm.exception.errno, errno.ECONNRESET)
        self.assertEqual((cm.exception.nbytes, cm.exception.partial), (3, b"abc"))

    def test_incomplete_error(self):
        with socket_pair() as (a, b):
            b.sendall(b"partial")
            b.close()
            with self.assertRaises(fastsock.IncompleteError) as cm:
                fastsock.recvall(a, 100)
        exc = cm.exception
        self.assertIsInstance(exc, EOFError)
        self.assertEqual((exc.partial, exc.expected, exc.nbytes), (b"partial", 100, 7))
        self.assertEqual(str(exc), "7 bytes read on a total of 100 expected bytes")
        again = pickle.loads(pickle.dumps(exc))
        self.assertEqual((again.partial, again.expected, again.nbytes), (b"partial", 100, 7))

    def test_incomplete_error_into(self):
        buf = bytearray(20)
        with socket_pair() as (a, b):
            b.sendall(b"abc")
            b.close()
            with self.assertRaises(fastsock.IncompleteError) as cm:
                fastsock.recvall_into(a, buf, 10, 5)
        exc = cm.exception
        self.assertEqual((exc.partial, exc.expected, exc.nbytes), (None, 10, 3))
        self.assertEqual(buf[5:8], b"abc")

    def test_non_blocking_recv_into_and_send_like_socket_module(self):
        with socket_pair() as (a, b):
            a.setblocking(False)
            mine = outcome(fastsock.recv_into, a, bytearray(4))
            theirs = outcome(a.recv_into, bytearray(4))
            self.assertEqual(mine, theirs)
            self.assertIs(mine[0], BlockingIOError)
            with self.assertRaises(BlockingIOError) as cm:
                fastsock.recv_into(a, bytearray(4))
            self.assertEqual((cm.exception.errno, cm.exception.nbytes), (errno.EAGAIN, 0))
            b.sendall(b"xyz")
            self.assertEqual(fastsock.recv_into(a, bytearray(4)), 3)
            sent = 0
            while True:  # the selectors pattern: send from an offset until full
                try:
                    sent += fastsock.send(a, pattern(1 << 22), sent)
                except BlockingIOError:
                    break
            self.assertGreater(sent, 0)

    def test_recv_into_end_of_stream_is_zero(self):
        with socket_pair() as (a, b):
            b.close()
            self.assertEqual(fastsock.recv_into(a, bytearray(4)), 0)

    def test_broken_pipe(self):
        with socket_pair() as (a, b):
            b.close()
            with self.assertRaises(BrokenPipeError) as cm:
                fastsock.sendall(a, b"x" * 100)
            self.assertEqual(cm.exception.nbytes, 0)


class RecvIntoParityTest(unittest.TestCase):
    """recv_into(sock, buffer, nbytes, flags) is sock.recv_into(buffer, nbytes, flags)."""

    def test_same_results_and_errors(self):
        cases = [(bytearray(8),), (bytearray(8), 4), (bytearray(8), 0), (bytearray(8), 9),
                 (bytearray(8), -1), (bytearray(8), 2, socket.MSG_PEEK), (bytearray(0),),
                 (memoryview(bytearray(8))[2:6],), (bytearray(8), 1.5)]
        for args in cases:
            with self.subTest(args=args):
                with socket_pair() as (a, b):
                    b.sendall(b"0123456789")
                    theirs = outcome(a.recv_into, *args)
                    theirs_rest = a.recv(100)
                with socket_pair() as (a, b):
                    b.sendall(b"0123456789")
                    mine = outcome(fastsock.recv_into, a, *args)
                    mine_rest = a.recv(100)
                self.assertEqual(mine, theirs)
                self.assertEqual(mine_rest, theirs_rest)

    def test_read_only_buffer_type_error_like_socket(self):
        with socket_pair() as (a, _b):
            self.assertIs(outcome(a.recv_into, b"xx")[0], TypeError)
            self.assertIs(outcome(fastsock.recv_into, a, b"xx")[0], TypeError)


class SendfileTest(unittest.TestCase):
    """sendfile(sock, file, offset, count) is sock.sendfile(file, offset, count)."""

    def setUp(self):
        self.data = pattern(300000)
        self.file = tempfile.TemporaryFile()
        self.addCleanup(self.file.close)
        self.file.write(self.data)
        self.file.flush()
        self.file.seek(0)

    def run_both(self, make_file, offset=0, count=None, prepare=None):
        """The same call through socket.sendfile and fastsock.sendfile."""
        results = []
        for send in (lambda s, f: s.sendfile(f, offset, count),
                     lambda s, f: fastsock.sendfile(s, f, offset, count)):
            f = make_file()
            with socket_pair() as (a, b):
                if prepare:
                    prepare(a)
                reader = in_thread(drain, b)
                result = outcome(send, a, f)
                position = f.tell() if not f.closed else None
                a.shutdown(socket.SHUT_WR)
                received = reader()
            results.append((result, position, received))
        return results

    def test_same_as_socket_sendfile(self):
        cases = [(0, None), (1000, None), (1000, 5000), (299999, None), (299990, 100), (300000, None),
                 (400000, None), (0, 0), (0, -5), (0, "x"), (0, 1.5)]
        for offset, count in cases:
            for name, make_file in (("file", lambda: self.file), ("BytesIO", lambda: io.BytesIO(self.data))):
                with self.subTest(file=name, offset=offset, count=count):
                    self.file.seek(0)
                    theirs, mine = self.run_both(make_file, offset, count)
                    self.assertEqual(mine, theirs)

    def test_refusals_match(self):
        with tempfile.TemporaryFile("w+") as text:
            theirs, mine = self.run_both(lambda: text)
            self.assertEqual(mine, theirs)
            self.assertEqual(mine[0], (ValueError, "file should be opened in binary mode"))
        theirs, mine = self.run_both(lambda: self.file, prepare=lambda s: s.setblocking(False))
        self.assertEqual(mine, theirs)
        dgram_a, dgram_b = socket.socketpair(type=socket.SOCK_DGRAM)
        with dgram_a, dgram_b:
            self.assertEqual(outcome(fastsock.sendfile, dgram_a, self.file),
                             outcome(dgram_a.sendfile, self.file))

    def test_position_after_failure(self):
        with tcp_pair() as (client, server):
            server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            big = tempfile.TemporaryFile()
            self.addCleanup(big.close)
            big.write(pattern(64 << 20))
            big.flush()
            client.settimeout(0.3)
            with self.assertRaises(TimeoutError) as cm:
                fastsock.sendfile(client, big, 100)
            sent = cm.exception.nbytes
            self.assertGreater(sent, 0)
            self.assertEqual(big.tell(), 100 + sent)

    def test_bytesio_fallback_timeout_and_position(self):
        with socket_pair() as (a, b):
            a.settimeout(0.3)
            source = io.BytesIO(pattern(64 << 20))
            with self.assertRaises(TimeoutError) as cm:
                fastsock.sendfile(a, source, 10)
            sent = cm.exception.nbytes
            self.assertGreater(sent, 0)
            self.assertEqual(source.tell(), 10 + sent)
            a.shutdown(socket.SHUT_WR)
            b.settimeout(10)
            self.assertEqual(drain(b), sent)

    def test_negative_offset(self):
        with socket_pair() as (a, _b):
            with self.assertRaises(ValueError):
                fastsock.sendfile(a, self.file, -1)
            with self.assertRaises(ValueError):
                fastsock.sendfile(a, io.BytesIO(b"abc"), -1)

    def test_int_fd_and_pipe(self):
        with socket_pair() as (a, b):
            self.assertEqual(fastsock.sendfile(a, self.file.fileno(), 5, 10), 10)
            self.assertEqual(os.lseek(self.file.fileno(), 0, os.SEEK_CUR), 15)
            self.assertEqual(b.recv(10), self.data[5:15])
            r, w = os.pipe()
            os.write(w, b"through a pipe")
            os.close(w)
            with open(r, "rb") as pipe:
                self.assertEqual(fastsock.sendfile(a, pipe), 14)
            self.assertEqual(b.recv(14), b"through a pipe")


class DocumentationTest(unittest.TestCase):
    def test_help_shows_real_documentation(self):
        text = pydoc.render_doc(fastsock.recvall, renderer=pydoc.plaintext)
        self.assertIn("recvall(sock, n, *, timeout=<sock.gettimeout()>)", text)
        self.assertIn("Receive exactly n bytes", text)
        self.assertIn("IncompleteError", text)

    def test_every_public_name_documented(self):
        for name in fastsock.__all__:
            obj = getattr(fastsock, name)
            with self.subTest(name=name):
                self.assertGreater(len(inspect.getdoc(obj) or ""), 40)

    def test_signatures(self):
        self.assertEqual(str(inspect.signature(fastsock.recv_into)),
                         "(sock, buffer, nbytes=0, flags=0, *, offset=0)")
        self.assertEqual(str(inspect.signature(fastsock.sendfile)), "(sock, file, offset=0, count=None)")
        self.assertEqual(str(inspect.signature(fastsock.recvall_into)),
                         "(sock, buffer, nbytes=None, offset=0, *, timeout=<sock.gettimeout()>)")

    def test_stubs_ship_with_the_module(self):
        package = os.path.dirname(fastsock.__file__)
        self.assertTrue(os.path.exists(os.path.join(package, "py.typed")))
        with open(os.path.join(package, "__init__.pyi"), encoding="utf-8") as f:
            stubs = f.read()
        for name in fastsock.__all__:
            self.assertRegex(stubs, rf"(def|class) {name}\b")


if __name__ == "__main__":
    unittest.main()
