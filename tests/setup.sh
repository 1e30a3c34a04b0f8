#!/usr/bin/env bash
# Installs what the build needs (Debian 12) when it is missing, then
# configures and builds everything into build/ (or $FASTSOCK_BUILD_DIR).
# Extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake make gcc swig python3-dev lua5.4 liblua5.4-dev lua-socket ruby ruby-dev
          valgrind gnuplot-nox strace clang libclang-rt-14-dev
          # event loops: uvloop for Debian's python3, ruby-async, cqueues
          # (lua-posix would give an unbuffered Lua baseline, but Debian 12's
          # 33.4.0 ships modules for Lua 5.1-5.3 only)
          python3-uvloop ruby-async ruby-async-io lua-cqueues
          # packaging: wheel and sdist offline, the gem, the rock, the docs
          python3-build python3-setuptools python3-wheel python3-venv python3-pip
          luarocks yard lua-ldoc)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

build="${FASTSOCK_BUILD_DIR:-build}"
# The python3 first on PATH is the one users import from (a pyenv shim
# here): pin its real binary, or CMake may pick another.
python=$(python3 -c 'import sys; print(sys.executable)')
cmake -S . -B "$build" -DPython3_EXECUTABLE="$python" "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
