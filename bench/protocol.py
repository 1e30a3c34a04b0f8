#!/usr/bin/env python3
"""fastsock's protocol benchmark: scatter/gather sends, socket to file,
a RESP client's replies, and splitting records, against each language's own
idioms and plain C (issue 17).

    bench/protocol.py [--full] [--build DIR] [--out DIR] [--rounds N] [--langs LIST] [--rows FILE]

Each language's script (bench/<lang>/protocol.*) starts its own loopback
server and prints one JSON line per measurement:

    {"lang", "bench", "route", "size", "round", "rate", "unit", ["rss_peak_mb", "rss_base_mb"]}

rate is MB/s or operations per second, higher is better. The C program
(build/bench/fastsock-bench-protocol) gives the plain splice loop that
recvfile is held against. This driver prints the medians and the issue's
targets as the median of per-round ratios (a language's routes run in the
same rounds; the C limit, in another process, is compared by medians).
Quick mode (run by bench/run.py) uses smaller sizes and fewer rounds;
--full writes bench/results/protocol.md.
"""
import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from eventloop import env_for, human, write_report  # noqa: E402  (the same environment, sizes, files)

MiB = 1 << 20
SCRIPTS = {
    "python": lambda: [sys.executable, os.path.join(HERE, "python/protocol.py")],
    "ruby": lambda: [shutil.which("ruby") or "ruby", os.path.join(HERE, "ruby/protocol.rb")],
    "lua": lambda: [shutil.which("lua5.4") or "lua5.4", os.path.join(HERE, "lua/protocol.lua")],
}

# (bench, what, measured route, reference routes (best of), bar); a
# reference "c:ROUTE" is C's median. Every language is held to each target.
TARGETS = [
    ("sendallv_3", "sendallv / one sendall of the same bytes pre-joined", "sendallv", ["sendall_prejoined"], 0.95),
    ("sendallv_3", "sendallv / join + sendall", "sendallv", ["join_then_sendall"], 1.3),
    ("sendallv_100x64", "sendallv of 100 x 64 B / a sendall per piece", "sendallv", ["sendall_per_piece"], 2.0),
    ("recvfile_shm", "recvfile to /dev/shm / the best stdlib route", "recvfile", ["stdlib"], 1.5),
    ("recvfile_shm", "recvfile to /dev/shm / a C splice loop", "recvfile", ["c:c_splice_loop"], 0.9),
    ("recvfile_disk", "recvfile to /var/tmp (no fsync) / the best stdlib route", "recvfile", ["stdlib"], 1.5),
    ("recvfile_disk", "recvfile to /var/tmp / a C splice loop", "recvfile", ["c:c_splice_loop"], 0.9),
    ("resp_1k", "RESP GET 1 KiB: Reader / the best buffered stdlib client", "reader", ["stdlib"], 1.0),
    # cost <= 1.1x is a rate >= 1 / 1.1
    ("resp_1m", "RESP GET 1 MiB: Reader / bare recvall of the body + one small read", "reader",
     ["bare_recvall"], 0.91),
    ("split_4k", "split 4 KiB records: non-copying / the language's copying split", "fastsock_split",
     ["stdlib_split"], 1.5),
    ("split_70", "split 70-byte records: the fastest non-copying form / the copying split", "best:fastsock",
     ["stdlib_split"], 1.0),
]
RSS_TARGETS = [  # (bench, route prefix, bar as a fraction of size or MiB)
    ("recvfile_shm", "recvfile", "1 MiB", lambda size: MiB),
    ("split_4k", "fastsock_split", "10 % of the buffer", lambda size: size // 10),
]


def start_server(build):
    proc = subprocess.Popen([os.path.join(build, "tests/fastsock-loopback-server")],
                            stdout=subprocess.PIPE, text=True)
    port = int(re.match(r"PORT (\d+)", proc.stdout.readline()).group(1))
    return proc, port


def run_c(build, full, rounds):
    os.sync()
    exe = os.path.join(build, "bench/fastsock-bench-protocol")
    if not os.path.exists(exe):
        print(f"protocol: {exe} is not built", file=sys.stderr)
        return [], 1
    server, port = start_server(build)
    rows, rc = [], 0
    try:
        for d in ("/dev/shm", "/var/tmp"):
            size = 256 * MiB if full else 64 * MiB
            p = subprocess.run([exe, "--port", str(port), "--size", str(size), "--rounds", str(rounds),
                                "--dir", d], stdout=subprocess.PIPE, text=True)
            rows += [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
            rc |= p.returncode
    finally:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"quit\n")
        server.wait(timeout=30)
    return rows, rc


def run_lang(lang, build, full, rounds, env):
    # The runs before this one left gigabytes of dirty pages under /var/tmp:
    # written back now, so that their writeback does not throttle this
    # language's file writes (a Python run after C's measured 650-1,000 MB/s
    # to disk where the others saw 3,500).
    os.sync()
    server = os.path.join(build, "tests/fastsock-loopback-server")
    argv = SCRIPTS[lang]() + ["--server", server, "--rounds", str(rounds)] + ([] if full else ["--quick"])
    print(f"protocol: {lang}", file=sys.stderr, flush=True)
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, text=True)
    rows = [json.loads(l) for l in proc.stdout.splitlines() if l.strip().startswith("{")]
    if proc.returncode != 0:
        print(f"protocol: {lang} exited with {proc.returncode} after {len(rows)} measurements", file=sys.stderr)
    return rows, proc.returncode


