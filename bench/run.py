#!/usr/bin/env python3
"""fastsock's benchmark: every language's fastsock and standard idioms, and plain C.

    bench/run.py [--full] [--build DIR] [--out DIR] [--rounds N] [--sizes LIST]

One worker process per language (C, Python, Ruby, Lua) stays up for the whole
run; the driver asks each for one transfer at a time, round by round, so that
every variant of every language interleaves with every other (A B C .. A B C
..) and the machine's drift hits them all alike. The loopback server runs on
one CPU and the workers on another.

Quick mode (the default, run by the README's first command) stops at 16 MiB;
--full adds 256 MiB, more rounds and the strace recv-call counts, and writes
bench/results/. See bench/README.md for what each column means.
"""
import argparse
import csv
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KiB, MiB = 1 << 10, 1 << 20
LANGS = ("c", "python", "ruby", "lua")

# What each variant's "x C" column divides by: the C limit of its kind.
C_RECV, C_SEND, C_SENDFILE, C_MSG = "recv_waitall_hot", "send", "sendfile", "recv_64"

# Standard (non-fastsock) receive idioms whose result is a fresh object.
FRESH_IDIOMS = {
    "python": ["join_64k", "bytearray_recv_into", "recv_waitall", "makefile_read"],
    "ruby": ["read", "readpartial_loop"],
    "lua": ["receive", "receive_64k_concat"],
}
ALL_RECV_IDIOMS = {
    "python": FRESH_IDIOMS["python"] + ["bytearray_recv_into_reused"],
    "ruby": FRESH_IDIOMS["ruby"] + ["read_outbuf_reused"],
    "lua": FRESH_IDIOMS["lua"],
}
# The native one-call route per language. Lua's is bench/lua/rawsock.c's
# recv, as lua-posix makes it: LuaSocket's receive(64) serves 128 messages
# from one 8 KiB read, which is not a call per message.
NATIVE_MSG = {"c": "recv_64", "python": "recv_into_64", "ruby": "readpartial_64", "lua": "raw_recv_64"}
FASTSOCK_MSG = {"c": "fastsock_recv_64", "python": "fastsock_recv_into_64",
                "ruby": "fastsock_recv_into_64", "lua": "fastsock_recv_into_64"}


def say(msg):
    print(msg, file=sys.stderr, flush=True)


