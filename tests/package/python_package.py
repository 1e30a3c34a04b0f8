#!/usr/bin/env python3
"""Builds the Python package offline, installs it three ways, runs the conformance runner.

For one interpreter (--python): an sdist and a wheel are built without an
index (`python -m build --no-isolation` where the `build` package is there,
Debian's python3; otherwise `pip wheel --no-build-isolation` and the
backend's own build_sdist, as pip does for the pyenv Python), then each of
  pip install <wheel>
  pip install <sdist>                      (isolated build: requires = [])
  pip install --no-build-isolation <checkout>
goes into a fresh venv, which must import fastsock from its own
site-packages with the right __version__, carry the stubs, and pass the
whole conformance runner, run from outside the source tree with no
PYTHONPATH. Every pip call has --no-index: nothing may need the network.
The wheel's package, seen by a Python of another ABI, must say so.
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile

# The basics, and what the build asks of every test (portable build).
KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "FASTSOCK_PORTABLE_BUILD")


def run(cmd, **kw):
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, **kw)


def check(cmd, **kw):
    done = run(cmd, **kw)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}")
    return done


def wrong_python(py, package, env, tmp):
    """The installed package, seen by a Python of another ABI, says so.

    Simulated: a copy whose extension carries another interpreter's tag
    (as a 3.12 would see a 3.11 install), imported by this one."""
    copy = os.path.join(tmp, "other-abi")
    shutil.copytree(package, os.path.join(copy, "fastsock"))
    pkg = os.path.join(copy, "fastsock")
    for name in os.listdir(pkg):
        if name.startswith("_fastsock.") and name.endswith(".so"):
            os.rename(os.path.join(pkg, name), os.path.join(pkg, "_fastsock.cpython-399-x86_64-linux-gnu.so"))
    out = run([py, "-B", "-E", "-s", "-c", f"import sys; sys.path.insert(0, {copy!r}); import fastsock"],
              env=env, cwd=tmp, capture_output=True, text=True)
    last = (out.stderr.strip().splitlines() or [""])[-1]
    print(f"another Python's import: {last}", flush=True)
    if out.returncode == 0 or not last.startswith("ImportError: fastsock was built for Python"):
        return ["wheel: an import by another Python does not say so"]
    return []


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--cases", required=True)
    ap.add_argument("--tests", required=True, help="tests/python")
    args = ap.parse_args()
    for name in ("source", "server", "cases", "tests"):
        setattr(args, name, os.path.abspath(getattr(args, name)))

    with open(os.path.join(args.source, "VERSION")) as f:
        version = f.readline().strip()
    env = {k: v for k, v in os.environ.items() if k in KEEP}
    env["PYTHONDONTWRITEBYTECODE"] = "1"   # no __pycache__ in the checkout
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INDEX"] = "1"
    env["PIP_CONFIG_FILE"] = os.devnull     # no find-links or index from the machine

    tmp = tempfile.mkdtemp(prefix="fastsock-pypkg-")
    try:
        dist = os.path.join(tmp, "dist")
        has_build = run([args.python, "-c", "import build.__main__"], env=env, cwd=tmp, capture_output=True).returncode == 0
        if has_build:
            check([args.python, "-m", "build", "--no-isolation", "--outdir", dist, args.source],
                  env=env, cwd=tmp, stdout=subprocess.DEVNULL)
        else:
            check([args.python, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps",
                   "--wheel-dir", dist, args.source], env=env, cwd=tmp, stdout=subprocess.DEVNULL)
            backend = os.path.join(args.source, "bindings", "python", "pep517")
            check([args.python, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                   "import fastsock_backend as b; print(b.build_sdist(sys.argv[2]))", backend, dist],
                  env=env, cwd=args.source, stdout=subprocess.DEVNULL)
        wheels = glob.glob(os.path.join(dist, f"fastsock-{version}-*.whl"))
        sdists = glob.glob(os.path.join(dist, f"fastsock-{version}.tar.gz"))
        if len(wheels) != 1 or len(sdists) != 1:
            raise SystemExit(f"expected one wheel and one sdist of {version} in {os.listdir(dist)}")

        failed = []
        for label, target, extra in (("wheel", wheels[0], []),
                                     ("sdist", sdists[0], []),
                                     ("checkout", args.source, ["--no-build-isolation"])):
            venv = os.path.join(tmp, f"venv-{label}")
            check([args.python, "-m", "venv", venv], env=env)
            py = os.path.join(venv, "bin", "python")
            check([py, "-m", "pip", "install", "-q", *extra, target], env=env, cwd=tmp,
                  stdout=subprocess.DEVNULL)
            site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_path('platlib'))"],
                                  env=env, capture_output=True, text=True, check=True).stdout.strip()
            probe = ("import os, fastsock; d = os.path.dirname(fastsock.__file__); "
                     "print(d); print(fastsock.__version__); "
                     "print(os.path.exists(os.path.join(d, 'py.typed')), "
                     "os.path.exists(os.path.join(d, '__init__.pyi')))")
            out = run([py, "-B", "-E", "-s", "-c", probe], env=env, cwd=tmp, capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                failed.append(f"{label}: import")
                continue
            where, got, typed = out.stdout.split("\n")[:3]
            print(f"{label}: fastsock {got} from {where}, py.typed and __init__.pyi: {typed}", flush=True)
            if not os.path.realpath(where).startswith(os.path.realpath(site) + os.sep):
                failed.append(f"{label}: imported {where}, not from {site}")
            if got != version:
                failed.append(f"{label}: __version__ {got!r}, VERSION says {version!r}")
            if typed != "True True":
                failed.append(f"{label}: stubs missing (py.typed, __init__.pyi: {typed})")
            if label == "wheel":
                failed += wrong_python(py, where, env, tmp)
            runner = [py, "-B", "-E", "-s", os.path.join(args.tests, "run_cases.py"),
                      "--server", args.server, "--cases", args.cases]
            if run(runner, env=env, cwd=tmp).returncode != 0:
                failed.append(f"{label}: conformance")
        if failed:
            print("FAILED: " + "; ".join(failed), file=sys.stderr)
            return 1
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