def rss_beyond(r):
    return (r["rss_peak_mb"] - r.get("rss_base_mb", 0)) * MiB


def table(rows):
    by = {}
    for r in rows:
        by.setdefault((r["lang"], r["bench"], r["route"], r["size"], r["unit"]), []).append(r)
    out = ["| lang | bench | route | size | rate median (min-max) | unit | peak RSS beyond the base |",
           "|---|---|---|---:|---:|---|---:|"]
    for key in sorted(by):
        lang, bench, route, size, unit = key
        rs = by[key]
        v = [r["rate"] for r in rs]
        rss = [rss_beyond(r) for r in rs if r.get("rss_peak_mb") is not None]
        rss_s = f"{max(rss) / MiB:.1f} MiB" if rss else ""
        out.append(f"| {lang} | {bench} | {route} | {human(size)} | {statistics.median(v):,.1f} "
                   f"({min(v):,.1f}-{max(v):,.1f}) | {unit} | {rss_s} |")
    return "\n".join(out)


def targets(rows):
    out = ["| lang | target | ratio | bar | |", "|---|---|---:|---:|---|"]
    langs = sorted({r["lang"] for r in rows} - {"c"})
    for lang in langs:
        mine = [r for r in rows if r["lang"] == lang]
        for bench, what, route, refs, bar in TARGETS:
            b = [r for r in mine if r["bench"] == bench]
            if not b:
                continue
            if route.startswith("best:"):
                names = {r["route"] for r in b if r["route"].startswith(route[5:])}
            else:
                names = {route}
            measured = {}
            for r in b:
                if r["route"] in names:
                    measured[r["round"]] = max(measured.get(r["round"], 0), r["rate"])
            ratios = []
            for rnd, v in measured.items():
                best = 0
                for ref in refs:
                    if ref.startswith("c:"):
                        cs = [r["rate"] for r in rows if r["lang"] == "c" and r["bench"] == bench
                              and r["route"] == ref[2:]]
                        best = max(best, statistics.median(cs) if cs else 0)
                        v_cmp = statistics.median(measured.values())
                    else:
                        best = max(best, max((r["rate"] for r in b if r["route"] == ref and r["round"] == rnd),
                                             default=0))
                        v_cmp = v
                if best > 0:
                    ratios.append(v_cmp / best)
            if ratios:
                ratio = statistics.median(ratios)
                out.append(f"| {lang} | {what} | {ratio:.2f} | >= {bar} | {'meets' if ratio >= bar else 'falls short'} |")
        for bench, route, what, limit in RSS_TARGETS:
            rs = [r for r in mine if r["bench"] == bench and r["route"] == route and r.get("rss_peak_mb") is not None]
            if rs:
                worst = max(rss_beyond(r) for r in rs)
                ok = worst <= limit(rs[0]["size"])
                out.append(f"| {lang} | {bench} {route}: peak RSS beyond the base | {worst / MiB:.1f} MiB | "
                           f"<= {what} | {'meets' if ok else 'falls short'} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="full sizes, 5 rounds, bench/results/protocol.md")
    ap.add_argument("--build", default=os.path.join(os.path.dirname(HERE), "build"))
    ap.add_argument("--out")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--langs", default="c,python,ruby,lua")
    ap.add_argument("--rows", help="render the tables from an earlier run's protocol.jsonl, run nothing")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    rounds = a.rounds or (5 if a.full else 3)
    out = a.out or (os.path.join(HERE, "results") if a.full else os.path.join(build, "bench-results"))
    env = env_for(build)
    langs = [l for l in a.langs.split(",") if l]
    rows, failed = [], []
    if a.rows:
        with open(a.rows) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        langs = []
    if "c" in langs:
        got, rc = run_c(build, a.full, rounds)
        rows += got
        if rc:
            failed.append("c")
    for lang in [l for l in langs if l in SCRIPTS]:
        got, rc = run_lang(lang, build, a.full, rounds, env)
        rows += got
        if rc:
            failed.append(lang)
    md = (f"fastsock protocol benchmark ({'full' if a.full else 'quick'} run, {rounds} rounds): "
          f"median rates, higher is better\n\n" + table(rows) + "\n\n### Targets (issue 17)\n\n"
          + targets(rows) + "\n")
    write_report(out, "protocol", md, rows, failed)


if __name__ == "__main__":
    main()
