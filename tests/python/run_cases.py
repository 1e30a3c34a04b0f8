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
import io
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
# The protocol round's ops (issue 17): run by run_protocol_case.
PROTOCOL_OPS = {"sendallv", "recvfile", "readuntil"}
SEARCH_OPS = {"find", "split"}  # no connection
OPS = {"recvall", "recvall_into", "recv_into", "send", "sendall", "sendfile"} | STEP_OPS \
    | PROTOCOL_OPS | SEARCH_OPS
EXPECTS = {"ok", "closed", "timeout", "reset", "peer_gone", "badarg", "badsock", "nomem", "wouldblock",
           "toolong", "badfile"}
REFUSED = {"badarg", "badsock", "nomem", "badfile"}
SOCKS = {"fd", "int", "notsock", "closed"}
RECV_OPS = {"recvall", "recvall_into", "recv_into", "recv_steps", "recv_steps_into", "recvfile",
            "readuntil"}
SEND_OPS = {"send", "sendall", "sendfile", "send_steps", "sendfile_steps", "sendallv"}
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
    "sendallv": {"pieces"},
    "recvfile": {"file", "n", "offset"},
    "readuntil": {"delim", "max", "repeat", "then"},
    "find": {"hay", "needle", "from"},
    "split": {"hay", "sep"},
}
COMMON_KEYS = {"op", "req", "sock", "timeout", "expect", "result", "result_max", "moved", "moved_min"}
ALL_KEYS = COMMON_KEYS.union(*OP_KEYS.values())
# Every key of the server's protocol, by mode.
REQ_KEYS = {
    "gen": {"len", "seed", "off", "close", "reset", "stall", "stall_ms", "trickle"},
    "sink": {"seed", "off", "pause_ms", "reset"},
}
# The ops that take timeout=; the others get the socket's own (settimeout).
TIMEOUT_KW = {"recvall", "recvall_into", "sendall", "sendallv", "recvfile", "readuntil"}
INT_KEYS = {"n", "offset", "count", "from", "result"}  # any integer: negative values are cases
NONNEG_KEYS = {"bufsize", "datalen", "result_max", "moved", "moved_min", "cycles_max",
               "budget", "steps_min", "max", "repeat", "then"}
HEX_KEYS = {"delim", "needle", "sep"}  # hex bytes, or "empty"


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


def hex_bytes(name, spec):
    if spec == "empty":
        return b""
    try:
        if not spec:
            raise ValueError
        return bytes.fromhex(spec)
    except ValueError:
        raise CaseError(f"{name}: bad hex bytes {spec!r}") from None


def parse_pieces(name, spec):
    """pieces=64:16777216:2, LEN*K, none, x: a list of lengths, None for an x."""
    if spec == "none":
        return []
    out = []
    for word in spec.split(":"):
        if word == "x":
            out.append(None)
            continue
        length, star, times = word.partition("*")
        if not length.isdigit() or (star and not times.isdigit()):
            raise CaseError(f"{name}: bad piece {word!r}")
        out.extend([int(length)] * (int(times) if star else 1))
    return out


def parse_hay(name, spec):
    if spec == "empty":
        return b""
    kind, _, rest = spec.partition(":")
    if kind == "hex":
        return hex_bytes(name, rest)
    if kind == "stream":
        length, colon, seed = rest.partition(":")
        if colon and length.isdigit() and seed.isdigit():
            return stream(int(seed), 0, int(length))
    raise CaseError(f"{name}: unknown hay {spec!r}")


def validate_protocol(name, keys, op):
    for key in HEX_KEYS & keys.keys():
        hex_bytes(name, keys[key])
    if op in SEARCH_OPS:
        if "req" in keys or "sock" in keys or "timeout" in keys:
            raise CaseError(f"{name}: {op} makes no connection")
        for key in ("hay", "sep" if op == "split" else "needle"):
            if key not in keys:
                raise CaseError(f"{name}: {op} needs {key}")
        hay = keys["hay"]
        kind, _, rest = hay.partition(":")
        length, _, seed = rest.partition(":")
        if not (hay == "empty" or kind == "hex" or (kind == "stream" and length.isdigit() and seed.isdigit())):
            raise CaseError(f"{name}: unknown hay {hay!r}")
        if kind == "hex":
            hex_bytes(name, rest)
        return
    if op == "sendallv":
        if "pieces" not in keys:
            raise CaseError(f"{name}: sendallv needs pieces")
        parse_pieces(name, keys["pieces"])
    elif op == "recvfile":
        spec = keys.get("file", "")
        kind, colon, size = spec.partition(":")
        if not (spec in ("empty", "pipe") or (kind in ("regular", "append", "readonly") and size.isdigit())):
            raise CaseError(f"{name}: unknown recvfile file {spec!r}")
        if "n" not in keys:
            raise CaseError(f"{name}: recvfile needs n")
    elif op == "readuntil":
        if "delim" not in keys or "max" not in keys:
            raise CaseError(f"{name}: readuntil needs delim and max")