def human(n):
    for unit, size in (("MiB", MiB), ("KiB", KiB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


# Request/response rows (issue 18): "GET\n", then an 8-byte length and a body
# of each size, the same number of requests in every language.
RPC_SIZES = (KiB, 64 * KiB, MiB, 16 * MiB)
# The best stdlib client of each language, and fastsock's.
RPC_IDIOMS = {"python": ["rpc_makefile", "rpc_recv_into"], "ruby": ["rpc_read"], "lua": ["rpc_receive"]}


def rpc_requests(n):
    """The workers' rpc_requests: 10,000 for the small bodies, 256 MiB in all for the large."""
    return 10000 if n <= 64 * KiB else max(16, (256 * MiB) // n)


def kind_of(variant, side):
    if side in ("rpc", "smallsend"):
        return None
    if side == "send16k":
        side = "send"
    if side == "msg":
        return C_MSG
    if side == "recv":
        return C_RECV
    return C_SENDFILE if ("sendfile" in variant or "copy_stream" in variant) else C_SEND


class Worker:
    def __init__(self, lang, argv, env, cpu):
        self.lang = lang
        preexec = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, text=True, bufsize=1, preexec_fn=preexec)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise SystemExit(f"bench: the {lang} worker did not start ({line!r})")
        self.variants = dict(v.split(":") for v in self.ask("list").split())
        self.pid = int(self.ask("pid"))

    def ask(self, line):
        self.proc.stdin.write(line + "\n")
        answer = self.proc.stdout.readline()
        if not answer:
            raise SystemExit(f"bench: the {self.lang} worker died on {line!r}")
        return answer.strip()

    def run(self, variant, n):
        answer = self.ask(f"run {variant} {n}").split()
        if answer[0] != "ok":
            raise SystemExit(f"bench: {self.lang} {variant} {n}: {' '.join(answer[1:])}")
        return float(answer[1]), int(answer[2]), int(answer[3])

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=30)


def start_server(path, cpu):
    preexec = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    proc = subprocess.Popen([path, "--idle-exit", "900"], stdout=subprocess.PIPE, text=True,
                            preexec_fn=preexec)
    m = re.match(r"PORT (\d+)", proc.stdout.readline())
    if not m:
        raise SystemExit("bench: the loopback server did not start")
    return proc, int(m.group(1))


def make_data_file(max_bytes):
    # Not the server's stream, so that its sink stops comparing at byte 0
    # and reads at full speed.
    f = tempfile.NamedTemporaryFile(prefix="fastsock-bench-", delete=False)
    block = bytes((i * 131 + 7) & 0xFF for i in range(MiB))
    left = max_bytes
    while left > 0:
        f.write(block[: min(left, MiB)])
        left -= MiB
    f.close()
    return f.name


def worker_commands(build, data, max_bytes):
    common = ["--port", "{port}", "--file", data, "--max", str(max_bytes)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(build, "bindings/python") + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["RUBYLIB"] = os.pathsep.join([os.path.join(ROOT, "bindings/ruby/lib"),
                                      os.path.join(build, "bindings/ruby/lib"), env.get("RUBYLIB", "")])
    env["LUA_CPATH"] = ";".join([os.path.join(build, "bindings/lua/module/?.so"),
                                 os.path.join(build, "bench/lua/?.so")]) + ";;"
    return env, {
        "c": [os.path.join(build, "bench/fastsock-bench-c"), "--worker", "--port", "{port}",
              "--max", str(max_bytes)],
        "python": [sys.executable, os.path.join(HERE, "python/worker.py")] + common,
        "ruby": [shutil.which("ruby") or "ruby", os.path.join(HERE, "ruby/worker.rb")] + common,
        "lua": [shutil.which("lua5.4") or "lua5.4", os.path.join(HERE, "lua/worker.lua")] + common,
    }


CONNECT_CALL = re.compile(r"^(?:\d+\s+)?connect\((\d+),")
CLOSE_CALL = re.compile(r"^(?:\d+\s+)?close\((\d+)\)")
# The core works on its own dup of the socket.
DUP_CALL = re.compile(r"^(?:\d+\s+)?(?:dup[23]?\((\d+)|fcntl\((\d+), F_DUPFD(?:_CLOEXEC)?)[^=]*= (\d+)")
RECV_CALL = re.compile(r"^(?:\d+\s+)?(recvfrom|recvmsg|recv|read|readv)\((\d+),")
WAIT_CALL = re.compile(r"^(?:\d+\s+)?(poll|ppoll|select|pselect6|epoll_wait|epoll_pwait)\(")


def strace_counts(worker, variant, n):
    """recv and wait system calls of one transfer, counted from strace's log.

    strace attaches to the idle worker, the transfer runs, strace detaches.
    Only calls on the transfer's socket count as receives (the fd its
    connect() names, and its dups, until it is closed); waits count whatever they wait on, which includes the
    worker's one readiness wait before its clock starts.
    """
    log = tempfile.NamedTemporaryFile(prefix="fastsock-strace-", delete=False)
    log.close()
    st = subprocess.Popen(["strace", "-f", "-qq", "-o", log.name, "-p", str(worker.pid), "-e",
                           "trace=connect,close,dup,dup2,dup3,fcntl,recvfrom,recvmsg,read,readv,poll,ppoll,select,pselect6,"
                           "epoll_wait,epoll_pwait"], stderr=subprocess.PIPE, text=True)
    # -qq leaves no message to wait for: watch every thread's TracerPid.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            tids = os.listdir(f"/proc/{worker.pid}/task")
            traced = all(re.search(r"^TracerPid:\s+[1-9]", open(f"/proc/{worker.pid}/task/{t}/status").read(), re.M)
                         for t in tids)
        except OSError:
            traced = False
        if traced:
            break
        time.sleep(0.05)
    time.sleep(0.2)
    try:
        worker.run(variant, n)
    finally:
        time.sleep(0.2)
        st.send_signal(signal.SIGINT)
        st.wait(timeout=30)
    recvs = waits = 0
    sock, fds = None, set()
    with open(log.name) as f:
        for line in f:
            m = CONNECT_CALL.match(line)
            if m:
                sock = m.group(1)
                fds = {sock}
                continue
            m = DUP_CALL.match(line)
            if m and (m.group(1) or m.group(2)) in fds:
                fds.add(m.group(3))
                continue
            m = CLOSE_CALL.match(line)
            if m:
                if m.group(1) == sock:
                    break  # its number may be reused, for /proc reads
                fds.discard(m.group(1))
                continue
            m = RECV_CALL.match(line)
            if m and m.group(2) in fds:
                recvs += 1
            elif sock is not None and WAIT_CALL.match(line):
                waits += 1
    os.unlink(log.name)
    return recvs, waits


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="256 MiB too, more rounds, strace counts")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="the build directory")
    ap.add_argument("--out", help="where the table, CSV and PNG go (full: bench/results)")
    ap.add_argument("--rounds", type=int, help="timed rounds per variant and size")
    ap.add_argument("--sizes", help="comma-separated byte counts")
    ap.add_argument("--langs", default=",".join(LANGS), help="comma-separated subset of " + ",".join(LANGS))
    ap.add_argument("--only", help="only variants whose name contains this")
    ap.add_argument("--bulk-only", action="store_true",
                    help="skip the event-loop and protocol scenarios (bench/eventloop.py, bench/protocol.py)")
    a = ap.parse_args()

    if a.sizes:
        sizes = [int(s) for s in a.sizes.split(",")]
    elif a.full:
        sizes = [64, 64 * KiB, MiB, 16 * MiB, 256 * MiB]
    else:
        sizes = [64, 64 * KiB, MiB, 16 * MiB]
    rounds = a.rounds or (9 if a.full else 7)
    msg_bytes = (8 if a.full else 2) * MiB  # 64-byte messages: 131072 / 32768 of them
    out = a.out or (os.path.join(HERE, "results") if a.full else os.path.join(a.build, "bench-results"))
    build = os.path.abspath(a.build)
    langs = [l for l in a.langs.split(",") if l]

    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    max_bytes = max(sizes + [msg_bytes] + ([16 * MiB] if a.full else []))
    data = make_data_file(max_bytes)
    server, port = start_server(os.path.join(build, "tests/fastsock-loopback-server"), server_cpu)
    env, commands = worker_commands(build, data, max_bytes)
    workers = {}
    try:
        for lang in langs:
            argv = [x.replace("{port}", str(port)) for x in commands[lang]]
            workers[lang] = Worker(lang, argv, env, client_cpu)
        say(f"bench: {'full' if a.full else 'quick'} run, {rounds} rounds, sizes "
            f"{', '.join(human(s) for s in sizes)}; server on CPU {server_cpu}, workers on CPU {client_cpu}")
        results = measure(workers, sizes, rounds, msg_bytes, a.only)
        syscalls = {}
        if a.full and shutil.which("strace"):
            syscalls = count_syscalls(workers, 16 * MiB, a.only)
    finally:
        for w in workers.values():
            w.close()
        try:
            socket_quit(port)
        finally:
            server.wait(timeout=30)
            os.unlink(data)
    report(results, syscalls, sizes, rounds, out, a.full)
    if not a.bulk_only:
        run_scenarios(build, a.full, a.langs)


