#!/usr/bin/env python3
"""fastsock's event-loop benchmark: every route of every language inside its loops.

    bench/eventloop.py [--full] [--build DIR] [--out DIR] [--rounds N] [--sizes LIST] [--langs LIST]

Each language's script (bench/<lang>/eventloop.*) starts its own loopback
server, runs each of its routes (fastsock's awaitables, scheduler-aware calls
and progressive objects; the language's own idioms; the blocking calls) at
each size, in rounds whose order rotates, with a 1 ms heartbeat task in the
same loop, and prints one JSON line per transfer:

    {"lang", "loop", "route", "size", "round", "mbps", "stall_ms", "rss_peak_mb"}

stall_ms is the heartbeat's worst lateness during the transfer (how long the
loop was frozen), rss_peak_mb the process's peak RSS during it. This driver
runs the scripts one after the other (the languages' routes are compared only
with routes of the same language and loop, in the same round), and prints the
medians, the worst stall over all rounds, and the issues' targets as median
per-round ratios. Quick mode (run by bench/run.py) is one size, 64 MiB;
--full adds 1 MiB and 256 MiB and writes bench/results/eventloop.md.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MiB = 1 << 20

SCRIPTS = {
    "python": lambda: [sys.executable, os.path.join(HERE, "python/eventloop.py")],
    "ruby": lambda: [shutil.which("ruby") or "ruby", os.path.join(HERE, "ruby/eventloop.rb")],
    "lua": lambda: [shutil.which("lua5.4") or "lua5.4", os.path.join(HERE, "lua/eventloop.lua")],
}

# The issues' targets. A "ratio" target is the median over rounds of
# measured MB/s / reference MB/s in the same round; a reference given as a
# list is the best of those routes in that round. A route is (loop, route)
# at every size the run measured, or (loop, route, size) at that size only
# (the concurrent routes carry their own sizes). A "stall" target is the
# worst heartbeat stall over every round and size of the routes named; an
# "rss" target the largest (peak - base RSS) / payload.
CONN = 16 * MiB
PY_IDIOMS = ["streamreader_readexactly", "sock_recv_into_loop", "buffered_protocol"]
PY_AIO = ["fastsock_aio_recvall", "fastsock_aio_recvall_into", "fastsock_aio_sendall",
          "fastsock_aio_sendfile", "fastsock_aio_recvall_1conn"]
RB_CALLS = ["fastsock_recvall", "fastsock_recvall_into", "fastsock_sendall", "fastsock_sendfile"]


def _python_targets():
    t = []
    for loop in ("asyncio", "uvloop"):
        file_ref = "sock_sendfile" if loop == "asyncio" else "sock_sendall_file_chunks"
        t += [
            ("ratio", 13, f"aio recvall / blocking recvall in the coroutine ({loop})", "python",
             (loop, "fastsock_aio_recvall"), (loop, "blocking_recvall_in_coroutine"), 0.95),
            ("ratio", 13, f"aio recvall / best {loop} idiom", "python",
             (loop, "fastsock_aio_recvall"), [(loop, r) for r in PY_IDIOMS], 1.15),
            ("stall", 13, f"worst stall, fastsock awaitables ({loop}), ms", "python",
             [(loop, r) for r in PY_AIO], 5.0),
            ("rss", 13, f"peak RSS of aio recvall / payload ({loop})", "python",
             (loop, "fastsock_aio_recvall"), 1.05),
            ("ratio", 13, f"aio sendall / blocking sendall ({loop})", "python",
             (loop, "fastsock_aio_sendall"), (loop, "blocking_sendall_in_coroutine"), 0.95),
            ("ratio", 13, f"aio sendall / loop.sock_sendall ({loop})", "python",
             (loop, "fastsock_aio_sendall"), (loop, "sock_sendall"), 1.0),
            ("ratio", 13, f"aio sendfile / blocking sendfile ({loop})", "python",
             (loop, "fastsock_aio_sendfile"), (loop, "blocking_sendfile_in_coroutine"), 0.95),
            ("ratio", 13, f"aio sendfile / {file_ref} ({loop})", "python",
             (loop, "fastsock_aio_sendfile"), (loop, file_ref), 1.0),
            ("ratio", 13, f"64 connections x 16 MiB, aggregate / one connection ({loop})", "python",
             (loop, "fastsock_aio_recvall_64conn", CONN), (loop, "fastsock_aio_recvall_1conn", CONN), 0.9),
            ("stall", 13, f"worst stall, 64 connections ({loop}), ms", "python",
             [(loop, "fastsock_aio_recvall_64conn", CONN)], 10.0),
        ]
    # Per-message cost <= 1.2x is a throughput ratio >= 1 / 1.2.
    t.append(("ratio", 13, "64-byte messages: Receiver(buffer=) / sock.recv_into, selectors loop", "python",
              ("selectors", "receiver_into_64", 64), ("selectors", "sock_recv_into_64", 64), 0.83))
    return t


def _ruby_targets():
    a = "ruby-async"
    t = [("ratio", 14, "recvall under ruby-async / in a thread", "ruby",
          (a, "fastsock_recvall"), ("thread", "fastsock_recvall"), 0.95),
         ("ratio", 14, "recvall / IO#read(n) under ruby-async", "ruby",
          (a, "fastsock_recvall"), (a, "io_read"), 1.5)]
    for r in RB_CALLS[1:]:
        t.append(("ratio", 14, f"{r[9:]} under ruby-async / in a thread", "ruby", (a, r), ("thread", r), 0.95))
    t += [("stall", 14, "worst stall, fastsock calls under ruby-async, ms", "ruby",
           [(a, r) for r in RB_CALLS], 5.0),
          ("ratio", 14, "64 fibers x 16 MiB, aggregate / one fiber", "ruby",
           (a, "fastsock_recvall_64fibers", 64 * CONN), (a, "fastsock_recvall_1fiber", CONN), 0.9),
          ("stall", 14, "worst stall, 64 fibers, ms", "ruby",
           [(a, "fastsock_recvall_64fibers", 64 * CONN)], None),
          ("rss", 14, "peak RSS of recvall / payload (ruby-async)", "ruby", (a, "fastsock_recvall"), 1.05)]
    return t


def _lua_targets():
    c = "cqueues"
    t = [("ratio", 15, "recvall_into under cqueues / outside a scheduler", "lua",
          (c, "fastsock_recvall_into"), ("none", "fastsock_recvall_into"), 0.95),
         ("ratio", 15, "recvall (a string) / cqueues socket:read(n)", "lua",
          (c, "fastsock_recvall"), (c, "cqueues_read"), 2.0),
         ("ratio", 15, "sendall under cqueues / outside", "lua",
          (c, "fastsock_sendall"), ("none", "fastsock_sendall"), None),
         ("ratio", 15, "sendfile under cqueues / outside", "lua",
          (c, "fastsock_sendfile"), ("none", "fastsock_sendfile"), None),
         ("stall", 15, "worst stall, recvall_into, sendall and sendfile under cqueues, ms", "lua",
          [(c, r) for r in ("fastsock_recvall_into", "fastsock_sendall", "fastsock_sendfile")], 5.0),
         ("stall", 15, "worst stall, recvall under cqueues (the final copy into the string), ms", "lua",
          [(c, "fastsock_recvall")], None)]
    for r in ("fastsock_recvall", "fastsock_recvall_into"):
        t.append(("ratio", 15, f"64 coroutines x 16 MiB, {r[9:]}: aggregate / one coroutine", "lua",
                  (c, f"{r}_64coroutines", 64 * CONN), (c, f"{r}_1coroutine", CONN), 0.9))
    return t


# What the kernel gives 64 connections against one on this machine, with
# nothing but recv in an epoll loop: the bar the languages' aggregates stand
# beside (bench/c/concurrent_c.c).
C_TARGETS = [("ratio", "13-15", "C epoll loop: 64 connections x 16 MiB, aggregate / one connection", "c",
              ("epoll", "recv_64conn", CONN), ("epoll", "recv_1conn", CONN), None)]

TARGETS = _python_targets() + _ruby_targets() + _lua_targets() + C_TARGETS


def env_for(build):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(build, "bindings/python") + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["RUBYLIB"] = os.pathsep.join([os.path.join(ROOT, "bindings/ruby/lib"),
                                      os.path.join(build, "bindings/ruby/lib"), env.get("RUBYLIB", "")])
    env["LUA_CPATH"] = os.path.join(build, "bindings/lua/module/?.so") + ";;"
    env["LUA_PATH"] = os.path.join(ROOT, "bindings/lua/?.lua") + ";;"
    return env


def run_c(build, rounds):
    """The C reference of the concurrent routes, against a server of its own."""
    exe = os.path.join(build, "bench/fastsock-bench-concurrent")
    server = subprocess.Popen([os.path.join(build, "tests/fastsock-loopback-server")],
                              stdout=subprocess.PIPE, text=True)
    port = server.stdout.readline().split()[-1]
    try:
        proc = subprocess.run([exe, "--port", port, "--rounds", str(rounds)], stdout=subprocess.PIPE, text=True)
    finally:
        with socket.create_connection(("127.0.0.1", int(port))) as s:
            s.sendall(b"quit\n")
        server.wait(timeout=30)
    return [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")], proc.returncode


def run_lang(lang, build, sizes, rounds, env):
    server = os.path.join(build, "tests/fastsock-loopback-server")
    argv = SCRIPTS[lang]() + ["--server", server, "--sizes", ",".join(map(str, sizes)),
                              "--rounds", str(rounds)]
    print(f"eventloop: {lang}: {' '.join(argv[1:2])}", file=sys.stderr, flush=True)
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, text=True)
    rows = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
    if proc.returncode != 0:
        print(f"eventloop: {lang} exited with {proc.returncode} after {len(rows)} measurements",
              file=sys.stderr)
    return rows, proc.returncode


def human(n):
    return f"{n // MiB} MiB" if n >= MiB else f"{n // 1024} KiB" if n >= 1024 else f"{n} B"


def group(rows):
    by = {}
    for r in rows:
        by.setdefault((r["lang"], r["loop"], r["route"], r["size"]), []).append(r)
    return by


def table(rows):
    by = group(rows)
    out = ["| lang | loop | route | size | MB/s median (min-max) | worst stall ms | median stall ms | peak RSS / payload |",
           "|---|---|---|---:|---:|---:|---:|---:|"]
    for key in sorted(by, key=lambda k: (k[0], k[3], k[1], k[2])):
        lang, loop, route, size = key
        rs = by[key]
        mb = [r["mbps"] for r in rs]
        stalls = [r.get("stall_ms", 0) or 0 for r in rs]
        rss = [rss_over_payload(r) for r in rs if r.get("rss_peak_mb") is not None]
        rss_x = f"{statistics.median(rss):.2f}" if rss and size >= MiB else ""
        out.append(f"| {lang} | {loop} | {route} | {human(size)} | {statistics.median(mb):,.0f} "
                   f"({min(mb):,.0f}-{max(mb):,.0f}) | {max(stalls):.1f} | {statistics.median(stalls):.1f} | {rss_x} |")
    return "\n".join(out)


def rss_over_payload(r):
    """What the transfer added to the process's RSS, over the payload."""
    return (r["rss_peak_mb"] - r.get("rss_base_mb", 0)) * MiB / (r["size"] * r.get("conns", 1))