def validate(name, keys):
    op = keys.get("op")
    if op not in OPS:
        raise CaseError(f"{name}: unknown or missing op {op!r}")
    for key in keys:
        if key not in COMMON_KEYS and key not in OP_KEYS[op]:
            raise CaseError(f"{name}: key {key!r} does not apply to {op}")
    if keys.get("expect") not in EXPECTS:
        raise CaseError(f"{name}: unknown or missing expect {keys.get('expect')!r}")
    if op in PROTOCOL_OPS | SEARCH_OPS:
        validate_protocol(name, keys, op)
    if op in SEARCH_OPS:
        pass
    elif "req" not in keys:
        raise CaseError(f"{name}: no req")
    else:
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
    if isinstance(exc, fastsock.TooLongError):
        return "toolong"
    if isinstance(exc, io.UnsupportedOperation):  # recvfile: a file not open for writing
        return "badfile"
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
    if isinstance(exc, (ValueError, TypeError)):  # the contract's bad arguments
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


def connect_case(server, keys, kind, cleanup):
    """The case's connection, and what its sock= key hands the call: the
    socket, its fd, a file's fd (not a socket) or a closed socket."""
    conn = server.connect(keys["req"].replace(",", " "))
    cleanup.append(conn.close)
    if kind == "fd":
        return conn, conn
    if kind == "int":
        return conn, conn.fileno()
    if kind == "notsock":
        f = tempfile.TemporaryFile()
        cleanup.append(f.close)
        return conn, f.fileno()
    closed = socket.socket()
    closed.close()
    return conn, closed


def run_case(server, keys, fastsock):
    if keys["op"] in SEARCH_OPS:
        return run_search_case(keys, fastsock)
    if keys["op"] in PROTOCOL_OPS:
        return run_protocol_case(server, keys, fastsock)
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
        conn, target = connect_case(server, keys, kind, cleanup)
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
            got, match = sink_answer(conn)
            check(got == moved, f"sink got {got}, the call reported {moved}")
            check(match == got, f"sink matched {match} of {got}")
    finally:
        for close in reversed(cleanup):
            close()


def check_outcome(keys, result, exc, fastsock, moved=None):
    """expect, result, moved and moved_min against what a call did; returns
    the bytes moved (0 for a refused call). moved: the runner's own count
    of a failed call's progress, when it is more than the exception's."""
    expect = keys["expect"]
    if exc is None:
        check(expect == "ok", f"returned {_short(result)}, expected {expect}")
        check(isinstance(result, int), f"returned {type(result).__name__}")
        if "result" in keys:
            check(result == int(keys["result"]), f"result {result}, expected {keys['result']}")
        if "result_max" in keys:
            check(0 < result <= int(keys["result_max"]), f"result {result}, expected 1..{keys['result_max']}")
        return result
    got = classify(exc, fastsock)
    if expect == "peer_gone" and got == "reset":
        got = "peer_gone"  # EPIPE or ECONNRESET: whichever the kernel saw first
    check(got == expect, f"raised {exc!r}, expected {expect}")
    nbytes = getattr(exc, "nbytes", None)
    if expect in REFUSED:
        check(nbytes in (None, 0), f"{nbytes} bytes moved before refusing")
        moved = 0
    else:
        check(isinstance(nbytes, int), f"{exc!r} has no nbytes")
        moved = nbytes if moved is None else moved
    if "moved" in keys:
        check(moved == int(keys["moved"]), f"moved {moved}, expected {keys['moved']}")
    if "moved_min" in keys:
        check(moved >= int(keys["moved_min"]), f"moved {moved}, expected >= {keys['moved_min']}")
    return moved


