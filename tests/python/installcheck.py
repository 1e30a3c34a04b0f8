#!/usr/bin/env python3
"""Runs the Python tests against what `cmake --install` installs.

Installs the python component into a temporary prefix, then runs the
conformance runner and the unittest suite in a clean environment whose only
path to fastsock is <prefix>/<sitedir>, from a directory outside the trees.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

# What a clean environment keeps: the basics, and what the build asks of
# every test (portable build, sanitizer runtime).
KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "FASTSOCK_PORTABLE_BUILD", "LD_PRELOAD", "ASAN_OPTIONS")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cmake", required=True)
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--sitedir", required=True, help="the package dir, relative to the prefix")
    parser.add_argument("--server", required=True)
    parser.add_argument("--cases", required=True)
    parser.add_argument("--tests", required=True, help="the directory of the Python tests")
    args = parser.parse_args()

    prefix = tempfile.mkdtemp(prefix="fastsock-install-")
    try:
        subprocess.run([args.cmake, "--install", args.build_dir, "--prefix", prefix,
                        "--component", "python"], check=True)
        site = os.path.join(prefix, args.sitedir)
        env = {k: v for k, v in os.environ.items() if k in KEEP}
        env["PYTHONPATH"] = site
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        python = [sys.executable, "-s"]  # no user site-packages either

        where = subprocess.run(python + ["-c", "import fastsock; print(fastsock.__file__)"],
                               env=env, cwd=prefix, capture_output=True, text=True)
        if where.returncode != 0:
            print(where.stderr, file=sys.stderr)
            return 1
        loaded = os.path.realpath(where.stdout.strip())
        if not loaded.startswith(os.path.realpath(site) + os.sep):
            print(f"imported {loaded}, not the installed package under {site}", file=sys.stderr)
            return 1
        print(f"installed package: {os.path.dirname(loaded)}", flush=True)

        failed = 0
        for command in (
            [os.path.join(args.tests, "run_cases.py"), "--server", args.server, "--cases", args.cases],
            ["-m", "unittest", "discover", "-s", args.tests, "-p", "test_*.py"],
        ):
            print("$", " ".join(command), flush=True)
            failed |= subprocess.run(python + command, env=env, cwd=prefix).returncode != 0
        return 1 if failed else 0
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
