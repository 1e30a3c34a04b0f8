/*
 * The Lua module's hand-written C, registered by swig/lua.i with %native.
 * The functions take LuaSocket objects, io handles and fastsock.buffer
 * userdata, which SWIG's pointer conversion must never see; they return
 * LuaSocket's `nil, err, partial` triples, which SWIG's Lua typemaps can't
 * build (one input per typemap, one result); and under a coroutine
 * scheduler they yield, which needs Lua 5.4's continuations.
 *
 * Where things live:
 *   lua_args.c       socket, data, file, index, count and timeout arguments
 *   lua_errors.c     results: `nil, err, partial`, range errors named by argument
 *   lua_buffer.c     fastsock.buffer, and pinning it while a transfer uses it
 *   lua_calls.c      recvall, recvall_into, recv_into, send, sendall, sendfile
 *   lua_xfer.c       fastsock.receiver / fastsock.sender: progressive transfers
 *   lua_protocol.c   sendallv, recvfile, fastsock.reader, find and split
 *   lua_scheduler.c  waiting without blocking: cqueues, setwaiter, continuations
 */
#ifndef FASTSOCK_LUA_H
#define FASTSOCK_LUA_H

#include "fastsock.h"

#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- the module's functions (registered by swig/lua.i) -------------------- */

int fastsock_lua_recvall(lua_State *L);
int fastsock_lua_recvall_into(lua_State *L);
int fastsock_lua_recv_into(lua_State *L);
int fastsock_lua_send(lua_State *L);
int fastsock_lua_sendall(lua_State *L);
int fastsock_lua_sendfile(lua_State *L);
int fastsock_lua_buffer(lua_State *L);
int fastsock_lua_receiver(lua_State *L);
int fastsock_lua_sender(lua_State *L);
int fastsock_lua_setwaiter(lua_State *L);
int fastsock_lua_monotime(lua_State *L);
int fastsock_lua_sendallv(lua_State *L);
int fastsock_lua_recvfile(lua_State *L);
int fastsock_lua_reader(lua_State *L);
int fastsock_lua_find(lua_State *L);
int fastsock_lua_split(lua_State *L);

/* Creates the metatables; called once from luaopen_fastsock. */
void fastsock_lua_open(lua_State *L);
void fastsock_lua_open_buffer(lua_State *L);
void fastsock_lua_open_scheduler(lua_State *L);
void fastsock_lua_open_xfer(lua_State *L);
void fastsock_lua_open_protocol(lua_State *L);

/* ---- lua_buffer.c ----------------------------------------------------------- */

#define FASTSOCK_LUA_BUFFER_MT "fastsock.buffer"

/* BUFFER_HEAP: recvall's scratch only, never a user's buffer (its bytes are
 * not zeroed). */
enum fastsock_lua_buffer_kind { BUFFER_INLINE, BUFFER_MAPPED, BUFFER_HEAP };

typedef struct fastsock_lua_buf {
    unsigned char *data; /* NULL once released: nothing can free it twice */
    size_t len;
    enum fastsock_lua_buffer_kind kind;
    unsigned pins;       /* suspended transfers using it: it refuses to close */
} fastsock_lua_buf;

/* Pushes a new zeroed buffer; NULL (errno set) when the memory isn't there.
 * account: tell the collector about a mapping's size. */
fastsock_lua_buf *fastsock_lua_buffer_push(lua_State *L, size_t len, int account);
/* Pushes recvall's scratch (not zeroed): malloc'd below 32 MiB, else the
 * spare mapping an earlier one left (fastsock_lua_scratch_done) or a new
 * mapping; freed by the userdata's __gc if an error comes first. NULL
 * (errno set) when the memory isn't there. *fresh: never touched. */
fastsock_lua_buf *fastsock_lua_scratch_push(lua_State *L, size_t len, int *fresh);
void fastsock_lua_buffer_release(fastsock_lua_buf *b);
/* A scratch (at idx) is done with: freed, or kept for the next one. */
void fastsock_lua_scratch_done(lua_State *L, int idx);
/* The buffer at idx, open; an argument error otherwise. */
fastsock_lua_buf *fastsock_lua_check_buffer(lua_State *L, int idx);
/* NULL when idx is no buffer; an argument error when it is a closed one. */
fastsock_lua_buf *fastsock_lua_test_buffer(lua_State *L, int idx);

