#!/usr/bin/env python3
"""Each package build, without SWIG or without a C compiler, stops with one clear line.

The three builds (the Python backend's build_wheel, the gem's extconf.rb,
the rockspec's build command through luarocks) run with a PATH that holds
every program of the real PATH but the missing tool(s). Each must fail,
print exactly one "fastsock: ..." line naming the Debian package to
install, and never reach the compiler (no compiler diagnostics). And the
Python sdist, which carries the generated wrapper, builds a wheel with no
SWIG on PATH.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

COMPILERS = re.compile(r"^(cc|c89|c99|gcc(-\d+)?|x86_64-linux-gnu-gcc(-\d+)?|clang(-\d+)?)$")
SWIG = re.compile(r"^swig(\d(\.\d+)?)?$")
# What a compiler or SWIG run would print: "x.c:12:3: error: ...", "gcc: fatal error".
COMPILER_NOISE = re.compile(r"\.[chi]:\d+(:\d+)?: (fatal )?(error|warning)|\bgcc\S*: (fatal )?error|In function")


def farm(dest, drop):
    """dest/bin: a symlink to every program on PATH whose name drop does not match."""
    bindir = os.path.join(dest, "bin")
    os.makedirs(bindir)
    for d in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            target = os.path.join(d, name)
            link = os.path.join(bindir, name)
            if drop.match(name) or os.path.lexists(link) or not os.access(target, os.X_OK):
                continue
            os.symlink(os.path.realpath(target), link)
    return bindir


def sdist_without_swig(python, src):
    """The sdist carries the SWIG output: a wheel builds from it with no swig on PATH."""
    backend = ("import sys; sys.path.insert(0, sys.argv[1]); import fastsock_backend as b; "
               "print(getattr(b, sys.argv[2])(sys.argv[3]))")
    with tempfile.TemporaryDirectory(prefix="fastsock-badinput-") as tmp:
        sdist = subprocess.run([python, "-B", "-c", backend, os.path.join(src, "bindings", "python", "pep517"),
                                "build_sdist", tmp], cwd=src, capture_output=True, text=True)
        if sdist.returncode != 0:
            print(sdist.stdout + sdist.stderr)
            return ["python sdist: not built"]
        name = sdist.stdout.strip().splitlines()[-1]
        shutil.unpack_archive(os.path.join(tmp, name), tmp)
        unpacked = os.path.join(tmp, name[:-len(".tar.gz")])
        env = dict(os.environ, PATH=farm(tmp, SWIG), PYTHONDONTWRITEBYTECODE="1")
        wheel = subprocess.run([python, "-B", "-c", backend, os.path.join(unpacked, "bindings", "python", "pep517"),
                                "build_wheel", tmp], cwd=unpacked, env=env, capture_output=True, text=True)
        ran_swig = any(line.startswith("swig ") for line in wheel.stdout.splitlines())
        ok = wheel.returncode == 0 and not ran_swig
        print(f"python sdist without swig: {'ok: ' + wheel.stdout.strip().splitlines()[-1] if ok else 'FAILED'}")
        if not ok:
            print(wheel.stdout[-2000:] + wheel.stderr[-2000:])
            return ["python sdist without swig"]
    return []


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True)
    ap.add_argument("--python")
    ap.add_argument("--ruby")
    ap.add_argument("--luarocks")
    ap.add_argument("--lua-incdir")
    args = ap.parse_args()
    src = os.path.abspath(args.source)

    builds = []
    if args.python:
        builds.append(("python", "swig|gcc", lambda tmp: (
            [args.python, "-B", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
             "import fastsock_backend as b; b.build_wheel(sys.argv[2])",
             os.path.join(src, "bindings", "python", "pep517"), tmp], src)))
    if args.ruby:
        builds.append(("ruby", "swig|gcc", lambda tmp: (
            [args.ruby, os.path.join(src, "bindings", "ruby", "ext", "fastsock", "extconf.rb")], tmp)))
    if args.luarocks:
        def lua(tmp):
            # A copy, as package_lua builds one: luarocks make builds in place.
            copy = os.path.join(tmp, "src")
            os.makedirs(copy)
            for name in os.listdir(src):
                if name.endswith(".rockspec") or name == "VERSION":
                    shutil.copy(os.path.join(src, name), copy)
            for d in ("core", "swig", os.path.join("bindings", "lua")):
                shutil.copytree(os.path.join(src, d), os.path.join(copy, d))
            return ([args.luarocks, "--lua-version", "5.4", "make", "--tree", os.path.join(tmp, "tree"),
                     f"LUA_INCDIR={args.lua_incdir}"], copy)
        builds.append(("lua", "swig|gcc", lua))

    failed = []
    for lang, _, command in builds:
        for missing, drop, package in (("swig", SWIG, "swig"), ("a C compiler", COMPILERS, "gcc")):
            with tempfile.TemporaryDirectory(prefix="fastsock-badinput-") as tmp:
                env = dict(os.environ, PATH=farm(tmp, drop), PYTHONDONTWRITEBYTECODE="1")
                env.pop("CC", None)
                cmd, cwd = command(tmp)
                done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
                out = done.stdout + done.stderr
                ours = [line.strip() for line in out.splitlines() if line.strip().startswith("fastsock:")]
                noise = [line for line in out.splitlines() if COMPILER_NOISE.search(line)]
                verdict = "ok"
                if done.returncode == 0:
                    verdict = "built anyway"
                elif len(ours) != 1 or f"apt install {package}" not in ours[0]:
                    verdict = f"no single 'fastsock: ... apt install {package}' line"
                elif noise:
                    verdict = f"compiler diagnostics: {noise[0]}"
                print(f"{lang} without {missing}: {verdict}: {ours[0] if ours else out[-300:]!r}")
                if verdict != "ok":
                    failed.append(f"{lang} without {missing}")
    if args.python:
        failed += sdist_without_swig(args.python, src)
    if failed:
        print("FAILED: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
