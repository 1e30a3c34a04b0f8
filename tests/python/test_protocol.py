"""The protocol calls (issue 17): sendallv, recvfile, Reader, find, split and
split_offsets, beyond what the conformance cases check: buffer kinds, file
position rules, the Reader's edge cases, signals and threads."""

import array
import errno
import inspect
import io
import mmap
import os
import signal
import socket
import tempfile
import threading
import time
import unittest

import fastsock
from _support import drain, in_thread, pattern, reset, send_later, socket_pair, tcp_pair


class Stop(Exception):
    pass


def received(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


class SendallvTest(unittest.TestCase):
    def test_every_buffer_kind_in_one_stream(self):
        data = pattern(300000)
        with tempfile.TemporaryFile() as f:
            f.write(data[100:4196])
            f.flush()
            with mmap.mmap(f.fileno(), 4096) as mm:
                pieces = [
                    data[:10],                               # bytes
                    bytearray(data[10:50]),                  # bytearray
                    memoryview(data)[50:100],                # a view of a slice
                    mm,                                      # mmap
                    array.array("i", data[4196:4196 + 400]),  # 4-byte items: counted in bytes
                    b"",                                     # empty pieces go nowhere
                    memoryview(data)[4596:],
                ]
                with socket_pair() as (a, b):
                    got = in_thread(received, b, len(data))
                    self.assertEqual(fastsock.sendallv(a, pieces, timeout=10), len(data))
                    self.assertEqual(got(), data)

    def test_any_iterable_and_many_pieces(self):
        data = pattern(3 * 5000)
        with socket_pair() as (a, b):
            got = in_thread(received, b, len(data))
            # 5,000 pieces: several sendmsg batches, from a generator
            sent = fastsock.sendallv(a, (data[i:i + 3] for i in range(0, len(data), 3)))
            self.assertEqual(sent, len(data))
            self.assertEqual(got(), data)
            self.assertEqual(fastsock.sendallv(a, []), 0)
            self.assertEqual(fastsock.sendallv(a.fileno(), (b"x",)), 1)  # an int fd
            self.assertEqual(b.recv(1), b"x")

    def test_bad_items_refused_before_any_byte(self):
        with socket_pair() as (a, b):
            with self.assertRaisesRegex(TypeError, "item 1 is not a contiguous bytes-like object but str"):
                fastsock.sendallv(a, [b"abc", "text"])
            with self.assertRaisesRegex(TypeError, "item 0"):
                fastsock.sendallv(a, [memoryview(b"abcdef")[::2]])  # not contiguous
            with self.assertRaisesRegex(TypeError, "iterable of bytes-like objects"):
                fastsock.sendallv(a, 42)
            with self.assertRaisesRegex(ValueError, "timeout=0"):
                fastsock.sendallv(a, [b"x"], timeout=0)
            with self.assertRaisesRegex(TypeError, r"takes 2 positional arguments but 3 were given"):
                fastsock.sendallv(a, [b"x"], 5)
            a.sendall(b"first")
            self.assertEqual(b.recv(5), b"first")

    def test_buffers_held_for_the_call_and_let_go_after(self):
        grown = bytearray(b"abc")
        with socket_pair() as (a, b):
            fastsock.sendallv(a, [grown])
            grown.extend(b"def")  # no export left behind
            self.assertEqual(b.recv(3), b"abc")

    def test_partial_progress_on_a_gone_peer(self):
        with tcp_pair() as (a, b):
            b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            pieces = [pattern(1 << 20, k) for k in range(32)]

            def read_then_reset():
                got = received(b, 100000)
                reset(b)
                return len(got)

            reader = in_thread(read_then_reset)
            with self.assertRaises((ConnectionResetError, BrokenPipeError)) as cm:
                fastsock.sendallv(a, pieces, timeout=10)
            self.assertEqual(reader(), 100000)
            self.assertGreaterEqual(cm.exception.nbytes, 100000)
            self.assertLess(cm.exception.nbytes, 32 << 20)

    def test_timeout_reports_bytes_sent(self):
        with socket_pair() as (a, _b):
            with self.assertRaises(TimeoutError) as cm:
                fastsock.sendallv(a, [pattern(4 << 20), pattern(4 << 20, 2)], timeout=0.2)
            self.assertGreater(cm.exception.nbytes, 0)


class RecvfileTest(unittest.TestCase):
    def file(self, mode="w+b", content=b"", **kw):
        fd, path = tempfile.mkstemp()
        os.write(fd, content)
        os.close(fd)
        f = open(path, mode, **kw)
        os.unlink(path)
        self.addCleanup(f.close)
        return f

    def contents(self, f):
        return os.pread(f.fileno(), os.fstat(f.fileno()).st_size, 0)

    def test_offset_none_is_the_position_after_a_buffered_write(self):
        data = pattern(200000)
        f = self.file()
        f.write(b"head")  # still in the BufferedRandom's buffer: recvfile flushes it
        with socket_pair() as (a, b):
            b.sendall(data)
            self.assertEqual(fastsock.recvfile(a, f, len(data), timeout=5), len(data))
        self.assertEqual(f.tell(), 4 + len(data))
        self.assertEqual(self.contents(f), b"head" + data)
        f.write(b"tail")  # the file object goes on from the new position
        f.flush()
        self.assertEqual(self.contents(f), b"head" + data + b"tail")

    def test_explicit_offset_sets_the_position_after(self):
        f = self.file("r+b", content=b"\xa5" * 100)
        with socket_pair() as (a, b):
            b.sendall(b"0123456789")
            self.assertEqual(fastsock.recvfile(a, f, 10, 95, timeout=5), 10)
        self.assertEqual(f.tell(), 105)
        self.assertEqual(self.contents(f), b"\xa5" * 95 + b"0123456789")

    def test_fresh_bytes_replace_the_file_objects_read_ahead(self):
        f = self.file("r+b", content=b"old!" * 1000)
        self.assertEqual(f.read(4), b"old!")  # the BufferedRandom holds 4 KiB read ahead
        with socket_pair() as (a, b):
            b.sendall(b"NEW!" * 10)
            fastsock.recvfile(a, f, 40, 0, timeout=5)
        self.assertEqual(f.tell(), 40)
        f.seek(0)
        self.assertEqual(f.read(44), b"NEW!" * 10 + b"old!")

    def test_int_fd_position(self):
        f = self.file()
        fd = f.fileno()
        os.write(fd, b"abc")
        with socket_pair() as (a, b):
            b.sendall(b"xyz")
            self.assertEqual(fastsock.recvfile(a, fd, 3, timeout=5), 3)
        self.assertEqual(os.lseek(fd, 0, os.SEEK_CUR), 6)
        self.assertEqual(self.contents(f), b"abcxyz")

    def test_append_and_pipe_are_written_where_they_stand(self):
        f = self.file("a+b", content=b"12")
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        with socket_pair() as (a, b):
            b.sendall(b"345" + b"pipe")
            self.assertEqual(fastsock.recvfile(a, f, 3, timeout=5), 3)
            with self.assertRaisesRegex(ValueError, "appending"):
                fastsock.recvfile(a, f, 1, 1, timeout=5)
            self.assertEqual(fastsock.recvfile(a, w, 4, timeout=5), 4)
            self.assertEqual(os.read(r, 10), b"pipe")
        self.assertEqual(f.tell(), 5)
        self.assertEqual(self.contents(f), b"12345")

    def test_read_only_file_refused_before_any_byte(self):
        f = self.file("rb", content=b"x")
        with socket_pair() as (a, b):
            b.sendall(b"first")
            with self.assertRaises(io.UnsupportedOperation) as cm:
                fastsock.recvfile(a, f, 5, timeout=5)
            self.assertEqual(cm.exception.errno, errno.EBADF)
            self.assertIsInstance(cm.exception, OSError)
            self.assertEqual(a.recv(5), b"first")

    def test_bad_arguments(self):
        f = self.file()
        with socket_pair() as (a, b):
            with self.assertRaisesRegex(ValueError, "'count' must not be negative"):
                fastsock.recvfile(a, f, -1)
            with self.assertRaises(TypeError):
                fastsock.recvfile(a, f, 1.5)
            with self.assertRaisesRegex(ValueError, "'offset' must not be negative"):
                fastsock.recvfile(a, f, 1, -1)
            with self.assertRaisesRegex(ValueError, "binary mode"):
                fastsock.recvfile(a, self.file("w+"), 1)
            with self.assertRaisesRegex(ValueError, "timeout=0"):
                fastsock.recvfile(a, f, 1, timeout=0)
            self.assertEqual(fastsock.recvfile(a, f, 0), 0)
            b.sendall(b"first")
            self.assertEqual(a.recv(5), b"first")

    def test_end_of_stream_keeps_what_was_written(self):
        f = self.file()
        with socket_pair() as (a, b):
            b.sendall(b"partial")
            b.shutdown(socket.SHUT_WR)
            with self.assertRaises(fastsock.IncompleteError) as cm:
                fastsock.recvfile(a, f, 100, timeout=5)
        e = cm.exception
        self.assertEqual((e.nbytes, e.expected, e.partial), (7, 100, None))
        self.assertEqual(f.tell(), 7)
        self.assertEqual(self.contents(f), b"partial")

    def test_large_through_splice_over_tcp(self):
        data = pattern(8 << 20)
        f = self.file()
        with tcp_pair() as (a, b):
            sender = send_later(b, data, 0)
            self.assertEqual(fastsock.recvfile(a, f, len(data), timeout=10), len(data))
            sender()
        self.assertEqual(self.contents(f), data)


class ReaderTest(unittest.TestCase):
    def test_lines_then_body_through_the_look_ahead(self):
        with socket_pair() as (a, b):
            r = fastsock.Reader(a)
            b.sendall(b"$5\r\nhello\r\n+OK\r\n")
            self.assertEqual(r.readuntil(), b"$5\r\n")
            self.assertEqual(r.buffered, 12)  # the rest came with it
            self.assertEqual(r.recvall(7), b"hello\r\n")
            self.assertEqual(r.readuntil(b"\r\n", 5), b"+OK\r\n")  # exactly max
            self.assertEqual(r.buffered, 0)

    def test_body_beyond_the_look_ahead_and_into_a_buffer(self):
        data = pattern(3 << 20)
        with socket_pair() as (a, b):
            r = fastsock.Reader(a)
            sender = send_later(b, b"HEAD\n" + data + data, 0)
            self.assertEqual(r.readuntil(b"\n"), b"HEAD\n")
            self.assertEqual(r.recvall(len(data), timeout=10), data)
            buf = bytearray(b"\xa5") * (len(data) + 20)
            self.assertEqual(r.recvall_into(buf, len(data), 10, timeout=10), len(data))
            self.assertEqual(buf[10:-10], data)
            self.assertEqual(buf[:10] + buf[-10:], b"\xa5" * 20)
            sender()

    def test_delimiter_split_across_receives(self):
        with socket_pair() as (a, b):
            r = fastsock.Reader(a)
            b.sendall(b"abc\r")
            sender = send_later(b, b"\nrest", 0.1)
            self.assertEqual(r.readuntil(bytearray(b"\r\n"), timeout=5), b"abc\r\n")
            sender()
            self.assertEqual(r.recvall(4, timeout=5), b"rest")

    def test_long_line_grows_the_look_ahead(self):
        line = b"x" * 100000 + b"--END--"
        with socket_pair() as (a, b):
            r = fastsock.Reader(a)
            sender = send_later(b, line + b"after", 0)
            self.assertEqual(r.readuntil(memoryview(b"--END--"), 1 << 20, timeout=5), line)
            sender()
            self.assertEqual(r.recvall(5, timeout=5), b"after")

    def test_too_long_consumes_nothing(self):
        with socket_pair() as (a, b):
            r = fastsock.Reader(a)
            b.sendall(b"0123456789\n")
            with self.assertRaises(fastsock.TooLongError) as cm:
                r.readuntil(b"\n", 10, timeout=5)
            self.assertIsInstance(cm.exception, ValueError)
            self.assertEqual(cm.exception.nbytes, 0)
            self.assertEqual(r.buffered, 11)
            self.assertEqual(r.readuntil(b"\n", 11, timeout=5), b"0123456789\n")

    def test_timeout_hands_nothing_out_and_a_retry_goes_on(self):
        with socket_pair() as (a, b):
            r = fastsock.Reader(a)
            b.sendall(b"par")
            with self.assertRaises(TimeoutError) as cm:
                r.readuntil(timeout=0.1)
            self.assertEqual(cm.exception.nbytes, 0)
            self.assertEqual(r.buffered, 3)
            with self.assertRaises(BlockingIOError):
                r.readuntil(timeout=0)  # never waits: a line not there yet
            b.sendall(b"tial\r\n")
            self.assertEqual(r.readuntil(timeout=5), b"partial\r\n")

    def test_socket_timeout_is_the_default(self):
        with socket_pair() as (a, _b):
            a.settimeout(0.1)
            r = fastsock.Reader(a)
            t0 = time.monotonic()
            with self.assertRaises(TimeoutError):
                r.readuntil()
            self.assertLess(time.monotonic() - t0, 2)
            a.setblocking(False)
            with self.assertRaises(BlockingIOError):
                r.readuntil()
            with self.assertRaisesRegex(ValueError, "non-blocking"):
                r.recvall(1)

    def test_end_of_stream_hands_out_the_partial_line(self):
        with socket_pair() as (a, b):
            r = fastsock.Reader(a)
            b.sendall(b"line\nhalf")
            b.shutdown(socket.SHUT_WR)
            self.assertEqual(r.readuntil(b"\n", timeout=5), b"line\n")
            with self.assertRaises(fastsock.IncompleteError) as cm:
                r.readuntil(b"\n", timeout=5)
            e = cm.exception
            self.assertEqual((e.partial, e.expected, e.nbytes), (b"half", None, 4))
            with self.assertRaises(fastsock.IncompleteError) as cm:
                r.recvall(3, timeout=5)
            self.assertEqual(cm.exception.partial, b"")

    def test_recvall_end_of_stream_after_buffered_bytes(self):
        with socket_pair() as (a, b):
            r = fastsock.Reader(a)
            b.sendall(b"h\nbody")
            b.shutdown(socket.SHUT_WR)
            r.readuntil(b"\n", timeout=5)
            with self.assertRaises(fastsock.IncompleteError) as cm:
                r.recvall(10, timeout=5)
            self.assertEqual((cm.exception.partial, cm.exception.nbytes), (b"body", 4))

    def test_bad_arguments_read_nothing(self):
        with socket_pair() as (a, b):
            r = fastsock.Reader(a)
            b.sendall(b"first\n")
            with self.assertRaisesRegex(ValueError, "'delim' must not be empty"):
                r.readuntil(b"")
            with self.assertRaisesRegex(ValueError, "shorter than the delimiter"):
                r.readuntil(b"\r\n", 1)
            with self.assertRaisesRegex(ValueError, "'max' must not be negative"):
                r.readuntil(b"\n", -1)
            with self.assertRaises(TypeError):
                r.readuntil("\n")
            with self.assertRaisesRegex(ValueError, "'n' must not be negative"):
                r.recvall(-1)
            with self.assertRaisesRegex(ValueError, "offset \\+ nbytes is greater"):
                r.recvall_into(bytearray(4), 5)
            self.assertEqual(r.buffered, 0)
            self.assertEqual(a.recv(6), b"first\n")
        with self.assertRaises(TypeError):
            fastsock.Reader("not a socket")
        with self.assertRaises(TypeError):
            fastsock.Reader()

    def test_closed_socket(self):
        a, b = socket.socketpair()
        r = fastsock.Reader(a)
        a.close()
        b.close()
        with self.assertRaises(OSError) as cm:
            r.readuntil()
        self.assertEqual(cm.exception.errno, errno.EBADF)

    def test_second_call_from_another_thread_is_refused(self):
        with socket_pair() as (a, b):
            r = fastsock.Reader(a)
            waiting = in_thread(lambda: r.readuntil(b"\n", 100, timeout=10))
            time.sleep(0.2)  # the thread waits in readuntil, without the GIL
            with self.assertRaisesRegex(RuntimeError, "another thread"):
                r.recvall(1)
            b.sendall(b"done\n")
            self.assertEqual(waiting(), b"done\n")

    def test_signal_handler_runs_and_a_raising_one_stops_the_wait(self):
        main = threading.get_ident()
        self.addCleanup(signal.signal, signal.SIGUSR1, signal.getsignal(signal.SIGUSR1))
        seen = []
        signal.signal(signal.SIGUSR1, lambda *_: seen.append(1))
        with socket_pair() as (a, b):
            r = fastsock.Reader(a)

            def kill_then_send():
                time.sleep(0.2)
                signal.pthread_kill(main, signal.SIGUSR1)
                time.sleep(0.2)
                b.sendall(b"ok\n")

            feeder = in_thread(kill_then_send)
            self.assertEqual(r.readuntil(b"\n", timeout=10), b"ok\n")
            feeder()
            self.assertEqual(seen, [1])

            def stop(*_):
                raise Stop()

            signal.signal(signal.SIGUSR1, stop)
            b.sendall(b"par")
            killer = in_thread(lambda: (time.sleep(0.2), signal.pthread_kill(main, signal.SIGUSR1)))
            with self.assertRaises(Stop) as cm:
                r.readuntil(b"\n", timeout=10)
            killer()
            self.assertEqual(cm.exception.nbytes, 0)
            b.sendall(b"t\n")
            self.assertEqual(r.readuntil(b"\n", timeout=5), b"part\n")


class FindSplitTest(unittest.TestCase):
    def test_find_over_any_buffer_in_bytes(self):
        data = b"abc\r\ndef\r\n"
        self.assertEqual(fastsock.find(data, b"\r\n"), 3)
        self.assertEqual(fastsock.find(bytearray(data), b"\r\n", 4), 8)
        self.assertEqual(fastsock.find(memoryview(data)[2:], b"d"), 3)
        self.assertEqual(fastsock.find(array.array("i", [0, 1, 2]), b"\x02"), 8)  # a byte offset
        self.assertEqual(fastsock.find(data, b"zz"), -1)
        self.assertEqual(fastsock.find(data, b"a", len(data)), -1)
        self.assertEqual(fastsock.find(data, b"a", 10 ** 30), -1)
        with self.assertRaisesRegex(ValueError, "'needle' must not be empty"):
            fastsock.find(data, b"")
        with self.assertRaisesRegex(ValueError, "'start' must not be negative"):
            fastsock.find(data, b"a", -1)
        with self.assertRaises(TypeError):
            fastsock.find("text", b"t")

    def test_find_in_a_large_mmap(self):
        with mmap.mmap(-1, 8 << 20) as mm:
            mm[(8 << 20) - 3:] = b"END"
            self.assertEqual(fastsock.find(mm, b"END"), (8 << 20) - 3)
            self.assertEqual(fastsock.find(mm, b"END", 1), (8 << 20) - 3)

    def test_split_matches_bytes_split(self):
        samples = [b"", b"\n", b"a\nb", b"\n\na\n", b"aaaa", b"abcabcab", pattern(100000)]
        for data in samples:
            for sep in (b"\n", b"aa", b"ab", b"\x00\x01", b"abc"):
                fields = fastsock.split(data, sep)
                self.assertEqual([bytes(f) for f in fields], data.split(sep), (data[:20], sep))
                ends = fastsock.split_offsets(data, sep)
                self.assertEqual(ends.typecode, "Q")
                starts = [0] + [e + len(sep) for e in ends[:-1]]
                self.assertEqual([data[s:e] for s, e in zip(starts, ends)], data.split(sep))

    def test_split_views_share_the_buffer(self):
        buf = bytearray(b"ab,cd,ef")
        fields = fastsock.split(buf, b",")
        self.assertTrue(all(f.obj is buf and f.readonly is False for f in fields))
        buf[3] = ord("X")
        self.assertEqual(bytes(fields[1]), b"Xd")
        with self.assertRaises(BufferError):  # the views hold it
            buf.extend(b"!")
        for f in fields:
            f.release()
        buf.extend(b"!")

    def test_split_of_wider_items_is_in_bytes(self):
        fields = fastsock.split(array.array("H", [0x4141, 0x0A0A, 0x4242]), b"\n\n")
        self.assertEqual([(f.format, f.tobytes()) for f in fields], [("B", b"AA"), ("B", b"BB")])

    def test_split_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "'sep' must not be empty"):
            fastsock.split(b"ab", b"")
        with self.assertRaisesRegex(ValueError, "'sep' must not be empty"):
            fastsock.split_offsets(b"ab", b"")
        with self.assertRaises(TypeError):
            fastsock.split(memoryview(b"abcd")[::2], b"b")
        with self.assertRaises(TypeError):
            fastsock.split(b"ab", None)
        # Each names itself in its argument errors.
        with self.assertRaisesRegex(TypeError, r"^split\(\) missing 1 required positional argument: 'sep'"):
            fastsock.split(b"ab")
        with self.assertRaisesRegex(TypeError, r"^split_offsets\(\) missing 1 required positional argument: 'sep'"):
            fastsock.split_offsets(b"ab")
        with self.assertRaisesRegex(TypeError, r"^split_offsets\(\) got an unexpected keyword argument 'x'"):
            fastsock.split_offsets(b"ab", b"a", x=1)