/* ---- lua_args.c --------------------------------------------------------------- */

/* The fd behind a socket argument; see the function for what it takes.
 * verify: fstat that it is an open socket (the single-shot calls leave that
 * to their one system call). */
int fastsock_lua_check_sock(lua_State *L, int idx, int receiving, int verify);
/* An argument error unless fd is an open socket. */
void fastsock_lua_verify_sock(lua_State *L, int idx, int fd);
/* After a call on an unverified fd that moved `moved` bytes: check_sock's
 * argument errors for EBADF and ENOTSOCK, when nothing moved. */
void fastsock_lua_raise_if_not_socket(lua_State *L, int idx, fastsock_result rc, size_t moved);
/* Bytes to send: a string (or number) or a buffer. */
const char *fastsock_lua_check_data(lua_State *L, int idx, size_t *len);
/* A count: absent or nil is FASTSOCK_ALL. */
size_t fastsock_lua_opt_count(lua_State *L, int idx);
/* A 1-based start index into a buffer being written, as a 0-based offset. */
size_t fastsock_lua_opt_start(lua_State *L, int idx);
/* Seconds -> ms: nil or negative -1 (no limit), 0 only if zero_allowed. */
int64_t fastsock_lua_check_timeout(lua_State *L, int idx, int zero_allowed);
/* string.sub's reading of a start and an end position. */
size_t fastsock_lua_start_pos(lua_Integer pos, size_t len);
size_t fastsock_lua_end_pos(lua_Integer pos, size_t len);
/* LuaSocket's reading of a range i, j of len bytes (negative from the end,
 * clamped to the bytes): returns the clamped i; an empty range is 0, 0. */
lua_Integer fastsock_lua_clip_range(size_t len, lua_Integer i, lua_Integer j, size_t *offset,
                                    size_t *count);
/* LuaSocket's send range (buffer_meth_send): i, j at idx, idx + 1, clamped
 * to len. Returns 0 when empty (*start is then what send answers + 1). */
int fastsock_lua_send_range(lua_State *L, int idx, size_t len, lua_Integer *start,
                            size_t *offset, size_t *count);
/* The metatable name of a class: meta's entries, the methods behind
 * __index, and a __metatable that hides them. */
void fastsock_lua_new_class(lua_State *L, const char *name, const luaL_Reg *meta,
                            const luaL_Reg *methods);
/* Nonzero when stdio holds read-ahead of f that a transfer on its fd would skip. */
int fastsock_lua_stdio_has_readahead(FILE *f);

/* A file argument of sendfile and sender: an io handle, an fd or a path. */
typedef struct fastsock_lua_file {
    int fd;
    FILE *stream;     /* an io handle's, else NULL */
    const char *path; /* a path's, opened into fd by fastsock_lua_file_open */
    int seekable;
} fastsock_lua_file;
/* Reads the argument (raising on a wrong one) and flushes a handle. Returns
 * 0, or a negative errno from the flush. */
int fastsock_lua_check_file(lua_State *L, int idx, fastsock_lua_file *f);
/* Opens a path argument; 0 or -errno. */
int fastsock_lua_file_open(fastsock_lua_file *f);
/* Leaves a seekable file's position at pos; closes what file_open opened. */
void fastsock_lua_file_done(fastsock_lua_file *f, int64_t pos);

/* ---- lua_errors.c ------------------------------------------------------------- */

/* "closed", "timeout" or the system's message. */
const char *fastsock_lua_error_message(fastsock_result rc);
/* Pushes nil, message, partial; returns 3. */
int fastsock_lua_fail(lua_State *L, fastsock_result rc, lua_Integer partial);
/* With the partial result on the top of the stack: nil, message, partial. */
int fastsock_lua_fail_with_top(lua_State *L, fastsock_result rc);
/* The core's range codes as argument errors naming the argument at fault. */
void fastsock_lua_check_range(lua_State *L, fastsock_result rc, int start_arg, int count_arg);
/* "fastsock.NAME: cannot allocate N bytes (why)". */
int fastsock_lua_nomem(lua_State *L, const char *fn, lua_Integer n, int err);

/* ---- lua_calls.c -------------------------------------------------------------- */

/* A blocking call's ctl, whose interrupt hook stops the transfer when the
 * interpreter asks for control (Ctrl-C in lua.c). */