def matching(rows, lang, spec, size=None):
    """The rows of (loop, route) at size, or of (loop, route, size)."""
    loop, route = spec[0], spec[1]
    size = spec[2] if len(spec) > 2 else size
    return [r for r in rows if r["lang"] == lang and r["loop"] == loop and r["route"] == route
            and (size is None or r["size"] == size)]


def per_round(rows, lang, spec, size):
    return {r["round"]: r["mbps"] for r in matching(rows, lang, spec, size)}


def targets(rows):
    out = ["| issue | lang | target | size | measured | bar | |", "|---|---|---|---:|---:|---:|---|"]
    sizes = sorted({r["size"] for r in rows if r["size"] >= MiB})

    for kind, issue, what, lang, *spec in TARGETS:
        def line(issue, what, size, value, bar, fmt, meets):
            mark = "" if bar is None else ("meets" if meets else "falls short")
            out.append(f"| {issue} | {lang} | {what} | {size} | {fmt.format(value)} | "
                       f"{'' if bar is None else bar} | {mark} |")

        if kind == "ratio":
            measured, ref, bar = spec
            refs = ref if isinstance(ref, list) else [ref]
            for size in ([measured[2]] if len(measured) > 2 else sizes):
                ratios = []
                for rnd, v in per_round(rows, lang, measured, size).items():
                    best = max((per_round(rows, lang, r, size).get(rnd, 0) for r in refs), default=0)
                    if best > 0:
                        ratios.append(v / best)
                if ratios:
                    ratio = statistics.median(ratios)
                    line(issue, what, human(size), ratio, None if bar is None else f">= {bar}", "{:.3f}",
                         bar is not None and ratio >= bar)
        elif kind == "stall":
            specs, bar = spec
            got = [r.get("stall_ms", 0) or 0 for s in specs for r in matching(rows, lang, s)]
            if got:
                line(issue, what, "all", max(got), None if bar is None else f"<= {bar}", "{:.1f}",
                     bar is not None and max(got) <= bar)
        else:  # rss
            measured, bar = spec
            mine = [r for r in matching(rows, lang, measured) if r.get("rss_peak_mb") is not None]
            top = max((r["size"] for r in mine), default=0)
            got = [rss_over_payload(r) for r in mine if r["size"] == top]
            if got:
                line(issue, what, human(top), max(got), f"<= {bar}", "{:.2f}", max(got) <= bar)
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="1, 64 and 256 MiB, more rounds, bench/results/eventloop.md")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", help="where eventloop.md and eventloop.jsonl go (full: bench/results)")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--sizes", help="comma-separated byte counts")
    ap.add_argument("--langs", default="c,python,ruby,lua")
    ap.add_argument("--rows", help="render the tables from an earlier run's eventloop.jsonl, run nothing")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    sizes = ([int(s) for s in a.sizes.split(",")] if a.sizes
             else [MiB, 64 * MiB, 256 * MiB] if a.full else [64 * MiB])
    rounds = a.rounds or (5 if a.full else 3)
    out = a.out or (os.path.join(HERE, "results") if a.full else os.path.join(build, "bench-results"))
    env = env_for(build)
    rows, failed = [], []
    if a.rows:
        with open(a.rows) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        rounds = len({r["round"] for r in rows})
    if "c" in a.langs.split(",") and not a.rows:
        got, rc = run_c(build, rounds)
        rows += got
        if rc != 0:
            failed.append("c")
    for lang in [l for l in a.langs.split(",") if l in SCRIPTS and not a.rows]:
        got, rc = run_lang(lang, build, sizes, rounds, env)
        rows += got
        if rc != 0:
            failed.append(lang)
    md = (f"fastsock event-loop benchmark ({'full' if a.full else 'quick'} run, {rounds} rounds): "
          f"median MB/s, the heartbeat's worst stall, peak RSS over the payload\n\n"
          + table(rows) + "\n\n### Targets (issues 13, 14, 15)\n\n" + targets(rows) + "\n")
    write_report(out, "eventloop", md, rows, failed)


def write_report(out, name, md, rows, failed):
    """<out>/<name>.md and the rows as <name>.jsonl (--rows renders them again)."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out, f"{name}.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(md)
    print(f"written: {out}/{name}.md, {name}.jsonl")
    if failed:
        raise SystemExit(f"{name}: failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
