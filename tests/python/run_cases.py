#!/usr/bin/env python3
"""The Python conformance runner: every case of tests/cases.txt through the
loopback server (tests/README.md describes both).

    run_cases.py --server PATH --cases PATH [--only NAME ...]
    run_cases.py --list --cases PATH

Everything that is not the operation under test (connecting, the request
line, shutdown, reading the sink's answer) uses Python's own socket module.
"""

import argparse
import errno
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

LANG = "python"
UNIT = 65521

STEP_OPS = {"recv_steps", "recv_steps_into", "send_steps", "sendfile_steps"}
OPS = {"recvall", "recvall_into", "recv_into", "send", "sendall", "sendfile"} | STEP_OPS
EXPECTS = {"ok", "closed", "timeout", "reset", "peer_gone", "badarg", "badsock", "nomem", "wouldblock"}
SOCKS = {"fd", "int", "notsock", "closed"}
RECV_OPS = {"recvall", "recvall_into", "recv_into", "recv_steps", "recv_steps_into"}
SEND_OPS = {"send", "sendall", "sendfile", "send_steps", "sendfile_steps"}
# A progressive op is checked as the blocking call it steps through.
LIKE = {"recv_steps": "recvall", "recv_steps_into": "recvall_into", "send_steps": "sendall",
        "sendfile_steps": "sendfile"}
# Keys an op may have besides the common ones.
OP_KEYS = {
    "recvall": {"n", "cycles_max"},
    "recvall_into": {"n", "bufsize", "offset", "cycles_max"},
    "recv_into": {"n", "bufsize", "offset"},
    "send": {"datalen", "offset", "count"},
    "sendall": {"datalen", "offset", "count"},
    "sendfile": {"file", "offset", "count"},
    "recv_steps": {"n", "budget", "steps_min"},
    "recv_steps_into": {"n", "bufsize", "offset", "budget", "steps_min"},
    "send_steps": {"datalen", "offset", "count", "budget", "steps_min"},
    "sendfile_steps": {"file", "offset", "count", "budget", "steps_min"},
}
COMMON_KEYS = {"op", "req", "sock", "timeout", "expect", "result", "result_max", "moved", "moved_min"}
ALL_KEYS = COMMON_KEYS.union(*OP_KEYS.values())
# Every key of the server's protocol, by mode.
REQ_KEYS = {
    "gen": {"len", "seed", "off", "close", "reset", "stall", "stall_ms", "trickle"},
    "sink": {"seed", "off", "pause_ms", "reset"},
}
# The ops that take timeout=; the others get the socket's own (settimeout).
TIMEOUT_KW = {"recvall", "recvall_into", "sendall"}
INT_KEYS = {"n", "offset", "count"}  # any integer: negative and huge values are cases
NONNEG_KEYS = {"bufsize", "datalen", "result", "result_max", "moved", "moved_min", "cycles_max",
               "budget", "steps_min"}


class CaseError(Exception):
    """A case this runner does not understand."""


class Failure(Exception):
    """A case that ran and did not behave as expected."""


# ---- the case file -------------------------------------------------------------

def parse_request(name, req):
    words = req.split(",")
    mode, pairs = words[0], words[1:]
    if mode not in REQ_KEYS:
        raise CaseError(f"{name}: unknown request mode {mode!r}")
    values = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or key not in REQ_KEYS[mode]:
            raise CaseError(f"{name}: unknown request key {pair!r} for {mode}")
        if key == "trickle":
            chunk, colon, ms = value.partition(":")
            if not colon or not chunk.isdigit() or not ms.isdigit():
                raise CaseError(f"{name}: bad trickle {value!r}")
        elif not value.isdigit():
            raise CaseError(f"{name}: bad request value {pair!r}")
        values[key] = value
    return mode, values


