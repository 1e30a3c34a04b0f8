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

# (issue, what, lang, (loop, route) measured, (loop, route) compared with, bar, sizes)
# A ratio is the median over rounds of measured / compared in the same round.
# A bar of None only reports. "best:" compares with the best of several routes
# in that round.
TARGETS = []


def env_for(build):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(build, "bindings/python") + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["RUBYLIB"] = os.pathsep.join([os.path.join(ROOT, "bindings/ruby/lib"),
                                      os.path.join(build, "bindings/ruby/lib"), env.get("RUBYLIB", "")])
    env["LUA_CPATH"] = os.path.join(build, "bindings/lua/module/?.so") + ";;"
    env["LUA_PATH"] = os.path.join(ROOT, "bindings/lua/?.lua") + ";;"
    return env


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
        rss = [r.get("rss_peak_mb") for r in rs if r.get("rss_peak_mb") is not None]
        rss_x = f"{statistics.median(rss) * MiB / size:.2f}" if rss and size >= MiB else ""
        out.append(f"| {lang} | {loop} | {route} | {human(size)} | {statistics.median(mb):,.0f} "
                   f"({min(mb):,.0f}-{max(mb):,.0f}) | {max(stalls):.1f} | {statistics.median(stalls):.1f} | {rss_x} |")
    return "\n".join(out)


def per_round(rows, lang, loop, route, size):
    return {r["round"]: r["mbps"] for r in rows
            if r["lang"] == lang and r["loop"] == loop and r["route"] == route and r["size"] == size}


def targets(rows):
    out = ["| issue | target | size | ratio (median per round) | bar | |", "|---|---|---:|---:|---:|---|"]
    for issue, what, lang, (loop, route), ref, bar, sizes in TARGETS:
        for size in sizes:
            a = per_round(rows, lang, loop, route, size)
            refs = ref if isinstance(ref, list) else [ref]
            ratios = []
            for rnd, v in a.items():
                best = max((per_round(rows, lang, l, rt, size).get(rnd, 0) for l, rt in refs), default=0)
                if best > 0:
                    ratios.append(v / best)
            if not ratios:
                continue
            ratio = statistics.median(ratios)
            mark = "" if bar is None else ("meets" if ratio >= bar else "falls short")
            out.append(f"| {issue} | {what} | {human(size)} | {ratio:.2f} | {'' if bar is None else f'>= {bar}'} | {mark} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="1, 64 and 256 MiB, more rounds, bench/results/eventloop.md")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", help="where eventloop.md and eventloop.jsonl go (full: bench/results)")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--sizes", help="comma-separated byte counts")
    ap.add_argument("--langs", default="python,ruby,lua")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    sizes = ([int(s) for s in a.sizes.split(",")] if a.sizes
             else [MiB, 64 * MiB, 256 * MiB] if a.full else [64 * MiB])
    rounds = a.rounds or (5 if a.full else 3)
    out = a.out or (os.path.join(HERE, "results") if a.full else os.path.join(build, "bench-results"))
    env = env_for(build)
    rows, failed = [], []
    for lang in [l for l in a.langs.split(",") if l]:
        got, rc = run_lang(lang, build, sizes, rounds, env)
        rows += got
        if rc != 0:
            failed.append(lang)
    md = (f"fastsock event-loop benchmark ({'full' if a.full else 'quick'} run, {rounds} rounds): "
          f"median MB/s, the heartbeat's worst stall, peak RSS over the payload\n\n"
          + table(rows) + "\n\n### Targets (issues 13, 14, 15)\n\n" + targets(rows) + "\n")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "eventloop.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out, "eventloop.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(md)
    print(f"written: {out}/eventloop.md, eventloop.jsonl")
    if failed:
        raise SystemExit(f"eventloop: failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
