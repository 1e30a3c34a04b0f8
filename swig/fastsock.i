/*
 * The language-neutral interface: the core's operations as every module
 * exposes them. Each language's entry file (python.i, lua.i, ruby.i) sets
 * %module, defines the typemaps below for its own types, then %includes
 * this file. Nothing here knows a language.
 *
 * Typemaps an entry file defines, by parameter name:
 *   int SOCK                        a socket object or an fd -> the fd
 *   int FILE                        a file object or an fd -> the fd (sendfile)
 *   (void *BUF, size_t LEN)         a writable buffer, never copied
 *   (const void *DATA, size_t LEN)  a readable buffer, never copied
 *   size_t OFFSET, size_t COUNT     0-based offset and count into it
 *                                   (Lua maps its 1-based i, j onto these)
 *   fastsock_ctl *CTL               the timeout -> a ctl whose interrupt hook
 *                                   runs the language's signal handlers
 *   fastsock_result                 out: the count, or the language's error,
 *                                   carrying CTL->moved
 *
 * recvall, which returns a new string of the language's own type, allocates
 * in a language's way and so lives in each entry file.
 */
%{
#include "fastsock.h"

/* The one version (the top-level VERSION file), which every build passes. */
#ifndef FASTSOCK_VERSION
#error "compile with -DFASTSOCK_VERSION=\"X.Y.Z\", read from the top-level VERSION file"
#endif
%}

/* The version at run time: Python fastsock._fastsock.VERSION (the package's
 * __version__), Ruby Fastsock::Native::VERSION (Fastsock::VERSION), Lua
 * fastsock._VERSION in LuaSocket's form. SWIG refuses a constant named
 * _VERSION in Lua (it shadows the global), so Lua's is set at init, where the
 * module table is on top of the stack. */
#ifdef SWIGLUA
%init %{
  lua_pushliteral(L, "fastsock " FASTSOCK_VERSION);
  lua_setfield(L, -2, "_VERSION");
%}
#else
%constant const char *VERSION = FASTSOCK_VERSION;
#endif

%rename(recvall_into) fastsock_recvall;
%rename(recv_into) fastsock_recv;
%rename(send) fastsock_send;
%rename(sendall) fastsock_sendall;
%rename(sendfile) fastsock_sendfile;
%rename(recvall_cycles) fastsock_recvall_cycles;

fastsock_result fastsock_recvall(int SOCK, void *BUF, size_t LEN, size_t OFFSET,
                                 size_t COUNT, fastsock_ctl *CTL);
fastsock_result fastsock_recv(int SOCK, void *BUF, size_t LEN, size_t OFFSET,
                              size_t COUNT, int flags, fastsock_ctl *CTL);
fastsock_result fastsock_send(int SOCK, const void *DATA, size_t LEN,
                              size_t OFFSET, size_t COUNT, fastsock_ctl *CTL);
fastsock_result fastsock_sendall(int SOCK, const void *DATA, size_t LEN,
                                 size_t OFFSET, size_t COUNT, fastsock_ctl *CTL);
fastsock_result fastsock_sendfile(int SOCK, int FILE, int64_t OFFSET,
                                  size_t COUNT, fastsock_ctl *CTL);
unsigned long fastsock_recvall_cycles(void);