typedef struct fastsock_lua_call {
    fastsock_ctl ctl;
    lua_State *L;
    lua_Hook hook;
    int hookmask;
} fastsock_lua_call;
void fastsock_lua_call_init(fastsock_lua_call *c, lua_State *L, int64_t timeout_ms);

/* Pushes a copy of p[0, n) as a string, with huge-page advice for large ones. */
void fastsock_lua_push_bytes(lua_State *L, const char *p, size_t n);

/* ---- lua_scheduler.c ---------------------------------------------------------- */

/* How a call that must wait waits. */
enum fastsock_lua_waitmode {
    WAIT_BLOCK = 0, /* poll(2) in C: no scheduler */
    WAIT_WAITER,    /* the function given to fastsock.setwaiter */
    WAIT_CQUEUES    /* yield to the cqueues controller running this coroutine */
};
enum fastsock_lua_waitmode fastsock_lua_waitmode(lua_State *L);

/* What a wait waits for; the first member of every pollable userdata. */
typedef struct fastsock_lua_pollable {
    int fd;
    unsigned events;   /* FASTSOCK_WANT_* */
    int64_t deadline;  /* fastsock_deadline(); -1 none */
    int cqueues_polled; /* fastsock_lua_done_polling has cqueues forget fd */
} fastsock_lua_pollable;

/*
 * Waits until p is ready or its deadline, without blocking a scheduler:
 * calls the waiter, or cqueues.poll(the pollable at pidx), with lua_callk,
 * so that the wait may yield; k continues afterwards (with ctx), whether or
 * not it yielded. Pushes nothing that outlives it. Under WAIT_BLOCK it
 * polls in C and returns: 0, or -EINTR when the interpreter asked for
 * control (Ctrl-C).
 */
int fastsock_lua_wait(lua_State *L, enum fastsock_lua_waitmode mode, int pidx,
                      lua_KContext ctx, lua_KFunction k);
/* Once a waiter on p is done with its fd: cqueues forgets it. */
void fastsock_lua_done_polling(lua_State *L, fastsock_lua_pollable *p);
/* Pushes a plain pollable (a cqueues pollable for the single-shot calls). */
fastsock_lua_pollable *fastsock_lua_pollable_push(lua_State *L, int fd, unsigned events,
                                                  int64_t deadline);
/* pollfd / events / timeout: cqueues' methods, for any userdata whose first
 * member is a fastsock_lua_pollable. */
int fastsock_lua_pollfd_method(lua_State *L);
int fastsock_lua_events_method(lua_State *L);
int fastsock_lua_timeout_method(lua_State *L);

/* One receive and one send per socket at a time: a transfer that may be
 * suspended claims its direction of the fd (FASTSOCK_WANT_READ or _WRITE)
 * until it ends; a second one is an argument error at arg (two coroutines
 * receiving on one socket would each get some of the stream). */
void fastsock_lua_check_unclaimed(lua_State *L, int fd, unsigned dir, int arg);
void fastsock_lua_claim(lua_State *L, int fd, unsigned dir, int arg);
void fastsock_lua_unclaim(lua_State *L, int fd, unsigned dir);
/* Transfers holding a claim now, in the whole process. */
long fastsock_lua_claims_held(void);

/* ---- lua_xfer.c --------------------------------------------------------------- */

/* The bulk calls under a scheduler: a transfer object built from the call's
 * own arguments, stepped and waited on until it ends, with the call's
 * result. Each returns as a lua_CFunction does. */
int fastsock_lua_recvall_stepped(lua_State *L, int fd, lua_Integer n, int64_t timeout_ms,
                                 enum fastsock_lua_waitmode mode);
int fastsock_lua_recvall_into_stepped(lua_State *L, int fd, int bufarg, size_t offset,
                                      size_t count, int64_t timeout_ms,
                                      enum fastsock_lua_waitmode mode);
int fastsock_lua_sendall_stepped(lua_State *L, int fd, int dataarg, lua_Integer start,
                                 size_t offset, size_t count, int64_t timeout_ms,
                                 enum fastsock_lua_waitmode mode);
int fastsock_lua_sendfile_stepped(lua_State *L, int fd, fastsock_lua_file *f, int64_t offset,
                                  size_t count, int64_t timeout_ms,
                                  enum fastsock_lua_waitmode mode);

#endif
