/*
 * The Lua module's hand-written functions, registered by swig/lua.i with
 * %native. They take LuaSocket objects, io handles and fastsock.buffer
 * userdata, which SWIG's pointer conversion must never see, and they return
 * LuaSocket's `nil, err, partial` triples, which SWIG's Lua typemaps can't
 * build (one input per typemap, one result).
 */
#ifndef FASTSOCK_LUA_H
#define FASTSOCK_LUA_H

#include <lua.h>

int fastsock_lua_recvall(lua_State *L);
int fastsock_lua_recvall_into(lua_State *L);
int fastsock_lua_recv_into(lua_State *L);
int fastsock_lua_send(lua_State *L);
int fastsock_lua_sendall(lua_State *L);
int fastsock_lua_sendfile(lua_State *L);
int fastsock_lua_buffer(lua_State *L);

/* Creates the buffer metatable; called once from luaopen_fastsock. */
void fastsock_lua_open(lua_State *L);

#endif