def validate(name, keys):
    op = keys.get("op")
    if op not in OPS:
        raise CaseError(f"{name}: unknown or missing op {op!r}")
    for key in keys:
        if key not in COMMON_KEYS and key not in OP_KEYS[op]:
            raise CaseError(f"{name}: key {key!r} does not apply to {op}")
    if keys.get("expect") not in EXPECTS:
        raise CaseError(f"{name}: unknown or missing expect {keys.get('expect')!r}")
    if "req" not in keys:
        raise CaseError(f"{name}: no req")
    mode, _ = parse_request(name, keys["req"])
    if (mode == "gen") != (op in RECV_OPS):
        raise CaseError(f"{name}: {op} needs a {'gen' if op in RECV_OPS else 'sink'} request")
    if keys.get("sock", "fd") not in SOCKS:
        raise CaseError(f"{name}: unknown sock {keys['sock']!r}")
    for key in INT_KEYS & keys.keys():
        try:
            int(keys[key])
        except ValueError:
            raise CaseError(f"{name}: {key}={keys[key]!r} is not an integer") from None
    for key in NONNEG_KEYS & keys.keys():
        if not keys[key].isdigit():
            raise CaseError(f"{name}: {key}={keys[key]!r} is not a count")
    if "timeout" in keys:
        try:
            if float(keys["timeout"]) < 0:
                raise ValueError
        except ValueError:
            raise CaseError(f"{name}: bad timeout {keys['timeout']!r}") from None
        if keys.get("sock", "fd") != "fd" and op not in TIMEOUT_KW and op not in STEP_OPS:
            raise CaseError(f"{name}: a timeout for {op} needs a socket object")
    if op in ("recvall", "recv_steps") and "n" not in keys:
        raise CaseError(f"{name}: {op} needs n")
    if op in ("recvall_into", "recv_into", "recv_steps_into") and "bufsize" not in keys:
        raise CaseError(f"{name}: {op} needs bufsize")
    if op in ("send", "sendall", "send_steps") and "datalen" not in keys:
        raise CaseError(f"{name}: {op} needs datalen")
    if op in ("sendfile", "sendfile_steps"):
        spec = keys.get("file", "")
        kind, colon, size = spec.partition(":")
        if not (spec == "empty" or (kind in ("regular", "pipe") and colon and size.isdigit())):
            raise CaseError(f"{name}: unknown file {spec!r}")
    if keys["expect"] == "ok" and "result" not in keys and "result_max" not in keys:
        raise CaseError(f"{name}: expect=ok needs result or result_max")


def load_cases(path):
    """[(name, keys or None, error or None)] in file order."""
    cases = []
    seen = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            name, tokens = words[0], words[1:]
            keys, overridden, error = {}, set(), None
            try:
                if name in seen:
                    raise CaseError(f"{name}: duplicate case name")
                seen.add(name)
                for token in tokens:
                    key, eq, value = token.partition("=")
                    if not eq:
                        raise CaseError(f"{name}: token without '=': {token}")
                    key, at, lang = key.partition("@")
                    if key not in ALL_KEYS:
                        raise CaseError(f"{name}: unknown key {key!r}")
                    if at:
                        if lang != LANG:
                            continue
                        keys[key] = value
                        overridden.add(key)
                    elif key not in overridden:
                        keys[key] = value
                validate(name, keys)
            except CaseError as exc:
                keys, error = None, str(exc)
            cases.append((name, keys, error))
    return cases


# ---- the stream --------------------------------------------------------------------

_units = {}


def unit(seed):
    if seed not in _units:
        x = (seed * 2654435761 + 0x7F4A7C15) & 0xFFFFFFFF
        if x == 0:
            x = 1
        out = bytearray(UNIT)
        for i in range(UNIT):
            x ^= (x << 13) & 0xFFFFFFFF
            x ^= x >> 17
            x ^= (x << 5) & 0xFFFFFFFF
            out[i] = x & 0xFF
        _units[seed] = bytes(out)
    return _units[seed]


def stream(seed, off, n):
    phase = off % UNIT
    reps = (phase + n) // UNIT + 1
    return (unit(seed) * reps)[phase:phase + n]