def run_scenarios(build, full, langs):
    """The event-loop and protocol scenarios, one after the other, each with
    its own driver and table (quick: one size; --full: theirs)."""
    failed = []
    for script in ("eventloop.py", "protocol.py"):
        argv = [sys.executable, os.path.join(HERE, script), "--build", build, "--langs", langs]
        say(f"bench: {script}{' --full' if full else ''}")
        if subprocess.run(argv + (["--full"] if full else [])).returncode != 0:
            failed.append(script)
    if failed:
        raise SystemExit(f"bench: failed: {', '.join(failed)}")


def socket_quit(port):
    import socket
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"quit\n")


def measure(workers, sizes, rounds, msg_bytes, only):
    """{(lang, variant, side, n): {"mbps": [...], "rss": [...], "align": a, "ratio": [...]}}"""
    results = {}
    # send16k: the send variants again, into a sink that reads 16 KiB a call
    # as many servers do (issue 18), from 1 MiB on.
    plan = ([(size, side) for size in sizes for side in ("recv", "send")]
            + [(size, "send16k") for size in sizes if size >= MiB] + [(msg_bytes, "msg")]
            + [(msg_bytes // 4, "smallsend")]
            + [(size, "rpc") for size in RPC_SIZES])
    for n, side in plan:
        of_side = "send" if side == "send16k" else side
        for w in workers.values():
            w.ask("sink step=16384" if side == "send16k" else "sink")
        todo = [(lang, v) for lang, w in workers.items() for v, s in w.variants.items()
                if s == of_side and (not only or only in v or v in (C_RECV, C_SEND, C_SENDFILE, C_MSG))]
        if not todo:
            continue
        for lang, v in todo:  # warm-up: touches reused buffers, loads code
            workers[lang].run(v, n)
        for r in range(rounds):
            say(f"  {side} {human(n)}: round {r + 1}/{rounds}")
            per_round = {}
            # A new order every round (seeded, so runs repeat): no variant
            # always follows the same neighbour, which may have just freed
            # 256 MiB, kept it, or warmed the caches. (Rotating, A B C then
            # B C A, keeps the neighbours.)
            order = list(todo)
            random.Random(r).shuffle(order)
            for lang, v in order:
                dt, added, align = workers[lang].run(v, n)
                rec = results.setdefault((lang, v, side, n), {"mbps": [], "rss": [], "align": align, "ratio": []})
                mbps = n * (rpc_requests(n) if side == "rpc" else 1) / 1e6 / dt
                rec["mbps"].append(mbps)
                rec["rss"].append(added)
                per_round[(lang, v)] = mbps
            for (lang, v), mbps in per_round.items():
                ref = per_round.get(("c", kind_of(v, side)))
                if ref:
                    results[(lang, v, side, n)]["ratio"].append(mbps / ref)
    return results


def count_syscalls(workers, n, only):
    say(f"  strace: recv system calls per {human(n)} transfer")
    counts = {}
    for lang, w in workers.items():
        for v, side in w.variants.items():
            if side == "recv" and (not only or only in v):
                counts[(lang, v)] = strace_counts(w, v, n)
    return counts


def summarize(results):
    rows = []
    for (lang, v, side, n), rec in results.items():
        m = rec["mbps"]
        rss = statistics.median(rec["rss"]) / n if n else 0.0
        rows.append({
            "lang": lang, "variant": v, "side": side, "bytes": n,
            "median_mbps": statistics.median(m), "min_mbps": min(m), "max_mbps": max(m),
            "x_c": statistics.median(rec["ratio"]) if rec["ratio"] else None,
            "rss_x": rss, "page_offset": rec["align"],
        })
    order = {l: i for i, l in enumerate(LANGS)}
    rows.sort(key=lambda r: (["recv", "send", "send16k", "msg", "smallsend", "rpc"].index(r["side"]), order[r["lang"]], r["variant"], r["bytes"]))
    return rows


def fmt_mbps(x):
    return f"{x:,.0f}" if x >= 10 else f"{x:.2f}"


def table(rows, sizes, syscalls):
    """Markdown: one row per variant, MB/s and x C per size, RSS at the largest."""
    big = max(sizes)
    lines = []
    by = {}
    for r in rows:
        by.setdefault((r["side"], r["lang"], r["variant"]), {})[r["bytes"]] = r
    for side in ("recv", "send", "send16k"):
        if not any(r["side"] == side for r in rows):
            continue
        head = f"| {side} | variant | " + " | ".join(f"{human(s)} MB/s (x C)" for s in sizes)
        head += f" | peak RSS / payload at {human(big)} | page offset"
        if syscalls and side == "recv":
            head += " | recv calls (polls) per 16 MiB"
        lines += ["", head + " |", "|" + "---|" * (head.count("|") - 0)]
        for (s, lang, v), per in by.items():
            if s != side:
                continue
            cells = []
            for size in sizes:
                r = per.get(size)
                cells.append("" if r is None else
                             f"{fmt_mbps(r['median_mbps'])} ({r['x_c']:.2f})" if r["x_c"] is not None else
                             fmt_mbps(r["median_mbps"]))
            rb = per.get(big)
            line = f"| {lang} | {v} | " + " | ".join(cells)
            line += f" | {rb['rss_x']:.2f}" if rb else " | "
            line += f" | {rb['page_offset'] if rb and rb['page_offset'] >= 0 else ''}"
            if syscalls and side == "recv":
                c = syscalls.get((lang, v))
                line += f" | {c[0]} ({c[1]})" if c else " | "
            lines.append(line + " |")
    msg = [r for r in rows if r["side"] == "msg"]
    if msg:
        lines += ["", "| 64-byte messages | variant | messages/s | x C recv |", "|---|---|---|---|"]
        for r in msg:
            x = f"{r['x_c']:.2f}" if r["x_c"] is not None else ""
            lines.append(f"| {r['lang']} | {r['variant']} | {r['median_mbps'] * 1e6 / 64:,.0f} | {x} |")
    small = [r for r in rows if r["side"] == "smallsend"]
    if small:
        lines += ["", "| 64-byte sends | variant | sends/s |", "|---|---|---|"]
        for r in small:
            lines.append(f"| {r['lang']} | {r['variant']} | {r['median_mbps'] * 1e6 / 64:,.0f} |")
    rpc = {}
    for r in rows:
        if r["side"] == "rpc":
            rpc.setdefault((r["lang"], r["variant"]), {})[r["bytes"]] = r
    if rpc:
        lines += ["", "| request/response | variant | " + " | ".join(
            f"{human(s)}: requests/s (MB/s)" for s in RPC_SIZES) + " |", "|---|"]
        for (lang, v), per in rpc.items():
            cells = [f"{per[s]['median_mbps'] * 1e6 / s:,.0f} ({fmt_mbps(per[s]['median_mbps'])})"
                     if s in per else "" for s in RPC_SIZES]
            lines.append(f"| {lang} | {v} | " + " | ".join(cells) + " |")
    # Fix the separator rows to the header's column count.
    fixed = []
    for i, l in enumerate(lines):
        if l.startswith("|---") and i > 0:
            l = "|" + "---|" * (lines[i - 1].count("|") - 1)
        fixed.append(l)
    return "\n".join(fixed)


def paired(results, a, b, n):
    """a against b: (median over rounds of a/b, both taken in the same round;
    a's median over b's median)."""
    ra, rb = results.get(a + (n,)), results.get(b + (n,))
    if not ra or not rb:
        return None
    return (statistics.median(x / y for x, y in zip(ra["mbps"], rb["mbps"])),
            statistics.median(ra["mbps"]) / statistics.median(rb["mbps"]))


def best_of(results, lang, variants, side, n):
    """The idiom with the best median, as (variant)."""
    have = [(statistics.median(results[(lang, v, side, n)]["mbps"]), v)
            for v in variants if (lang, v, side, n) in results]
    return max(have)[1] if have else None


def targets(results, sizes, syscalls):
    big = max(sizes)
    lines = ["| target | per-round ratio (ratio of medians) | bar | met |", "|---|---|---|---|"]

    def add(what, ratio, bar, le=False):
        """ratio: a number, or paired()'s two; met when both pass, "noise"
        when only one does."""
        if ratio is None:
            return
        both = ratio if isinstance(ratio, tuple) else (ratio, ratio)
        oks = [r <= bar if le else r >= bar for r in both]
        verdict = "yes" if all(oks) else "within noise" if any(oks) else "**no**"
        shown = f"{both[0]:.2f}" if both[0] == both[1] else f"{both[0]:.2f} ({both[1]:.2f})"
        lines.append(f"| {what} | {shown} | {'<=' if le else '>='} {bar} | {verdict} |")

    for lang in ("python", "ruby"):
        best = best_of(results, lang, FRESH_IDIOMS[lang], "recv", big)
        if best:
            add(f"{lang} recvall {human(big)} / best fresh idiom ({best})",
                paired(results, (lang, "fastsock_recvall", "recv"), (lang, best, "recv"), big), 3)
    best = best_of(results, "lua", ["receive"], "recv", big)
    add(f"lua recvall {human(big)} / LuaSocket receive(n)",
        paired(results, ("lua", "fastsock_recvall", "recv"), ("lua", "receive", "recv"), big), 8)
    for lang in ("c", "python", "ruby", "lua"):
        v = "fastsock_recvall_fresh_advised" if lang == "c" else "fastsock_recvall"
        add(f"{lang} {v} {human(big)} / C recv hot",
            paired(results, (lang, v, "recv"), ("c", C_RECV, "recv"), big), 0.8)
    for n in (16 * MiB, 256 * MiB):
        if n not in sizes:
            continue
        for lang in LANGS:
            v = "fastsock_recvall_hot" if lang == "c" else "fastsock_recvall_into"
            add(f"{lang} {v} {human(n)} / C recv hot",
                paired(results, (lang, v, "recv"), ("c", C_RECV, "recv"), n), 0.95)
    if MiB in sizes:
        for lang in ("python", "ruby", "lua"):
            for label, idioms in (("fresh-result", FRESH_IDIOMS), ("any", ALL_RECV_IDIOMS)):
                best = best_of(results, lang, idioms[lang], "recv", MiB)
                add(f"{lang} recvall 1 MiB / best {label} idiom ({best})",
                    paired(results, (lang, "fastsock_recvall", "recv"), (lang, best, "recv"), MiB), 1.0)
    for n in sorted({16 * MiB, big} & set(sizes)):
        for lang in LANGS:
            add(f"{lang} fastsock_sendall {human(n)} / C send",
                paired(results, (lang, "fastsock_sendall", "send"), ("c", C_SEND, "send"), n), 0.95)
        add(f"lua fastsock_sendall {human(n)} / LuaSocket send",
            paired(results, ("lua", "fastsock_sendall", "send"), ("lua", "send", "send"), n), 2)
        for lang in LANGS:
            add(f"{lang} fastsock_sendfile {human(n)} / C sendfile",
                paired(results, (lang, "fastsock_sendfile", "send"), ("c", C_SENDFILE, "send"), n), 0.95)
    # Issue 18: sends never behind, into the 1 MiB sink and the 16 KiB reader.
    own_send = {"python": "sendall", "ruby": "write", "lua": "send"}
    for side in ("send", "send16k"):
        for n in sorted(s for s in sizes if s >= MiB):
            for lang, own in own_send.items():
                add(f"{lang} fastsock_sendall {human(n)} / its own {own} ({side})",
                    paired(results, (lang, "fastsock_sendall", side), (lang, own, side), n), 0.97)
            if side == "send16k":
                for lang in LANGS:
                    add(f"{lang} fastsock_sendall {human(n)} / C send (send16k)",
                        paired(results, (lang, "fastsock_sendall", side), ("c", C_SEND, side), n), 0.95)
                    add(f"{lang} fastsock_sendfile {human(n)} / C sendfile (send16k)",
                        paired(results, (lang, "fastsock_sendfile", side), ("c", C_SENDFILE, side), n), 0.95)
    for lang in ("python", "ruby"):
        rec = results.get((lang, "fastsock_recvall", "recv", big))
        if rec:
            add(f"{lang} recvall peak RSS / payload at {human(big)}", statistics.median(rec["rss"]) / big, 1.05, le=True)
    rec = results.get(("lua", "fastsock_recvall_into", "recv", big))
    if rec:
        add(f"lua recvall_into peak RSS / payload at {human(big)}", statistics.median(rec["rss"]) / big, 1.05, le=True)
    if syscalls:
        base = syscalls.get(("c", C_RECV))
        for lang, v in (("c", "fastsock_recvall_nonblock"), ("c", "fastsock_recvall_poll_only"),
                        ("python", "fastsock_recvall_timeout"), ("ruby", "fastsock_recvall"),
                        ("lua", "fastsock_recvall")):
            c = syscalls.get((lang, v))
            if c and base:
                ok = c[0] <= base[0] + 2
                verdict = ("(the poll-and-recv way, for comparison)" if v.endswith("poll_only")
                           else "yes" if ok else "**no**")
                lines.append(f"| {lang} {v}: recv calls per 16 MiB (blocking C: {base[0]}) | "
                             f"{c[0]} (+{c[1]} polls) | <= {base[0]} + 2 | {verdict} |")
    # Small calls: (what, side, lang, native route, its name here, fastsock route, bar).
    raw_recv, raw_send = "one recv(2) (lua/rawsock.c)", "one send(2) (lua/rawsock.c)"
    small_calls = [("64-byte recv", "msg", lang, NATIVE_MSG[lang], "native", FASTSOCK_MSG[lang], 1.25)
                   for lang in LANGS] + [
        ("64-byte recv", "msg", "lua", "raw_recv_64", "native", "fastsock_recv_into_64_fd", 1.25),
        ("recvall of 64 bytes", "msg", "python", "recv_waitall_64", "recv(64, MSG_WAITALL)", "fastsock_recvall_64", 1.1),
        ("recvall of 64 bytes", "msg", "ruby", "recv_waitall_64", "recv(64, MSG_WAITALL)", "fastsock_recvall_64", 1.1),
        ("recvall of 64 bytes", "msg", "lua", "raw_recv_64", raw_recv, "fastsock_recvall_64", 1.1),
        ("recvall of 64 bytes", "msg", "lua", "raw_recv_64", raw_recv, "fastsock_recvall_64_fd", 1.1),
        ("sendall of 64 bytes", "smallsend", "python", "sendall_64", "sendall", "fastsock_sendall_64", 1.1),
        ("sendall of 64 bytes", "smallsend", "ruby", "write_64", "write", "fastsock_sendall_64", 1.1),
        ("sendall of 64 bytes", "smallsend", "lua", "raw_send_64", raw_send, "fastsock_sendall_64", 1.1),
        ("sendall of 64 bytes", "smallsend", "lua", "raw_send_64", raw_send, "fastsock_sendall_64_fd", 1.1),
        ("sendall of 64 bytes", "smallsend", "lua", "send_64", "send", "fastsock_sendall_64", 1.1),
    ]
    for what, side, lang, native, name, v, bar in small_calls:
        n = max((k[3] for k in results if k[2] == side), default=None)
        if n is None:
            continue
        given = " given sock:getfd()" if v.endswith("_fd") else ""
        add(f"{lang} {what}{given}: fastsock per-call cost / {name}",
            paired(results, (lang, native, side), (lang, v, side), n), bar, le=True)
    for lang in ("python", "ruby", "lua"):
        for n in RPC_SIZES:
            best = best_of(results, lang, RPC_IDIOMS[lang], "rpc", n)
            if best:
                add(f"{lang} request/response {human(n)}: fastsock recvall / best stdlib client ({best})",
                    paired(results, (lang, "rpc_fastsock", "rpc"), (lang, best, "rpc"), n),
                    1.5 if n >= MiB else 1.0)
    return "\n".join(lines)


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lang", "variant", "side", "bytes", "median_mbps", "min_mbps", "max_mbps",
                    "x_c_limit", "rss_x", "page_offset"])
        for r in rows:
            w.writerow([r["lang"], r["variant"], r["side"], r["bytes"], f"{r['median_mbps']:.1f}",
                        f"{r['min_mbps']:.1f}", f"{r['max_mbps']:.1f}",
                        "" if r["x_c"] is None else f"{r['x_c']:.3f}", f"{r['rss_x']:.3f}", r["page_offset"]])


