"""Every kind of buffer, written in place and never copied on the way in."""

import array
import mmap
import socket
import time
import unittest

import fastsock
from _support import drain, in_thread, pattern, socket_pair


class IntoTest(unittest.TestCase):
    """recvall_into and recv_into write where they are told, in bytes."""

    def receive(self, target, nbytes=None, offset=0, data=None, call="recvall_into"):
        with socket_pair() as (a, b):
            data = pattern(nbytes if nbytes is not None else len(memoryview(target).cast("B")) - offset) \
                if data is None else data
            sender = in_thread(b.sendall, data)
            try:
                if call == "recvall_into":
                    got = fastsock.recvall_into(a, target, nbytes, offset, timeout=5)
                else:
                    got = fastsock.recv_into(a, target, nbytes or 0, offset=offset)
            finally:
                a.close()  # a sender still blocked gets EPIPE
                try:
                    sender()
                except OSError:
                    pass
        return got, data

    def test_bytearray(self):
        buf = bytearray(b"\xa5") * 1000
        got, data = self.receive(buf, 600, 100)
        self.assertEqual(got, 600)
        self.assertEqual(buf[100:700], data)
        self.assertEqual(buf[:100] + buf[700:], b"\xa5" * 400)

    def test_memoryview_slice_writes_through(self):
        base = bytearray(b"\xa5") * 1000
        view = memoryview(base)[200:500]
        got, data = self.receive(view, 100, 50)
        self.assertEqual(got, 100)
        self.assertEqual(base[250:350], data)
        self.assertEqual(base[:250] + base[350:], b"\xa5" * 900)

    def test_memoryview_of_memoryview_and_whole_buffer_default(self):
        base = bytearray(64)
        view = memoryview(memoryview(base)[8:40])[4:]
        got, data = self.receive(view)  # nbytes None: the rest of the buffer
        self.assertEqual(got, 28)
        self.assertEqual(base[12:40], data)

    def test_array_sizes_are_bytes(self):
        arr = array.array("i", [0] * 100)
        got, data = self.receive(arr, 40, 8)
        self.assertEqual(got, 40)
        self.assertEqual(arr.tobytes()[8:48], data)
        self.assertEqual(arr.tobytes()[:8] + arr.tobytes()[48:], bytes(360))
        with self.assertRaises(ValueError):
            self.receive(array.array("d", [0.0] * 4), 33)  # 32 bytes in 4 doubles

    def test_mmap(self):
        with mmap.mmap(-1, 1 << 20) as m:
            got, data = self.receive(m, 500000, 4096)
            self.assertEqual(got, 500000)
            self.assertEqual(m[4096:504096], data)
            self.assertEqual(m[:4096], bytes(4096))

    def test_recv_into_every_writable_type(self):
        with mmap.mmap(-1, 4096) as m:
            targets = [bytearray(100), memoryview(bytearray(300))[100:200],
                       array.array("h", [0] * 50), m]
            for target in targets:
                with self.subTest(type=type(target).__name__):
                    got, data = self.receive(target, 64, 16, data=pattern(64), call="recv_into")
                    self.assertEqual(got, 64)
                    self.assertEqual(bytes(memoryview(target).cast("B")[16:80]), data)

    def test_multidimensional_contiguous_view(self):
        base = bytearray(16)
        view = memoryview(base).cast("B", (4, 4))
        got, data = self.receive(view, 16)
        self.assertEqual(got, 16)
        self.assertEqual(base, data)

    def test_read_only_buffers_are_type_errors(self):
        ro_map = mmap.mmap(-1, 64)
        readonly = [b"x" * 64, memoryview(b"x" * 64), memoryview(bytearray(64)).toreadonly(), ro_map]
        ro_map.close()
        readonly[-1] = memoryview(bytes(64))
        with socket_pair() as (a, b):
            b.sendall(b"q" * 64)
            for target in readonly:
                with self.subTest(type=type(target).__name__):
                    with self.assertRaises(TypeError):
                        fastsock.recvall_into(a, target, 10)
                    with self.assertRaises(TypeError):
                        fastsock.recv_into(a, target, 10)
            self.assertEqual(a.recv(64), b"q" * 64, "a refused call consumed bytes")

    def test_non_contiguous_and_non_buffers_are_type_errors(self):
        with socket_pair() as (a, _b):
            for target in (memoryview(bytearray(64))[::2], "text", 42, None, [0] * 8):
                with self.subTest(target=repr(target)[:30]):
                    with self.assertRaises(TypeError):
                        fastsock.recvall_into(a, target, 1)
                    with self.assertRaises(TypeError):
                        fastsock.recv_into(a, target, 1)

    def test_buffer_is_the_callers_not_a_copy(self):
        # While a transfer holds the buffer it can't be resized under it:
        # the proof that the core writes into the caller's memory.
        buf = bytearray(100)
        with socket_pair() as (a, b):
            receiver = in_thread(fastsock.recvall_into, a, buf, 100, 0)
            time.sleep(0.2)
            with self.assertRaises(BufferError):
                buf.extend(b"more")
            b.sendall(pattern(100))
            self.assertEqual(receiver(), 100)
        self.assertEqual(buf, pattern(100))
        buf.extend(b"ok now")  # released afterwards


class SendTest(unittest.TestCase):
    def send_all(self, data, offset=0, count=None, call=fastsock.sendall):
        with socket_pair() as (a, b):
            sent = call(a, data, offset, count)
            a.shutdown(socket.SHUT_WR)
            received = b""
            while True:
                chunk = b.recv(1 << 16)
                if not chunk:
                    break
                received += chunk
        return sent, received

    def test_every_readable_type(self):
        raw = pattern(4000)
        with mmap.mmap(-1, 4000) as m:
            m[:] = raw
            sources = [raw, bytearray(raw), memoryview(raw), memoryview(bytearray(raw)).toreadonly(),
                       array.array("b", raw), m, memoryview(raw).cast("B", (40, 100))]
            for source in sources:
                with self.subTest(type=type(source).__name__):
                    sent, received = self.send_all(source, 1000, 2000)
                    self.assertEqual(sent, 2000)
                    self.assertEqual(received, raw[1000:3000])
                    sent, received = self.send_all(source, 10, 100, call=fastsock.send)
                    self.assertEqual(sent, 100)
                    self.assertEqual(received, raw[10:110])

    def test_memoryview_slice_offsets_are_relative(self):
        raw = pattern(1000)
        sent, received = self.send_all(memoryview(raw)[100:600], 50)
        self.assertEqual(sent, 450)
        self.assertEqual(received, raw[150:600])

    def test_array_offsets_are_bytes(self):
        arr = array.array("i", range(100))
        sent, received = self.send_all(arr, 4, 8)
        self.assertEqual(sent, 8)
        self.assertEqual(received, arr.tobytes()[4:12])

    def test_non_buffers_are_type_errors(self):
        with socket_pair() as (a, b):
            for data in ("text", 42, None, [1, 2]):
                with self.subTest(data=repr(data)):
                    with self.assertRaisesRegex(TypeError, "bytes-like object is required"):
                        fastsock.send(a, data)
                    with self.assertRaises(TypeError):
                        fastsock.sendall(a, data)
            a.shutdown(socket.SHUT_WR)
            self.assertEqual(drain(b), 0)

    def test_non_contiguous_is_a_type_error(self):
        with socket_pair() as (a, _b):
            with self.assertRaises(TypeError):
                fastsock.sendall(a, memoryview(b"abcdef")[::2])


if __name__ == "__main__":
    unittest.main()
