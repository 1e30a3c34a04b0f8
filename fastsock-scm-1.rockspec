-- The Lua 5.4 rock, built from this checkout: `luarocks make` (or
-- `luarocks make --tree <dir>`). Needs gcc, liblua5.4-dev and swig.
--
-- Version "scm-1": the rock is the checkout as it is. The release number is
-- the top-level VERSION file, the one definition CMake, pyproject.toml's
-- backend and the gemspec read too; the build compiles it in, and the module
-- shows it as fastsock._VERSION ("fastsock X.Y.Z").
--
-- LuaSocket is optional, so it is not a dependency: fastsock takes integer
-- fds and anything with getfd() (LuaSocket's tcp objects among them) and
-- never requires "socket" itself.
--
-- The build is a "command" one because the builtin type takes a fixed list
-- of sources, while this one globs core/*.c and bindings/lua/*.c and runs
-- SWIG first. It builds into build-rock/ (gitignored) and installs fastsock.so.
rockspec_format = "3.0"
package = "fastsock"
version = "scm-1"
source = {
   -- No public repository yet: `luarocks make` builds the current directory.
   url = "file://."
}
description = {
   summary = "Bulk socket I/O with few copies and few system calls",
   detailed = [[
recvall, sendall, sendfile, a mutable byte buffer and event-loop
transfers done in C: one allocation per received payload, no slicing copies,
the kernel's sendfile where it can. Offsets and results follow
LuaSocket (1-based i, j; nil, err, partial).]],
   labels = { "socket", "network", "io" },
}
supported_platforms = { "linux" }
dependencies = {
   "lua >= 5.4, < 5.5",
}
build = {
   type = "command",
   build_command = [[
set -e
fail() { echo "fastsock: $1" >&2; exit 1; }
command -v $(CC) >/dev/null 2>&1 || fail "no C compiler ($(CC)): install Debian's gcc (apt install gcc)"
command -v swig >/dev/null 2>&1 || fail "SWIG not found: install Debian's swig (apt install swig)"
test -f "$(LUA_INCDIR)/lua.h" || fail "no lua.h in $(LUA_INCDIR): install Debian's liblua5.4-dev (apt install liblua5.4-dev)"
version=`sed -n '1s/^\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' VERSION`
test -n "$version" || fail "VERSION holds no X.Y.Z"
mkdir -p build-rock
echo "swig -lua swig/lua.i"
swig -lua -nomoduleglobal -Werror -Wall -Iswig -Icore -Ibindings/lua -o build-rock/fastsock_lua_wrap.c swig/lua.i
echo "$(CC) ... -o build-rock/fastsock.so"
$(CC) $(CFLAGS) -std=gnu11 -fvisibility=hidden -D_GNU_SOURCE "-DFASTSOCK_VERSION=\"$version\"" \
   -I"$(LUA_INCDIR)" -Icore -Ibindings/lua core/*.c bindings/lua/*.c build-rock/fastsock_lua_wrap.c \
   $(LIBFLAG) -lm -o build-rock/fastsock.so
]],
   install = {
      lib = { fastsock = "build-rock/fastsock.so" },
   },
   copy_directories = {},
}
