/*
 * The transfers: recvall, recvall_into, recv_into, send, sendall, sendfile.
 * Each reads its arguments (lua_args.c), runs the core's call, and answers
 * in LuaSocket's conventions (lua_errors.c): sends return the index of the
 * last byte sent, failures nil, message, partial.
 *
 * Under a scheduler (lua_scheduler.c) the calls must not block the process:
 * the bulk ones become a transfer object stepped between the scheduler's
 * waits (lua_xfer.c); the single-shot ones try once without waiting and,
 * when nothing could move, wait through the scheduler and try again, their
 * arguments read again from the Lua stack after the wait (a buffer closed
 * meanwhile is an error, never written into).
 */
/*** fastsock for Lua 5.4 (LDoc: `ldoc bindings/lua` writes bindings/lua/doc/).
 * @module fastsock
 */
#include "fastsock_lua.h"

#include <lauxlib.h>

#include <errno.h>
#include <string.h>

#define HUGE_PAGE ((size_t)2 * 1024 * 1024)
/* recvall receives up to this many bytes on the C stack. */
#define SMALL_RECVALL ((size_t)1024)

typedef fastsock_lua_call call;

/* lua.c answers Ctrl-C by installing a hook from its signal handler, to raise
 * "interrupted!" at the next instruction. A hook that changed during the
 * transfer means the interpreter wants control back: stop with the partial
 * result. Anything else resumes. */
static int on_interrupt(void *arg)
{
    call *c = arg;
    if (lua_gethook(c->L) != c->hook || lua_gethookmask(c->L) != c->hookmask)
        return -EINTR;
    return 0;
}

void fastsock_lua_call_init(fastsock_lua_call *c, lua_State *L, int64_t timeout_ms)
{
    fastsock_ctl init = FASTSOCK_CTL_INIT;
    c->ctl = init;
    c->ctl.timeout_ms = timeout_ms;
    c->ctl.on_interrupt = on_interrupt;
    c->ctl.interrupt_arg = c;
    c->L = L;
    c->hook = lua_gethook(L);
    c->hookmask = lua_gethookmask(L);
}

/* Lua's own allocator, wrapped for one lua_pushlstring: the new block that
 * will hold a large result is given fastsock_advise_fresh (huge pages,
 * faulted in at once) before the copy into it, which otherwise runs at the
 * speed of one page fault per 4 KiB. */
typedef struct advising_alloc {
    lua_Alloc f;
    void *ud;
    size_t at_least;
} advising_alloc;

static void *advising_alloc_fn(void *ud, void *ptr, size_t osize, size_t nsize)
{
    advising_alloc *a = ud;
    void *p = a->f(a->ud, ptr, osize, nsize);
    if (p != NULL && ptr == NULL && nsize >= a->at_least)
        fastsock_advise_fresh(p, nsize);
    return p;
}

static int push_bytes_unprotected(lua_State *L)
{
    lua_pushlstring(L, lua_touserdata(L, 1), (size_t)lua_tointeger(L, 2));
    return 1;
}

/* The allocator is swapped only for this copy and put back before any error
 * propagates (hence the pcall). */
void fastsock_lua_push_bytes(lua_State *L, const char *p, size_t n)
{
    if (n < HUGE_PAGE) {
        lua_pushlstring(L, p, n);
        return;
    }
    void *ud;
    lua_Alloc f = lua_getallocf(L, &ud);
    advising_alloc a = { f, ud, n };
    lua_pushcfunction(L, push_bytes_unprotected);
    lua_pushlightuserdata(L, (void *)p);
    lua_pushinteger(L, (lua_Integer)n);
    lua_setallocf(L, advising_alloc_fn, &a);
    int rc = lua_pcall(L, 2, 1, 0);
    lua_setallocf(L, f, ud);
    if (rc != LUA_OK)
        lua_error(L);
}

/*** Receives exactly n bytes into a new string.
 * Under a scheduler it yields while it waits and moves the bytes in steps
 * into memory of its own, copied once into the string at the end.
 * @function recvall
 * @param sock a LuaSocket object, an io handle or an fd
 * @int n bytes
 * @number[opt] timeout seconds for the whole call (nil: none)
 * @return the string, or `nil, err, partial` (the bytes received) */