# ---- one case ----------------------------------------------------------------------

class Server:
    def __init__(self, path):
        self.proc = subprocess.Popen([path], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"the server said {line!r}, not PORT n")
        self.port = int(line.split()[1])

    def connect(self, request):
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        conn.sendall(request.encode() + b"\n")
        return conn

    def quit(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
                conn.sendall(b"quit\n")
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def check(cond, message):
    if not cond:
        raise Failure(message)


def classify(exc, fastsock):
    """The case file's word for an exception."""
    if isinstance(exc, fastsock.IncompleteError):
        return "closed"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, BlockingIOError):
        return "wouldblock"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, BrokenPipeError):
        return "peer_gone"
    if isinstance(exc, MemoryError):
        return "nomem"
    if isinstance(exc, ValueError):
        return "badarg"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOTSOCK, errno.EBADF):
        return "badsock"
    return None


def make_file(spec, seed, cleanup):
    """A binary file object for sendfile, and the thread feeding a pipe."""
    if spec == "empty":
        f = tempfile.TemporaryFile()
        cleanup.append(f.close)
        return f
    kind, _, size = spec.partition(":")
    size = int(size)
    data = stream(seed, 0, size)
    if kind == "regular":
        f = tempfile.TemporaryFile()
        cleanup.append(f.close)
        f.write(data)
        f.flush()
        f.seek(0)
        return f
    r, w = os.pipe()
    f = os.fdopen(r, "rb")

    def feed():
        try:
            with os.fdopen(w, "wb") as out:
                out.write(data)
        except BrokenPipeError:
            pass  # a count below the size: the reader closed first

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()

    def close():
        f.close()
        feeder.join(10)

    cleanup.append(close)
    return f


