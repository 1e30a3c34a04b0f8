/*
 * Lua 5.4 entry file: `local fastsock = require "fastsock"`.
 *
 * recvall_cycles comes from the language-neutral interface as it stands. The
 * transfers, the buffer type and the progressive objects are hand-written
 * lua_CFunctions (bindings/lua/*.c, listed in fastsock_lua.h) registered
 * with %native, because SWIG 4.1's Lua module can't express them: it refuses multi-input typemaps
 * ("numinputs > 1 not supported by this target language module"), while a
 * LuaSocket send needs data, i and j together to clamp like string.sub and to
 * answer with the last index sent; results are LuaSocket's `nil, err,
 * partial` triples built from the ctl after the call; sendallv's pieces
 * are a table of strings, buffers and {data, i, j} ranges; the socket, file
 * and buffer arguments are foreign userdata that SWIG_ConvertPtr crashes on;
 * and under a coroutine scheduler the calls yield, through Lua 5.4's
 * continuations (lua_callk), which SWIG's wrappers don't use.
 * The functions call the same core entry points the interface declares.
 */
%module fastsock

%{
#include "fastsock_lua.h"
%}

/* With their parameter lists, these outrank the interface's plain %renames. */
%ignore fastsock_recvall(int, void *, size_t, size_t, size_t, fastsock_ctl *);
%ignore fastsock_recv(int, void *, size_t, size_t, size_t, int, fastsock_ctl *);
%ignore fastsock_send(int, const void *, size_t, size_t, size_t, fastsock_ctl *);
%ignore fastsock_sendall(int, const void *, size_t, size_t, size_t, fastsock_ctl *);
%ignore fastsock_sendfile(int, int, int64_t, size_t, fastsock_ctl *);

/* Counts are Lua integers, never floats. */
%typemap(out) unsigned long "lua_pushinteger(L, (lua_Integer)$1); SWIG_arg++;"

%include "fastsock.i"

%native(recvall) int fastsock_lua_recvall(lua_State *L);
%native(recvall_into) int fastsock_lua_recvall_into(lua_State *L);
%native(recv_into) int fastsock_lua_recv_into(lua_State *L);
%native(send) int fastsock_lua_send(lua_State *L);
%native(sendall) int fastsock_lua_sendall(lua_State *L);
%native(sendfile) int fastsock_lua_sendfile(lua_State *L);
%native(buffer) int fastsock_lua_buffer(lua_State *L);
%native(receiver) int fastsock_lua_receiver(lua_State *L);
%native(sender) int fastsock_lua_sender(lua_State *L);
%native(setwaiter) int fastsock_lua_setwaiter(lua_State *L);
%native(monotime) int fastsock_lua_monotime(lua_State *L);
%native(sendallv) int fastsock_lua_sendallv(lua_State *L);
%native(recvfile) int fastsock_lua_recvfile(lua_State *L);
%native(reader) int fastsock_lua_reader(lua_State *L);
%native(find) int fastsock_lua_find(lua_State *L);
%native(split) int fastsock_lua_split(lua_State *L);

%init %{
  fastsock_lua_open(L);
%}
