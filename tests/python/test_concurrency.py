"""The GIL, signals and threads: what the transfers promise the interpreter."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import unittest

import fastsock
from _support import child_env, drain, in_thread, pattern, send_later, socket_pair, tcp_pair


class Stop(Exception):
    pass


class GilTest(unittest.TestCase):
    def test_other_thread_progresses_during_slow_recvall(self):
        data = pattern(1 << 20)
        stop = threading.Event()
        counter = [0]

        def spin():
            while not stop.is_set():
                counter[0] += 1

        with socket_pair() as (a, b):
            spinner = threading.Thread(target=spin)
            spinner.start()
            try:
                feeder = send_later(b, data, 0.5)
                time.sleep(0.05)
                before = counter[0]
                # Were the GIL held while waiting, neither the spinner nor the
                # feeder could run and this would time out.
                got = fastsock.recvall(a, len(data), timeout=5)
                during = counter[0] - before
            finally:
                stop.set()
                spinner.join()
            feeder()
        self.assertEqual(got, data)
        self.assertGreater(during, 10000, "the spinning thread barely ran during recvall")

    def test_gil_released_in_every_blocking_call(self):
        # Each call waits for a peer that only a Python thread can serve.
        with socket_pair() as (a, b):
            feeder = send_later(b, b"x" * 10, 0.2)
            self.assertEqual(fastsock.recvall_into(a, bytearray(10), timeout=5), 10)
            feeder()
            feeder = send_later(b, b"y", 0.2)
            self.assertEqual(fastsock.recv_into(a, bytearray(4)), 1)
            feeder()
        with socket_pair() as (a, b):
            b.settimeout(5)
            big = pattern(8 << 20)
            reader = in_thread(lambda: (time.sleep(0.2), drain(b))[1])
            self.assertEqual(fastsock.sendall(a, big, timeout=5), len(big))
            a.shutdown(socket.SHUT_WR)
            self.assertEqual(reader(), len(big))


class SignalTest(unittest.TestCase):
    def setUp(self):
        self.main = threading.get_ident()
        self.addCleanup(signal.signal, signal.SIGUSR1, signal.getsignal(signal.SIGUSR1))

    def kill_main_later(self, delay, before=None):
        def kill():
            time.sleep(delay)
            if before is not None:
                before()
            signal.pthread_kill(self.main, signal.SIGUSR1)

        return in_thread(kill)

    def test_handler_runs_during_recvall_and_transfer_resumes(self):
        first, second = pattern(100000, 1), pattern(200000, 2)
        second_sent = threading.Event()
        seen = []
        signal.signal(signal.SIGUSR1, lambda *_: seen.append(second_sent.is_set()))
        with socket_pair() as (a, b):
            def feed():
                b.sendall(first)
                time.sleep(0.2)
                signal.pthread_kill(self.main, signal.SIGUSR1)
                time.sleep(0.3)
                second_sent.set()
                b.sendall(second)

            feeder = in_thread(feed)
            got = fastsock.recvall(a, len(first) + len(second), timeout=10)
            feeder()
        self.assertEqual(got, first + second)
        self.assertEqual(seen, [False], "the handler did not run while the transfer waited")

    def test_raising_handler_stops_recvall_with_partial(self):
        first = pattern(77777)

        def handler(*_):
            raise Stop()

        signal.signal(signal.SIGUSR1, handler)
        with socket_pair() as (a, b):
            b.sendall(first)
            killer = self.kill_main_later(0.2)
            with self.assertRaises(Stop) as cm:
                fastsock.recvall(a, 1 << 20, timeout=10)
            killer()
            # Nothing was lost: what arrived is on the exception, the rest
            # is still in the socket.
            self.assertEqual(cm.exception.nbytes, len(first))
            self.assertEqual(cm.exception.partial, first)
            b.sendall(b"after")
            self.assertEqual(a.recv(5), b"after")

    def test_raising_handler_stops_recvall_into(self):
        signal.signal(signal.SIGUSR1, lambda *_: (_ for _ in ()).throw(Stop()))
        buf = bytearray(b"\xa5") * 1000
        with socket_pair() as (a, b):
            b.sendall(b"z" * 300)
            killer = self.kill_main_later(0.2)
            with self.assertRaises(Stop) as cm:
                fastsock.recvall_into(a, buf, 900, 50, timeout=10)
            killer()
        self.assertEqual(cm.exception.nbytes, 300)
        self.assertEqual(buf[50:350], b"z" * 300)
        self.assertEqual(buf[:50] + buf[350:], b"\xa5" * 700)

    def test_raising_handler_stops_recv_into_and_send(self):
        signal.signal(signal.SIGUSR1, lambda *_: (_ for _ in ()).throw(Stop()))
        with socket_pair() as (a, b):
            killer = self.kill_main_later(0.2)
            with self.assertRaises(Stop) as cm:
                fastsock.recv_into(a, bytearray(10))
            killer()
            self.assertEqual(cm.exception.nbytes, 0)
            while True:  # fill the socket buffer so the next send waits
                try:
                    a.send(b"f" * 65536, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
            killer = self.kill_main_later(0.2)
            with self.assertRaises(Stop):
                fastsock.send(a, b"more")
            killer()

    def test_raising_handler_stops_sendall_and_reports_what_was_sent(self):
        signal.signal(signal.SIGUSR1, lambda *_: (_ for _ in ()).throw(Stop()))
        data = pattern(32 << 20)
        with socket_pair() as (a, b):
            killer = self.kill_main_later(0.3)
            with self.assertRaises(Stop) as cm:
                fastsock.sendall(a, data, timeout=10)
            killer()
            sent = cm.exception.nbytes
            self.assertGreater(sent, 0)
            self.assertLess(sent, len(data))
            a.shutdown(socket.SHUT_WR)
            b.settimeout(10)
            self.assertEqual(drain(b), sent)

    def test_keyboard_interrupt_leaves_recvall(self):
        self.addCleanup(signal.signal, signal.SIGINT, signal.getsignal(signal.SIGINT))
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with socket_pair() as (a, _b):
            def interrupt():
                time.sleep(0.2)
                signal.pthread_kill(self.main, signal.SIGINT)

            killer = in_thread(interrupt)
            started = time.monotonic()
            with self.assertRaises(KeyboardInterrupt):
                fastsock.recvall(a, 10)  # no timeout: only the signal ends it
            killer()
            self.assertLess(time.monotonic() - started, 5)

    def test_signal_does_not_break_timeout(self):
        # A handler that returns lets the transfer go on against the same
        # deadline: the whole call is bounded, not each wait.
        signal.signal(signal.SIGUSR1, lambda *_: None)
        with socket_pair() as (a, _b):
            killer = self.kill_main_later(0.1)
            started = time.monotonic()
            with self.assertRaises(TimeoutError):
                fastsock.recvall(a, 10, timeout=0.5)
            killer()
            self.assertLess(time.monotonic() - started, 2)


class ThreadsTest(unittest.TestCase):
    def test_concurrent_recvalls(self):
        size, nthreads = 8 << 20, 8
        payloads = [pattern(size, seed) for seed in range(nthreads)]
        results = [None] * nthreads
        cycles = [None] * nthreads

        def receive(i, sock):
            results[i] = fastsock.recvall(sock, size, timeout=30)
            cycles[i] = fastsock.recvall_cycles()

        pairs = [socket.socketpair() for _ in range(nthreads)]
        try:
            receivers = [in_thread(receive, i, pairs[i][0]) for i in range(nthreads)]
            senders = [in_thread(pairs[i][1].sendall, payloads[i]) for i in range(nthreads)]
            for join in senders + receivers:
                join()
        finally:
            for a, b in pairs:
                a.close()
                b.close()
        for i in range(nthreads):
            self.assertEqual(results[i], payloads[i], f"thread {i} got other bytes")
            self.assertIsInstance(cycles[i], int)
            self.assertGreaterEqual(cycles[i], 1)

    def test_recvall_cycles_is_per_thread(self):
        with socket_pair() as (a, b):
            b.sendall(b"x" * 10)
            fastsock.recvall(a, 10)
            mine = fastsock.recvall_cycles()
            other = in_thread(fastsock.recvall_cycles)()
        self.assertEqual(mine, 1)
        self.assertEqual(other, 0)


class SigpipeTest(unittest.TestCase):
    def test_no_sigpipe_death(self):
        # Python ignores SIGPIPE; a program that restores the default must
        # still get BrokenPipeError, not die.
        code = textwrap.dedent("""
            import io, signal, socket, struct, tempfile, fastsock
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            gone = (BrokenPipeError, ConnectionResetError)
            with tempfile.TemporaryFile() as f:
                f.write(b"f" * 100000)
                f.flush()
                for call in (lambda s: fastsock.send(s, b"x" * 1000),
                             lambda s: fastsock.sendall(s, b"x" * 5000000),
                             lambda s: fastsock.sendfile(s, f),
                             lambda s: fastsock.sendfile(s, io.BytesIO(b"b" * 100000))):
                    a, b = socket.socketpair()
                    b.close()
                    try:
                        call(a)
                    except gone:
                        pass
                    else:
                        raise SystemExit("no error on a closed peer")
                    a.close()
                with socket.create_server(("127.0.0.1", 0)) as listener:
                    c = socket.create_connection(listener.getsockname())
                    s, _ = listener.accept()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
                for _ in range(3):
                    try:
                        fastsock.sendall(c, b"y" * 1000000)
                    except gone:
                        pass
            print("survived")
        """)
        proc = subprocess.run([sys.executable, "-c", code], env=child_env(),
                              capture_output=True, text=True, timeout=60)
        self.assertNotEqual(proc.returncode, -signal.SIGPIPE, "killed by SIGPIPE")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.strip(), "survived")


class MemoryTest(unittest.TestCase):
    def test_recvall_peak_memory_is_one_copy(self):
        # The child's peak RSS grows by the payload once, not twice: one
        # allocation, filled in place. The feeder is another process.
        code = textwrap.dedent("""
            import os, socket, fastsock
            def peak_kib():  # VmHWM: this process's own peak, unlike ru_maxrss
                with open("/proc/self/status") as f:
                    return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
            n = 64 << 20
            a, b = socket.socketpair()
            if os.fork() == 0:
                a.close()
                block = b"q" * (1 << 20)
                for _ in range(n >> 20):
                    b.sendall(block)
                os._exit(0)
            b.close()
            before = peak_kib()
            data = fastsock.recvall(a, n)
            after = peak_kib()
            os.wait()
            assert len(data) == n and data.count(b"q") == n
            print((after - before) // 1024)
        """)
        proc = subprocess.run([sys.executable, "-c", code], env=child_env(),
                              capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        grown_mib = int(proc.stdout)
        self.assertGreaterEqual(grown_mib, 60, "the measurement missed the payload")
        self.assertLessEqual(grown_mib, 64 + 8, f"peak RSS grew by {grown_mib} MiB for 64 MiB")


if __name__ == "__main__":
    unittest.main()