class SignatureTest(unittest.TestCase):
    def test_signatures_for_help_and_inspect(self):
        sig = lambda f: str(inspect.signature(f))  # noqa: E731
        self.assertEqual(sig(fastsock.sendallv), "(sock, buffers, *, timeout=Ellipsis)")
        self.assertEqual(sig(fastsock.recvfile), "(sock, file, count, offset=None, *, timeout=<sock.gettimeout()>)")
        self.assertEqual(sig(fastsock.Reader), "(sock)")
        self.assertEqual(sig(fastsock.Reader.readuntil),
                         "(self, /, delim=b'\\r\\n', max=65536, *, timeout=Ellipsis)")
        self.assertEqual(sig(fastsock.Reader.recvall), "(self, /, n, *, timeout=Ellipsis)")
        self.assertEqual(sig(fastsock.Reader.recvall_into),
                         "(self, /, buffer, nbytes=None, offset=0, *, timeout=Ellipsis)")
        self.assertEqual(sig(fastsock.find), "(buf, needle, start=0)")
        self.assertEqual(sig(fastsock.split), "(buf, sep)")
        self.assertEqual(sig(fastsock.split_offsets), "(buf, sep)")

    def test_explicit_ellipsis_is_the_sockets_own_timeout(self):
        with socket_pair() as (a, _b):
            a.settimeout(0.1)
            with self.assertRaises(TimeoutError):
                fastsock.Reader(a).readuntil(timeout=...)


if __name__ == "__main__":
    unittest.main()