def run_case(server, keys, fastsock):
    op, expect = keys["op"], keys["expect"]
    _, req = parse_request("", keys["req"])
    seed, off = int(req.get("seed", 0)), int(req.get("off", 0))
    kind = keys.get("sock", "fd")
    timeout = float(keys["timeout"]) if "timeout" in keys else None
    cleanup = []
    try:
        # Built before connecting: under valgrind, building 64 MiB outlasts
        # the sink's pause (sendall_timeout, sendfile_timeout), which starts
        # at the connection.
        data = file = None
        if op in ("send", "sendall", "send_steps"):
            data = stream(seed, 0, int(keys["datalen"]))
        elif op in ("sendfile", "sendfile_steps"):
            file = make_file(keys["file"], seed, cleanup)
        conn = server.connect(keys["req"].replace(",", " "))
        cleanup.append(conn.close)
        if kind == "fd":
            target = conn
        elif kind == "int":
            target = conn.fileno()
        elif kind == "notsock":
            f = tempfile.TemporaryFile()
            cleanup.append(f.close)
            target = f.fileno()
        else:
            target = socket.socket()
            target.close()
        kwargs = {}
        if op in STEP_OPS:
            conn.setblocking(False)  # the event loop's socket
        elif timeout is not None:
            if kind == "fd":
                conn.settimeout(timeout)
            else:
                kwargs["timeout"] = timeout

        def arg(key):
            return int(keys[key]) if key in keys else None

        buf = None
        offset = arg("offset") or 0
        result = exc = None
        try:
            if op in STEP_OPS:
                result, steps = run_steps(op, target, keys, arg, data, file, timeout, fastsock)
                if "steps_min" in keys:
                    check(steps >= int(keys["steps_min"]),
                          f"{steps} steps moved data, expected at least {keys['steps_min']}")
                if op == "recv_steps_into":
                    buf = result.buffer
                result = result.value
            elif op == "recvall":
                result = fastsock.recvall(target, arg("n"), **kwargs)
            elif op == "recvall_into":
                buf = bytearray(b"\xa5") * arg("bufsize")
                result = fastsock.recvall_into(target, buf, arg("n"), offset, **kwargs)
            elif op == "recv_into":
                buf = bytearray(b"\xa5") * arg("bufsize")
                result = fastsock.recv_into(target, buf, arg("n") or 0, offset=offset)
            elif op in ("send", "sendall"):
                call = getattr(fastsock, op)
                result = call(target, data, offset, arg("count"), **kwargs)
            else:
                result = fastsock.sendfile(target, file, offset, arg("count"))
        except Failure:
            raise
        except Exception as e:  # judged below against the case
            exc = e
            if op == "recv_steps_into":
                buf = getattr(e, "buffer", None)
        conn.settimeout(30)
        op = LIKE.get(op, op)

        if exc is None:
            check(expect == "ok", f"returned {_short(result)}, expected {expect}")
            moved = len(result) if op == "recvall" else result
            check(isinstance(moved, int), f"returned {type(result).__name__}")
            if "result" in keys:
                check(moved == int(keys["result"]), f"result {moved}, expected {keys['result']}")
            if "result_max" in keys:
                check(0 < moved <= int(keys["result_max"]),
                      f"result {moved}, expected 1..{keys['result_max']}")
        else:
            got = classify(exc, fastsock)
            if expect == "peer_gone" and got == "reset":
                got = "peer_gone"  # EPIPE or ECONNRESET: whichever the kernel saw first
            check(got == expect, f"raised {exc!r}, expected {expect}")
            moved = getattr(exc, "nbytes", None)
            if expect in ("badarg", "badsock", "nomem"):
                check(moved in (None, 0), f"{moved} bytes moved before refusing")
                moved = 0
            else:
                check(isinstance(moved, int), f"{exc!r} has no nbytes")
            if "moved" in keys:
                check(moved == int(keys["moved"]), f"moved {moved}, expected {keys['moved']}")
            if "moved_min" in keys:
                check(moved >= int(keys["moved_min"]), f"moved {moved}, expected >= {keys['moved_min']}")

        if op == "recvall":
            got = result if exc is None else getattr(exc, "partial", b"")
            if expect not in ("badarg", "badsock", "nomem"):
                check(type(got) is bytes, f"partial data is {type(got).__name__}, not bytes")
                check(len(got) == moved, f"{len(got)} bytes of data for {moved} moved")
                check(got == stream(seed, off, moved), "received bytes differ from the stream")
            if "cycles_max" in keys and exc is None and not os.environ.get("FASTSOCK_PORTABLE_BUILD"):
                cycles = fastsock.recvall_cycles()
                check(cycles <= int(keys["cycles_max"]),
                      f"{cycles} recv calls, expected at most {keys['cycles_max']}")
        elif buf is not None:
            check(buf[offset:offset + moved] == stream(seed, off, moved),
                  "received bytes differ from the stream")
            outside = buf[:offset] + buf[offset + moved:]
            check(outside.count(0xA5) == len(outside), "bytes outside the range were written")
            if op == "recvall_into" and "cycles_max" in keys and exc is None \
                    and not os.environ.get("FASTSOCK_PORTABLE_BUILD"):
                cycles = fastsock.recvall_cycles()
                check(cycles <= int(keys["cycles_max"]),
                      f"{cycles} recv calls, expected at most {keys['cycles_max']}")

        if op in RECV_OPS and expect in ("badarg", "badsock", "nomem"):
            first = conn.recv(1)
            check(first == stream(seed, off, 1), "the refused call consumed stream bytes")

        if keys["op"] == "sendfile_steps" and file is not None and keys["file"].startswith("regular"):
            check(file.tell() == 0, f"file position {file.tell()}, expected it untouched (0)")
        elif op == "sendfile" and file is not None and keys["file"].startswith("regular"):
            # socket.sendfile moves the position to offset + sent only when
            # something was sent.
            want = offset + moved if moved > 0 else 0
            check(file.tell() == want, f"file position {file.tell()}, expected {want}")

        if op in SEND_OPS and "reset" not in req:
            conn.shutdown(socket.SHUT_WR)
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = conn.recv(256)
                if not chunk:
                    break
                answer += chunk
            fields = dict(w.split("=", 1) for w in answer.decode().split())
            check("got" in fields and "match" in fields, f"sink answered {answer!r}")
            check(int(fields["got"]) == moved, f"sink got {fields['got']}, the call reported {moved}")
            check(fields["match"] == fields["got"], f"sink matched {fields['match']} of {fields['got']}")
    finally:
        for close in reversed(cleanup):
            close()


