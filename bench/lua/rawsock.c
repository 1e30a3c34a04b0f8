/*
 * The benchmark's native one-call route for Lua: recv(fd, n) and
 * send(fd, s), one system call each, as lua-posix's posix.sys.socket.recv
 * and send make them. Issue 18 names lua-posix as the baseline for
 * fastsock's small calls, but Debian 12 ships lua-posix for Lua 5.1-5.3
 * only, and LuaSocket's receive(n) serves from an 8 KiB buffer of its own,
 * so a call per message is not what it measures. LuaSocket makes every
 * socket O_NONBLOCK, so a call that finds nothing to move waits in poll(2)
 * and tries again, as a blocking socket would wait inside the call.
 * Bench-only: it checks nothing that the measurement does not need.
 */
#include <lauxlib.h>
#include <lua.h>

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

/* After EAGAIN: 1 once fd is ready for `events`, 0 on another error. */
static int waited(int fd, short events)
{
    if (errno != EAGAIN && errno != EWOULDBLOCK)
        return 0;
    struct pollfd p = { .fd = fd, .events = events };
    return poll(&p, 1, -1) >= 0;
}

static int fail(lua_State *L)
{
    int err = errno;
    lua_pushnil(L);
    lua_pushstring(L, strerror(err));
    lua_pushinteger(L, err);
    return 3;
}

/* recv(fd, n): a string of what one recv(2) returned, at most n bytes. */
static int raw_recv(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    size_t n = (size_t)luaL_checkinteger(L, 2);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, n);
    ssize_t got;
    while ((got = recv(fd, p, n, 0)) < 0 && waited(fd, POLLIN))
        ;
    if (got < 0)
        return fail(L);
    luaL_pushresultsize(&b, (size_t)got);
    return 1;
}

/* send(fd, s): the bytes one send(2) took. */
static int raw_send(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    ssize_t sent;
    while ((sent = send(fd, s, len, MSG_NOSIGNAL)) < 0 && waited(fd, POLLOUT))
        ;
    if (sent < 0)
        return fail(L);
    lua_pushinteger(L, sent);
    return 1;
}

int luaopen_fastsock_bench_rawsock(lua_State *L)
{
    static const luaL_Reg fns[] = { { "recv", raw_recv }, { "send", raw_send }, { NULL, NULL } };
    luaL_newlib(L, fns);
    return 1;
}