int fastsock_lua_recvall(lua_State *L)
{
    int fd = fastsock_lua_check_sock(L, 1, 1, 0);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0, 2, "negative size");
    int64_t timeout_ms = fastsock_lua_check_timeout(L, 3, 0);
    fastsock_lua_check_unclaimed(L, fd, FASTSOCK_WANT_READ, 1);
    enum fastsock_lua_waitmode mode = fastsock_lua_waitmode(L);
    if (mode != WAIT_BLOCK || n == 0) {
        /* No system call below to tell (n == 0), or a wait registered before
         * the first one: ask the fd itself. */
        fastsock_lua_verify_sock(L, 1, fd);
        if (n == 0) {
            lua_pushliteral(L, "");
            return 1;
        }
        lua_settop(L, 3);
        return fastsock_lua_recvall_stepped(L, fd, n, timeout_ms, mode);
    }
    call c;
    fastsock_lua_call_init(&c, L, timeout_ms);
    fastsock_result rc;
    if ((size_t)n <= SMALL_RECVALL) {
        /* A header or a length prefix: the C stack is scratch enough, and a
         * userdata plus malloc per call cost more than the recv. */
        char small[SMALL_RECVALL];
        rc = fastsock_recvall(fd, small, (size_t)n, 0, (size_t)n, &c.ctl);
        lua_pushlstring(L, small, c.ctl.moved);
    } else {
        /* Lua 5.4 can't hand out a string to be filled, so the bytes land in
         * a scratch buffer and are copied once into the result (the
         * contract's one unavoidable copy); the scratch goes at once, not at
         * the next GC. */
        int fresh;
        fastsock_lua_buf *scratch = fastsock_lua_scratch_push(L, (size_t)n, &fresh);
        if (scratch == NULL)
            return fastsock_lua_nomem(L, "recvall", n, errno);
        /* Memory malloc recycled: a walk over present pages. Fresh memory:
         * huge pages, faulted in at once. */
        fastsock_advise_fresh(scratch->data, (size_t)n);
        rc = fastsock_recvall(fd, scratch->data, (size_t)n, 0, (size_t)n, &c.ctl);
        int scratch_idx = lua_gettop(L);
        fastsock_lua_push_bytes(L, (const char *)scratch->data, c.ctl.moved);
        fastsock_lua_scratch_done(L, scratch_idx);
    }
    if (rc >= 0)
        return 1;
    fastsock_lua_raise_if_not_socket(L, 1, rc, c.ctl.moved);
    return fastsock_lua_fail_with_top(L, rc);
}

/*** Fills `buf[i .. i + n - 1]` from the socket (n absent: to the end).
 * @function recvall_into
 * @return n, or `nil, err, count` */
int fastsock_lua_recvall_into(lua_State *L)
{
    int fd = fastsock_lua_check_sock(L, 1, 1, 0);
    fastsock_lua_buf *b = fastsock_lua_check_buffer(L, 2);
    size_t count = fastsock_lua_opt_count(L, 3);
    size_t offset = fastsock_lua_opt_start(L, 4);
    int64_t timeout_ms = fastsock_lua_check_timeout(L, 5, 0);
    fastsock_lua_check_unclaimed(L, fd, FASTSOCK_WANT_READ, 1);
    enum fastsock_lua_waitmode mode = fastsock_lua_waitmode(L);
    if (mode != WAIT_BLOCK) {
        fastsock_lua_verify_sock(L, 1, fd); /* a wait may register it before any system call */
        lua_settop(L, 5);
        return fastsock_lua_recvall_into_stepped(L, fd, 2, offset, count, timeout_ms, mode);
    }
    call c;
    fastsock_lua_call_init(&c, L, timeout_ms);
    fastsock_result rc = fastsock_recvall(fd, b->data, b->len, offset, count, &c.ctl);
    fastsock_lua_check_range(L, rc, 4, 3);
    if (rc == 0)
        fastsock_lua_verify_sock(L, 1, fd); /* nothing asked: no system call told */
    fastsock_lua_raise_if_not_socket(L, 1, rc, c.ctl.moved);
    if (rc >= 0) {
        lua_pushinteger(L, rc);
        return 1;
    }
    return fastsock_lua_fail(L, rc, (lua_Integer)c.ctl.moved);
}

/* Slot 6 of a single-shot call's stack: its deadline, once it has waited. */
#define DEADLINE_SLOT 6

/* After a single-shot call's wait, yielded or not. */
static void single_waited(lua_State *L)
{
    fastsock_lua_done_polling(L, lua_touserdata(L, DEADLINE_SLOT + 1));
    lua_settop(L, DEADLINE_SLOT);
}

/* After a single-shot try found nothing to move: waits through a scheduler
 * and answers 1 (the caller tries again; the deadline is in DEADLINE_SLOT
 * and *ctx the mode, so a resumed k finds them), or answers 0 for a block
 * in the core's own wait, or -1 once the deadline has passed. */