def sink_answer(conn):
    """Shuts down writing and reads the sink's `got=N match=M`."""
    conn.shutdown(socket.SHUT_WR)
    answer = b""
    while not answer.endswith(b"\n"):
        chunk = conn.recv(256)
        if not chunk:
            break
        answer += chunk
    fields = dict(w.split("=", 1) for w in answer.decode().split())
    check("got" in fields and "match" in fields, f"sink answered {answer!r}")
    return int(fields["got"]), int(fields["match"])


def make_pieces(keys, seed):
    """sendallv's buffers over consecutive stream bytes, of several buffer
    types in turn (bytes, bytearray, memoryview slices, array), and None for
    an x."""
    import array
    lengths = parse_pieces("", keys["pieces"])
    data = stream(seed, 0, sum(n for n in lengths if n is not None))
    view = memoryview(data)
    pieces, at = [], 0
    for i, n in enumerate(lengths):
        if n is None:
            pieces.append(None)
            continue
        kind = i % 4
        if kind == 0 or n > 1 << 20:
            pieces.append(view[at:at + n])  # large ones: no copy
        elif kind == 1:
            pieces.append(bytes(view[at:at + n]))
        elif kind == 2:
            pieces.append(bytearray(view[at:at + n]))
        else:
            pieces.append(array.array("B", view[at:at + n]))
        at += n
    return pieces


def recvfile_target(spec, cleanup):
    """recvfile's file (a file object, or the pipe's write end as an int fd),
    the bytes of 0xA5 it starts with, and the pipe's read end (None)."""
    if spec == "pipe":
        r, w = os.pipe()
        reader = os.fdopen(r, "rb")
        cleanup.append(reader.close)
        writer = os.fdopen(w, "wb", buffering=0)  # closed after the call, to read to the end
        cleanup.append(writer.close)
        return writer, 0, reader
    kind, _, size = spec.partition(":")
    prefill = int(size) if size else 0
    fd, path = tempfile.mkstemp(prefix="fastsock-recvfile-")
    with os.fdopen(fd, "wb") as f:
        f.write(b"\xa5" * prefill)
    mode = {"append": "a+b", "readonly": "rb"}.get(kind, "r+b")
    f = open(path, mode)
    os.unlink(path)
    cleanup.append(f.close)
    if kind != "append":
        f.seek(0)
    return f, prefill, None