class _Stepped:
    def __init__(self, value, buffer=None):
        self.value, self.buffer = value, buffer


def run_steps(op, target, keys, arg, data, file, timeout, fastsock):
    """Drives a Receiver or Sender with a plain select loop, as an event loop
    would: wait for what it wants, step, until it ends. The case's timeout is
    this loop's own limit: when it passes, a TimeoutError with the progress.
    Returns (_Stepped(result[, buffer]), steps that moved data)."""
    import select
    budget = {"budget": int(keys["budget"])} if "budget" in keys else {}
    offset = arg("offset") or 0
    buf = None
    if op == "recv_steps":
        x = fastsock.Receiver(target, arg("n"), **budget)
    elif op == "recv_steps_into":
        buf = bytearray(b"\xa5") * arg("bufsize")
        try:
            x = fastsock.Receiver(target, arg("n"), buffer=buf, offset=offset, **budget)
        except Exception as e:
            e.buffer = buf
            raise
    elif op == "send_steps":
        x = fastsock.Sender(target, data, offset, arg("count"), **budget)
    else:
        x = fastsock.Sender.from_file(target, file, offset, arg("count"), **budget)
    limit = int(keys["budget"]) if "budget" in keys else x.budget
    deadline = None if timeout is None else time.monotonic() + timeout
    steps = 0
    try:
        while not x.ended:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            want = x.want
            r, w, _ = select.select([x] if want == 1 else [], [x] if want == 2 else [], [], wait)
            if not r and not w:
                exc = TimeoutError("the runner's wait limit passed")
                exc.nbytes = x.nbytes
                if op == "recv_steps":
                    exc.partial = x.partial()
                raise exc
            before = x.nbytes
            moved = x.step()
            check(moved == x.nbytes - before, f"step() returned {moved}, progress moved {x.nbytes - before}")
            check(moved <= limit, f"a step moved {moved} bytes, over the budget {limit}")
            steps += moved > 0
    except Exception as e:
        e.buffer = buf
        raise
    return _Stepped(x.result(), buf), steps


def _short(value):
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    return repr(value)


# ---- main ----------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server")
    parser.add_argument("--cases", required=True)
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--only", action="append", default=[])
    args = parser.parse_args()

    cases = load_cases(args.cases)
    bad = [error for _, _, error in cases if error]
    if args.list:
        for name, keys, _ in cases:
            if keys is not None:
                print(name)
        for error in bad:
            print(error, file=sys.stderr)
        return 1 if bad else 0
    if args.server is None:
        parser.error("--server is required to run cases")
    unknown = set(args.only) - {name for name, _, _ in cases}
    if unknown:
        parser.error(f"no such case: {', '.join(sorted(unknown))}")

    import fastsock  # only to run: --list needs no module

    server = Server(args.server)
    passed = failed = 0
    try:
        for name, keys, error in cases:
            if args.only and name not in args.only:
                continue
            try:
                if error:
                    raise Failure(error)
                run_case(server, keys, fastsock)
            except Failure as exc:
                failed += 1
                print(f"FAIL {name}: {exc}", flush=True)
            except Exception as exc:  # the runner's own I/O failed: report, go on
                failed += 1
                print(f"FAIL {name}: {exc!r}", flush=True)
            else:
                passed += 1
                print(f"ok {name}", flush=True)
    finally:
        server.quit()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