static int single_wait(lua_State *L, lua_KContext *ctx, int64_t timeout_ms, int fd,
                       unsigned events, lua_KFunction k)
{
    if (*ctx == 0) {
        enum fastsock_lua_waitmode mode = fastsock_lua_waitmode(L);
        if (mode == WAIT_BLOCK)
            return 0;
        lua_settop(L, DEADLINE_SLOT - 1);
        lua_pushinteger(L, fastsock_deadline(timeout_ms));
        *ctx = mode;
    }
    if (fastsock_remaining_ms(lua_tointeger(L, DEADLINE_SLOT)) == 0)
        return -1;
    lua_settop(L, DEADLINE_SLOT);
    fastsock_lua_pollable_push(L, fd, events, lua_tointeger(L, DEADLINE_SLOT));
    fastsock_lua_wait(L, (enum fastsock_lua_waitmode)*ctx, DEADLINE_SLOT + 1, *ctx, k);
    single_waited(L);
    return 1;
}

/* ctx: 0 on the first try, else the wait mode (after a wait). */
static int recv_into_k(lua_State *L, int status, lua_KContext ctx)
{
    if (status == LUA_YIELD)
        single_waited(L);
    for (;;) {
        int fd = fastsock_lua_check_sock(L, 1, 1, 0);
        fastsock_lua_buf *b = fastsock_lua_check_buffer(L, 2);
        size_t count = fastsock_lua_opt_count(L, 3);
        size_t offset = fastsock_lua_opt_start(L, 4);
        int64_t timeout_ms = fastsock_lua_check_timeout(L, 5, 1);
        if (ctx == 0)
            fastsock_lua_check_unclaimed(L, fd, FASTSOCK_WANT_READ, 1);
        call c;
        fastsock_lua_call_init(&c, L, 0); /* a try; the waits are below */
        fastsock_result rc = fastsock_recv(fd, b->data, b->len, offset, count, 0, &c.ctl);
        if (rc == -EAGAIN && timeout_ms != 0) {
            int how = single_wait(L, &ctx, timeout_ms, fd, FASTSOCK_WANT_READ, recv_into_k);
            if (how > 0)
                continue;
            if (how == 0) {
                c.ctl.timeout_ms = timeout_ms;
                rc = fastsock_recv(fd, b->data, b->len, offset, count, 0, &c.ctl);
            } else {
                rc = -ETIMEDOUT;
            }
        }
        fastsock_lua_check_range(L, rc, 4, 3);
        fastsock_lua_raise_if_not_socket(L, 1, rc, c.ctl.moved);
        /* rc >= 0 means the range held, so len - offset is the count "all" meant. */
        size_t asked = count == FASTSOCK_ALL ? b->len - offset : count;
        if (rc > 0 || (rc == 0 && asked == 0)) {
            lua_pushinteger(L, rc);
            return 1;
        }
        return fastsock_lua_fail(L, rc == 0 ? FASTSOCK_EOF : rc, (lua_Integer)c.ctl.moved);
    }
}

/*** One receive of at most n bytes into `buf[i ..]`; timeout 0 never waits.
 * @function recv_into
 * @return the count, or `nil, err, 0` (end of stream: `nil, "closed", 0`) */
int fastsock_lua_recv_into(lua_State *L)
{
    return recv_into_k(L, LUA_OK, 0); /* the arguments as given: a wait sets the top */
}

/* send's body; ctx as for recv_into_k. */
static int send_k(lua_State *L, int status, lua_KContext ctx)
{
    if (status == LUA_YIELD)
        single_waited(L);
    for (;;) {
        int fd = fastsock_lua_check_sock(L, 1, 0, 0);
        size_t len;
        const char *data = fastsock_lua_check_data(L, 2, &len);
        lua_Integer start;
        size_t offset, count;
        int nonempty = fastsock_lua_send_range(L, 3, len, &start, &offset, &count);
        int64_t timeout_ms = fastsock_lua_check_timeout(L, 5, 1);
        if (!nonempty) {
            fastsock_lua_verify_sock(L, 1, fd); /* no system call below to tell */
            lua_pushinteger(L, start - 1);
            return 1;
        }
        if (ctx == 0)
            fastsock_lua_check_unclaimed(L, fd, FASTSOCK_WANT_WRITE, 1);
        call c;
        fastsock_lua_call_init(&c, L, 0);
        fastsock_result rc = fastsock_send(fd, data, len, offset, count, &c.ctl);
        if (rc == -EAGAIN && timeout_ms != 0) {
            int how = single_wait(L, &ctx, timeout_ms, fd, FASTSOCK_WANT_WRITE, send_k);
            if (how > 0)
                continue;
            if (how == 0) {
                c.ctl.timeout_ms = timeout_ms;
                rc = fastsock_send(fd, data, len, offset, count, &c.ctl);
            } else {
                rc = -ETIMEDOUT;
            }
        }
        fastsock_lua_raise_if_not_socket(L, 1, rc, c.ctl.moved);
        if (rc >= 0) {
            lua_pushinteger(L, start - 1 + rc);
            return 1;
        }
        return fastsock_lua_fail(L, rc, start - 1 + (lua_Integer)c.ctl.moved);
    }
}

