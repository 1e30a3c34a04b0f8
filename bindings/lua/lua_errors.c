/*
 * Results in LuaSocket's conventions: a failure is `nil, message, partial`,
 * where the message is "closed" (the peer ended the stream), "timeout", or
 * the system's message. LuaSocket also says "closed" for a reset and a broken
 * pipe; here those keep the system's message ("Connection reset by peer",
 * "Broken pipe"), because recv_into's end of stream (nil, "closed", 0) must
 * not look like a reset. Bad arguments raise an error naming the argument.
 */
#include "fastsock_lua.h"

#include <lauxlib.h>

#include <string.h>

const char *fastsock_lua_error_message(fastsock_result rc)
{
    switch (fastsock_classify(rc)) {
    case FASTSOCK_KIND_CLOSED:
        return "closed";
    case FASTSOCK_KIND_TIMEOUT:
    case FASTSOCK_KIND_WOULDBLOCK: /* LuaSocket's word for both */
        return "timeout";
    default:
        return fastsock_strerror(rc);
    }
}

int fastsock_lua_fail(lua_State *L, fastsock_result rc, lua_Integer partial)
{
    lua_pushnil(L);
    lua_pushstring(L, fastsock_lua_error_message(rc));
    lua_pushinteger(L, partial);
    return 3;
}

int fastsock_lua_fail_with_top(lua_State *L, fastsock_result rc)
{
    lua_pushnil(L);
    lua_pushstring(L, fastsock_lua_error_message(rc));
    lua_rotate(L, -3, -1); /* partial, nil, err -> nil, err, partial */
    return 3;
}

void fastsock_lua_check_range(lua_State *L, fastsock_result rc, int start_arg, int count_arg)
{
    if (rc >= 0 || fastsock_classify(rc) != FASTSOCK_KIND_RANGE)
        return; /* (rc >= 0 first: this runs once per message) */
    if (rc == FASTSOCK_EOFFSET)
        luaL_argerror(L, start_arg, "index out of range for the buffer");
    luaL_argerror(L, count_arg, "count goes beyond the end of the buffer");
}

int fastsock_lua_nomem(lua_State *L, const char *fn, lua_Integer n, int err)
{
    return luaL_error(L, "fastsock.%s: cannot allocate %I bytes (%s)", fn, n, strerror(err));
}