def chart(rows, out_dir):
    """Throughput by payload size, one line per language and variant; receive and send."""
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        say("bench: no gnuplot, no chart")
        return None
    series = {}
    for r in rows:
        if r["side"] in ("recv", "send") and r["bytes"] >= KiB:
            series.setdefault((r["side"], r["lang"], r["variant"]), []).append((r["bytes"], r["median_mbps"]))
        elif r["side"] == "rpc":  # requests/s by body size
            series.setdefault(("rpc", r["lang"], r["variant"]), []).append(
                (r["bytes"], r["median_mbps"] * 1e6 / r["bytes"]))
    datdir = tempfile.mkdtemp(prefix="fastsock-chart-")
    plots = {"recv": [], "send": [], "rpc": []}
    colors = {"c": "#444444", "python": "#1f77b4", "ruby": "#d62728", "lua": "#2ca02c"}
    for i, ((side, lang, v), pts) in enumerate(sorted(series.items())):
        path = os.path.join(datdir, f"{i}.dat")
        with open(path, "w") as f:
            for n, m in sorted(pts):
                f.write(f"{n / MiB} {m}\n")
        fast = "fastsock" in v
        dash = 1 if fast else 2
        width = 2.5 if fast else 1.2
        pt = len(plots[side]) % 13 + 1
        plots[side].append(f"'{path}' using 1:2 with linespoints lc rgb '{colors[lang]}' dt {dash} "
                           f"lw {width} pt {pt} ps 0.8 title '{lang} {v.replace('_', ' ')}'")
    png = os.path.join(out_dir, "throughput.png")
    script = [
        "set terminal pngcairo size 1600,1900 font 'sans,10'" if "pngcairo" in terminals(gnuplot)
        else "set terminal png size 1600,1900",
        f"set output '{png}'",
        "set multiplot layout 3,1",
        "set logscale xy", "set grid",
        "set xlabel 'payload (MiB)'", "set ylabel 'MB/s (median)'",
        "set key outside right top spacing 0.9",
        "set format x '%g'",
    ]
    for side, title in (("recv", "receive"), ("send", "send")):
        if plots[side]:
            script.append(f"set title '{title}: throughput by payload size (solid: fastsock)'")
            script.append("plot " + ", \\\n  ".join(plots[side]))
    if plots["rpc"]:
        script += ["set ylabel 'requests/s (median)'",
                   "set title 'request/response: an 8-byte length, then the body (solid: fastsock)'",
                   "plot " + ", \\\n  ".join(plots["rpc"])]
    script.append("unset multiplot")
    r = subprocess.run([gnuplot], input="\n".join(script) + "\n", text=True, capture_output=True)
    shutil.rmtree(datdir, ignore_errors=True)
    if r.returncode != 0:
        say("bench: gnuplot failed: " + r.stderr.strip())
        return None
    return png


def terminals(gnuplot):
    r = subprocess.run([gnuplot, "-e", "set terminal"], capture_output=True, text=True)
    return r.stdout + r.stderr


def report(results, syscalls, sizes, rounds, out, full):
    os.makedirs(out, exist_ok=True)
    rows = summarize(results)
    head = (f"fastsock benchmark, {'full' if full else 'quick'} run: median MB/s of {rounds} interleaved "
            f"rounds over loopback; (x C) = the median per-round ratio to the C limit of the same kind "
            f"(recv: recv(MSG_WAITALL) into a hot page-aligned buffer; send: send; sendfile: sendfile; "
            f"64-byte messages: recv of 64 bytes)")
    md = head + "\n" + table(rows, sizes, syscalls) + "\n\n### Targets (issues 6 and 18)\n\n" + targets(results, sizes, syscalls) + "\n"
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)
    write_csv(rows, os.path.join(out, "results.csv"))
    png = chart(rows, out)
    print(md)
    print(f"written: {out}/results.md, results.csv" + (", throughput.png" if png else ""))


if __name__ == "__main__":
    main()