/*** One send of `data[i .. j]` (a string or a buffer; i, j as LuaSocket's).
 * @function send
 * @return the index of the last byte sent, or `nil, err, last` */
int fastsock_lua_send(lua_State *L)
{
    return send_k(L, LUA_OK, 0); /* the arguments as given: a wait sets the top */
}

/*** Sends all of `data[i .. j]`.
 * @function sendall
 * @return the index of the last byte sent, or `nil, err, last` */
int fastsock_lua_sendall(lua_State *L)
{
    int fd = fastsock_lua_check_sock(L, 1, 0, 0);
    size_t len;
    const char *data = fastsock_lua_check_data(L, 2, &len);
    lua_Integer start;
    size_t offset, count;
    int nonempty = fastsock_lua_send_range(L, 3, len, &start, &offset, &count);
    int64_t timeout_ms = fastsock_lua_check_timeout(L, 5, 0);
    if (!nonempty) {
        fastsock_lua_verify_sock(L, 1, fd); /* no system call below to tell */
        lua_pushinteger(L, start - 1);
        return 1;
    }
    fastsock_lua_check_unclaimed(L, fd, FASTSOCK_WANT_WRITE, 1);
    enum fastsock_lua_waitmode mode = fastsock_lua_waitmode(L);
    if (mode != WAIT_BLOCK) {
        fastsock_lua_verify_sock(L, 1, fd); /* a wait may register it before any system call */
        lua_settop(L, 5);
        return fastsock_lua_sendall_stepped(L, fd, 2, start, offset, count, timeout_ms, mode);
    }
    call c;
    fastsock_lua_call_init(&c, L, timeout_ms);
    fastsock_result rc = fastsock_sendall(fd, data, len, offset, count, &c.ctl);
    fastsock_lua_raise_if_not_socket(L, 1, rc, c.ctl.moved);
    if (rc >= 0) {
        lua_pushinteger(L, start - 1 + rc);
        return 1;
    }
    return fastsock_lua_fail(L, rc, start - 1 + (lua_Integer)c.ctl.moved);
}

/*** Sends a file (an io handle, flushed first; an fd; or a path) from a
 * byte offset, with sendfile(2); a seekable file is left positioned after
 * the bytes sent.
 * @function sendfile
 * @return bytes sent, or `nil, err, sent` */
int fastsock_lua_sendfile(lua_State *L)
{
    int sock = fastsock_lua_check_sock(L, 1, 0, 1);
    lua_Integer offset = luaL_optinteger(L, 3, 0);
    luaL_argcheck(L, offset >= 0, 3, "negative offset");
    size_t count = fastsock_lua_opt_count(L, 4);
    int64_t timeout_ms = fastsock_lua_check_timeout(L, 5, 0);
    fastsock_lua_file f;
    int frc = fastsock_lua_check_file(L, 2, &f);
    if (frc < 0)
        return fastsock_lua_fail(L, frc, 0);
    fastsock_lua_check_unclaimed(L, sock, FASTSOCK_WANT_WRITE, 1);
    /* A pipe could leave a step waiting on it, which no scheduler watches:
     * it blocks, as it always did. */
    enum fastsock_lua_waitmode mode = f.seekable ? fastsock_lua_waitmode(L) : WAIT_BLOCK;
    if (mode != WAIT_BLOCK) {
        lua_settop(L, 5);
        return fastsock_lua_sendfile_stepped(L, sock, &f, (int64_t)offset, count, timeout_ms, mode);
    }
    call c;
    fastsock_lua_call_init(&c, L, timeout_ms);
    if (fastsock_lua_file_open(&f) < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", f.path, strerror(errno));
        lua_pushinteger(L, 0);
        return 3;
    }
    fastsock_result rc = fastsock_sendfile(sock, f.fd, (int64_t)offset, count, &c.ctl);
    fastsock_lua_file_done(&f, (int64_t)offset + (int64_t)c.ctl.moved);
    if (rc >= 0) {
        lua_pushinteger(L, rc);
        return 1;
    }
    return fastsock_lua_fail(L, rc, (lua_Integer)c.ctl.moved);
}

void fastsock_lua_open(lua_State *L)
{
    fastsock_lua_open_buffer(L);
    fastsock_lua_open_scheduler(L);
    fastsock_lua_open_xfer(L);
    fastsock_lua_open_protocol(L);
}