def run_protocol_case(server, keys, fastsock):
    """sendallv, recvfile and readuntil, with the C runner's checks
    (tests/c/run_cases.c, run_more)."""
    op, expect = keys["op"], keys["expect"]
    _, req = parse_request("", keys["req"])
    seed, off = int(req.get("seed", 0)), int(req.get("off", 0))
    kind = keys.get("sock", "fd")
    timeout = float(keys["timeout"]) if "timeout" in keys else None
    cleanup = []
    try:
        # Built before connecting, as for the sends (the sink's pause starts
        # at the connection).
        pieces = make_pieces(keys, seed) if op == "sendallv" else None
        conn, target = connect_case(server, keys, kind, cleanup)
        kwargs = {}
        if timeout is not None:
            if kind == "fd" and op != "sendallv":
                conn.settimeout(timeout)  # the socket's own timeout
            else:
                kwargs["timeout"] = timeout

        def arg(key, default=None):
            return int(keys[key]) if key in keys else default

        result = exc = None
        consumed = 0  # stream bytes the checks have seen
        if op == "sendallv":
            try:
                result = fastsock.sendallv(target, pieces, **kwargs)
            except Exception as e:  # judged below against the case
                exc = e
            moved = check_outcome(keys, result, exc, fastsock)
            if expect != "peer_gone":
                conn.settimeout(30)
                got, match = sink_answer(conn)
                check(got == moved, f"sink got {got}, the call reported {moved}")
                check(match == got, f"sink matched {match} of {got}")
            return

        if op == "recvfile":
            spec = keys["file"]
            file, prefill, pipe_r = recvfile_target(spec, cleanup)
            offset = arg("offset")
            try:
                result = fastsock.recvfile(target, file, arg("n"), offset, **kwargs)
            except Exception as e:
                exc = e
            moved = check_outcome(keys, result, exc, fastsock)
            if isinstance(exc, fastsock.IncompleteError):
                check(exc.partial is None, "recvfile's IncompleteError carries bytes, not a count")
            refused = expect in REFUSED
            at = prefill if spec.startswith("append") else (offset or 0)
            if pipe_r is not None:
                file.close()
                content = pipe_r.read()
                check(content == stream(seed, off, moved), "the pipe's bytes differ from the stream")
            else:
                content = os.pread(file.fileno(), os.fstat(file.fileno()).st_size, 0)
                if not refused:
                    want_len = max(prefill, at + moved)
                    check(len(content) == want_len, f"the file holds {len(content)} bytes, expected {want_len}")
                    check(content[at:at + moved] == stream(seed, off, moved),
                          "the file's bytes differ from the stream")
                    outside = content[:at] + content[at + moved:]
                    check(outside.count(0xA5) == len(outside), "bytes of the file outside the range were written")
                    # As for sendfile: offset + moved whenever bytes moved;
                    # an appending file stands at its end.
                    want_pos = (at + moved) if moved > 0 or spec.startswith("append") else at
                    check(file.tell() == want_pos, f"file position {file.tell()}, expected {want_pos}")
            consumed = moved
        else:  # readuntil
            delim = hex_bytes("", keys["delim"])
            reader = fastsock.Reader(target)
            total = 0  # bytes handed out: the lines, and a partial one

            def handed_out(got, what):
                nonlocal total
                check(type(got) is bytes, f"{what} is {type(got).__name__}, not bytes")
                check(got == stream(seed, off + total, len(got)), f"{what} differs from the stream")
                total += len(got)

            try:
                for i in range(arg("repeat", 1)):
                    try:
                        line = reader.readuntil(delim, arg("max"), **kwargs)
                    except fastsock.IncompleteError as e:
                        handed_out(e.partial, f"the partial line {i + 1}")
                        check(e.nbytes == len(e.partial), f"nbytes {e.nbytes} for a partial of {len(e.partial)}")
                        raise
                    except (TimeoutError, OSError, ValueError) as e:
                        # nothing handed out: the bytes stay in the reader
                        nbytes = getattr(e, "nbytes", 0)
                        check(nbytes == 0, f"{e!r} reports {nbytes} bytes handed out")
                        raise
                    handed_out(line, f"line {i + 1}")
                    check(line.endswith(delim), f"line {i + 1} does not end with the delimiter")
                result = total
            except Failure:
                raise
            except Exception as e:
                exc = e
            check_outcome(keys, result, exc, fastsock, moved=total)
            then = arg("then", 0)
            if then:
                conn.settimeout(30)
                body = reader.recvall(then, timeout=30)
                check(body == stream(seed, off + total, then),
                      f"the {then} bytes after the line(s) differ from the stream")
            consumed = total + then
        if expect in REFUSED:
            conn.settimeout(30)
            first = conn.recv(1)
            check(first == stream(seed, off + consumed, 1), "a refused call consumed data")
    finally:
        for close in reversed(cleanup):
            close()


def run_search_case(keys, fastsock):
    """find and split: no connection; the checks of the C runner's run_search,
    plus Python's own bytes.find / bytes.split as the reference."""
    op, expect = keys["op"], keys["expect"]
    hay = parse_hay("", keys["hay"])
    needle = hex_bytes("", keys["sep" if op == "split" else "needle"])
    start = int(keys.get("from", 0))
    result = exc = None
    try:
        if op == "find":
            # over a bytearray: any buffer, not only bytes
            result = fastsock.find(bytearray(hay), needle, start)
        else:
            fields = fastsock.split(hay, needle)
            ends = fastsock.split_offsets(hay, needle)
            result = len(fields)
    except Exception as e:
        exc = e
    if exc is not None:
        check(classify(exc, fastsock) == expect, f"raised {exc!r}, expected {expect}")
        return
    check(expect == "ok", f"returned {result!r}, expected {expect}")
    check(result == int(keys["result"]), f"result {result}, expected {keys['result']}")
    if op == "find":
        check(result == hay.find(needle, start), f"bytes.find says {hay.find(needle, start)}")
        if result >= 0:
            check(hay[result:result + len(needle)] == needle, f"no needle at {result}")
        return
    check(len(fields) == len(hay.split(needle)), f"bytes.split makes {len(hay.split(needle))} fields")
    check(all(type(f) is memoryview and f.obj is hay for f in fields), "split's fields are not views of the hay")
    check(needle.join(bytes(f) for f in fields) == hay, "the fields joined with sep are not the hay")
    check(len(ends) == len(fields), f"split_offsets gave {len(ends)} ends for {len(fields)} fields")
    start = 0
    for f, end in zip(fields, ends):
        check(hay[start:end] == f, "split_offsets' fields differ from split's")
        start = end + len(needle)
    check(ends[-1] == len(hay), "the last field does not end at the hay's end")


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
