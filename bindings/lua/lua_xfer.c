/*
 * Progressive transfers: fastsock.receiver and fastsock.sender, and the bulk
 * calls (recvall, recvall_into, sendall, sendfile) when a scheduler runs
 * them, which drive the same object to its end, waiting through the
 * scheduler between steps (lua_scheduler.c).
 *
 * An object wraps the core's fastsock_xfer and what it needs alive while it
 * may be suspended: its uservalues hold the socket object, the string or
 * buffer it sends from or receives into (a buffer is pinned: it refuses to
 * close), the file handle, and a fresh receive's result. Everything a step
 * needs is in the userdata, never in C locals, so a coroutine may yield
 * between steps, and be closed or collected there: the object's __close or
 * __gc then unpins the buffer, frees the scratch memory and gives the socket
 * back; the bytes moved so far stay where they were written.
 */
/*** fastsock for Lua 5.4 (LDoc: `ldoc bindings/lua` writes bindings/lua/doc/).
 * @module fastsock.progressive
 */
#include "fastsock_lua.h"

#include <lauxlib.h>

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>

#define RECEIVER_MT "fastsock.receiver"
#define SENDER_MT "fastsock.sender"

/* A fresh receive this large advises and pre-faults its scratch a step at a
 * time (FASTSOCK_XFER_FRESH), as recvall advises its whole scratch. */
#define FRESH_ADVICE_MIN ((size_t)2 * 1024 * 1024)

enum xkind {
    XK_FRESH, /* receive into scratch memory, copied into a string at the end */
    XK_INTO,  /* receive into a fastsock.buffer */
    XK_DATA,  /* send a string or a buffer */
    XK_FILE   /* send a file */
};

/* The uservalues. */
enum { UV_SOCK = 1, UV_DATA, UV_FILE, UV_RESULT, UV_COUNT = UV_RESULT };

typedef struct lxfer {
    fastsock_lua_pollable p; /* first: the pollable methods read it */
    fastsock_xfer x;
    enum xkind kind;
    lua_Integer first;       /* XK_DATA: the index of the first byte, as results count */
    fastsock_lua_buf *buf;   /* pinned (XK_INTO, XK_DATA of a buffer) or the scratch (XK_FRESH) */
    fastsock_lua_file file;  /* XK_FILE */
    unsigned claim;          /* the direction of p.fd this transfer holds */
    int sockobj;             /* the socket is a LuaSocket object: is it still open? */
    int positioned;          /* XK_FILE: started, so it leaves the file's position at its end */
    fastsock_result failed;  /* what ended it when the core didn't: a call's timeout, a closed socket */
    int ended;               /* resources given back, result final */
    int closed;              /* :close() */
    lua_Hook hook;           /* WAIT_BLOCK: the interpreter's hook, to tell Ctrl-C */
    int hookmask;
    int own_budget;          /* :setbudget: the program's, never shared */
    int lowat;               /* a call's receive: SO_RCVLOWAT set now, 0 when untouched */
    int saved_lowat;         /* the socket's own, put back at the end */
    int copy_held;           /* received all, its copy into the string waits its turn */
    int64_t copy_held_at;
    size_t largest_step;     /* bytes, for :stats() */
    lua_Integer data_steps;  /* steps that moved data */
} lxfer;

static const char *type_name(const lxfer *t)
{
    return t->kind == XK_FRESH || t->kind == XK_INTO ? RECEIVER_MT : SENDER_MT;
}

static lxfer *test_xfer(lua_State *L, int idx)
{
    lxfer *t = luaL_testudata(L, idx, RECEIVER_MT);
    return t != NULL ? t : luaL_testudata(L, idx, SENDER_MT);
}

static lxfer *check_xfer(lua_State *L, int idx)
{
    lxfer *t = test_xfer(L, idx);
    if (t == NULL)
        luaL_typeerror(L, idx, RECEIVER_MT " or " SENDER_MT);
    return t;
}

/* What the results count: bytes, or for a send of data the index of the
 * last byte sent, as LuaSocket's send does. */
static lua_Integer progress_value(const lxfer *t)
{
    if (t->kind == XK_DATA)
        return t->first - 1 + (lua_Integer)t->x.done;
    return (lua_Integer)t->x.done;
}

/* Pushes a new object, every pointer empty, so that __gc is safe whatever
 * fails while it is being built. */
static lxfer *push_xfer(lua_State *L, enum xkind kind, int sockidx, int fd)
{
    lxfer *t = lua_newuserdatauv(L, sizeof *t, UV_COUNT);
    memset(t, 0, sizeof *t);
    t->p.fd = fd;
    t->p.deadline = -1;
    t->kind = kind;
    t->first = 1;
    t->file.fd = -1;
    t->x.want = 0;
    luaL_setmetatable(L, kind == XK_FRESH || kind == XK_INTO ? RECEIVER_MT : SENDER_MT);
    if (lua_type(L, sockidx) == LUA_TUSERDATA && luaL_testudata(L, sockidx, LUA_FILEHANDLE) == NULL)
        t->sockobj = 1;
    lua_pushvalue(L, sockidx);
    lua_setiuservalue(L, -2, UV_SOCK);
    return t;
}

/* Gives back everything but the progress: the socket's direction, the
 * buffer's pin, the scratch, the fallback's memory, a path's fd; leaves a
 * file positioned after the bytes sent. Idempotent. */
static fastsock_result sock_still_open(lua_State *L, int idx, const lxfer *t);

static void release(lua_State *L, int idx, lxfer *t)
{
    /* cqueues forgets the number even when the program closed the socket:
     * that is when a stale entry would hang the number's next socket. */
    fastsock_lua_done_polling(L, &t->p);
    if (t->lowat != 0 && sock_still_open(L, idx, t) < 0)
        t->lowat = 0; /* closed: the number may be another socket's now */
    if (t->lowat != 0) {
        setsockopt(t->p.fd, SOL_SOCKET, SO_RCVLOWAT, &t->saved_lowat, sizeof t->saved_lowat);
        t->lowat = 0;
    }
    if (t->claim != 0) {
        fastsock_lua_unclaim(L, t->p.fd, t->claim);
        t->claim = 0;
    }
    if (t->buf != NULL) {
        if (t->kind == XK_FRESH)
            fastsock_lua_buffer_release(t->buf);
        else
            t->buf->pins--;
        t->buf = NULL;
    }
    fastsock_xfer_release(&t->x);
    if (t->kind == XK_FILE && (t->file.fd >= 0 || t->file.stream != NULL)) {
        /* A handle the program closed meanwhile has no position to set. */
        int open = 1;
        if (t->file.stream != NULL) {
            lua_getiuservalue(L, idx, UV_FILE);
            luaL_Stream *s = luaL_testudata(L, -1, LUA_FILEHANDLE);
            open = s != NULL && s->closef != NULL;
            lua_pop(L, 1);
        }
        if (open && t->positioned)
            fastsock_lua_file_done(&t->file, t->x.file_offset + (int64_t)t->x.done);
        else if (t->file.path != NULL && t->file.fd >= 0)
            fastsock_lua_file_done(&t->file, 0); /* closes what it opened, nothing else */
        t->file.fd = -1;
        t->file.stream = NULL;
    }
    t->p.events = 0;
}

/* The transfer has ended (complete, failed, or failed by us): a fresh
 * receive's bytes become its result string, the one copy, and the rest is
 * given back. */
static void end_transfer(lua_State *L, int idx, lxfer *t)
{
    if (t->ended)
        return;
    if (t->kind == XK_FRESH && t->buf != NULL) {
        fastsock_lua_push_bytes(L, (const char *)t->buf->data, t->x.done);
        lua_setiuservalue(L, idx, UV_RESULT);
        lua_getiuservalue(L, idx, UV_DATA);
        fastsock_lua_scratch_done(L, lua_gettop(L)); /* may become the next one's */
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_setiuservalue(L, idx, UV_DATA);
        t->buf = NULL;
    }
    t->ended = 1;
    release(L, idx, t);
}

static fastsock_result ended_with(const lxfer *t)
{
    return t->failed != 0 ? t->failed : t->x.error;
}

/* The result of an ended transfer: the received string, the count, or the
 * last index sent; or nil, err, partial. */
static int push_result(lua_State *L, int idx, lxfer *t)
{
    fastsock_result err = ended_with(t);
    if (t->kind == XK_FRESH) {
        lua_getiuservalue(L, idx, UV_RESULT);
        return err == 0 ? 1 : fastsock_lua_fail_with_top(L, err);
    }
    if (err == 0) {
        lua_pushinteger(L, progress_value(t));
        return 1;
    }
    return fastsock_lua_fail(L, err, progress_value(t));
}

/* An error of a transfer that has not ended: nil, err, progress. A fresh
 * receive reports its count here: its bytes are copied only at the end. */
static int push_pending(lua_State *L, lxfer *t, fastsock_result rc)
{
    return fastsock_lua_fail(L, rc, (lua_Integer)t->x.done);
}

/* 0, or -EBADF when the program closed the socket object since the
 * transfer began (another coroutine's close): the fd number may already
 * name something else. */
static fastsock_result sock_still_open(lua_State *L, int idx, const lxfer *t)
{
    fastsock_result rc = 0;
    if (!t->sockobj)
        return 0;
    lua_getiuservalue(L, idx, UV_SOCK);
    if (luaL_getmetafield(L, -1, "__index") != LUA_TNIL) {
        lua_pop(L, 1);
        if (lua_getfield(L, -1, "getfd") == LUA_TFUNCTION) {
            lua_pushvalue(L, -2);
            lua_call(L, 1, 1);
            int isint = 0;
            lua_Integer fd = lua_tointegerx(L, -1, &isint);
            if (!isint || fd != t->p.fd)
                rc = -EBADF;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return rc;
}

/* As sock_still_open, and the file handle of a sendfile too. */
static fastsock_result still_open(lua_State *L, int idx, lxfer *t)
{
    fastsock_result rc = sock_still_open(L, idx, t);
    if (rc == 0 && t->kind == XK_FILE && t->file.stream != NULL) {
        lua_getiuservalue(L, idx, UV_FILE);
        luaL_Stream *s = luaL_testudata(L, -1, LUA_FILEHANDLE);
        if (s == NULL || s->closef == NULL)
            rc = -EBADF;
        lua_pop(L, 1);
    }
    return rc;
}

/* One step: 1 when the transfer ended in it; 2 when a fresh receive
 * completed and hold_copy asked to leave its copy into the string for later. */
static int step(lua_State *L, int idx, lxfer *t, fastsock_result *moved, int hold_copy)
{
    fastsock_result rc = still_open(L, idx, t);
    if (rc < 0) {
        t->failed = rc;
        *moved = 0;
        end_transfer(L, idx, t);
        return 1;
    }
    rc = fastsock_xfer_step(&t->x);
    *moved = rc;
    if (rc > 0) {
        t->data_steps++;
        if ((size_t)rc > t->largest_step)
            t->largest_step = (size_t)rc;
    }
    if (t->x.want == 0) {
        if (hold_copy && t->kind == XK_FRESH)
            return 2;
        end_transfer(L, idx, t);
        return 1;
    }
    t->p.events = t->x.want;
    return 0;
}

static void check_usable(lua_State *L, lxfer *t)
{
    if (t->closed)
        luaL_error(L, "%s: closed", type_name(t));
}

/* ---- driving an object to its end ---------------------------------------------- */

/* A receive that a call drives to its end under a scheduler wakes when
 * this much has arrived (or the rest, or the end of the stream), not at
 * every segment: each wake is a trip through the scheduler, and on
 * loopback those trips cost a quarter of the throughput of the blocking
 * call. Linux grows the receive buffer to fit. */
#define CALL_RCVLOWAT (512 * 1024)

/*
 * A scheduler's turn resumes every coroutine whose fd is ready, one after
 * the other, so the turn lasts as long as all their steps together: with
 * many transfers at once, each step moves less (64 at once, 1 MiB steps:
 * 16 ms turns here). The budget the program set, if any, stands.
 */
#define SHARED_BUDGET ((size_t)8 << 20)
#define MIN_BUDGET ((size_t)128 << 10)

static void share_budget(lxfer *t)
{
    if (t->own_budget)
        return;
    long n = fastsock_lua_claims_held();
    size_t b = n > 0 ? SHARED_BUDGET / (size_t)n : FASTSOCK_XFER_BUDGET;
    t->x.budget = b > FASTSOCK_XFER_BUDGET ? FASTSOCK_XFER_BUDGET : b < MIN_BUDGET ? MIN_BUDGET : b;
}

static void set_lowat(lxfer *t)
{
    size_t left = t->x.count - t->x.done;
    size_t cap = t->x.budget && t->x.budget < CALL_RCVLOWAT ? t->x.budget : CALL_RCVLOWAT;
    int want = left < cap ? (int)left : (int)cap;
    if (want < 1 || want == t->lowat)
        return;
    if (t->lowat == 0) {
        socklen_t len = sizeof t->saved_lowat;
        if (getsockopt(t->p.fd, SOL_SOCKET, SO_RCVLOWAT, &t->saved_lowat, &len) < 0)
            return;
    }
    if (setsockopt(t->p.fd, SOL_SOCKET, SO_RCVLOWAT, &want, sizeof want) == 0)
        t->lowat = want;
}

/* The continuation's context: where the object is, how to wait, and whether
 * the deadline ends the transfer (a call) or only this wait (:finish). */
#define CTX(idx, mode, final) (((lua_KContext)(idx) << 3) | ((lua_KContext)(mode) << 1) | (final))

/*
 * Many receives under one cqueues controller progress evenly and so complete
 * in the same turn of the controller, which resumes every ready coroutine
 * before it looks at its timers: their final copies into strings (16 ms for
 * 16 MiB here) then add up to one long freeze (64 coroutines: 0.8 s). So a
 * large copy takes a turn of its own: when another one ended within the
 * last millisecond, the coroutine yields and tries again, for at most
 * COPY_TURN_MAX_MS.
 */
#define COPY_TURN_MIN ((size_t)1 << 20)
#define COPY_TURN_MAX_MS 3000

static _Atomic int64_t last_copy_end_ms = -1000000; /* a hint across Lua states, no more */

static int copy_turn_taken(const lxfer *t)
{
    int64_t now = fastsock_now_ms();
    if (now - t->copy_held_at > COPY_TURN_MAX_MS)
        return 0;
    return now - atomic_load_explicit(&last_copy_end_ms, memory_order_relaxed) <= 1;
}

static void copy_turn_done(void)
{
    atomic_store_explicit(&last_copy_end_ms, fastsock_now_ms(), memory_order_relaxed);
}

static int drive_k(lua_State *L, int status, lua_KContext ctx);

/* cqueues.poll(0): back in the controller's next turn. */
static void wait_a_turn(lua_State *L, lua_KContext ctx)
{
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "cqueues");
    lua_getfield(L, -1, "poll");
    lua_pushnumber(L, 0.0);
    lua_callk(L, 1, 0, ctx, drive_k);
}

static int drive_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status; /* the same whether the wait yielded or not */
    int idx = (int)(ctx >> 3);
    enum fastsock_lua_waitmode mode = (enum fastsock_lua_waitmode)((ctx >> 1) & 3);
    int final = (int)(ctx & 1);
    lxfer *t = lua_touserdata(L, idx);
    for (;;) {
        lua_settop(L, idx);
        check_usable(L, t); /* closed by another coroutine while this one waited */
        if (t->ended)
            return push_result(L, idx, t);
        if (t->copy_held) {
            if (copy_turn_taken(t)) {
                wait_a_turn(L, ctx);
                continue;
            }
            end_transfer(L, idx, t);
            copy_turn_done();
            return push_result(L, idx, t);
        }
        if (mode != WAIT_BLOCK)
            share_budget(t);
        fastsock_result moved;
        int ended = step(L, idx, t, &moved,
                         mode == WAIT_CQUEUES && t->x.count >= COPY_TURN_MIN);
        if (ended == 2) {
            t->copy_held = 1;
            t->copy_held_at = fastsock_now_ms();
            continue;
        }
        if (ended)
            return push_result(L, idx, t);
        if (fastsock_remaining_ms(t->p.deadline) == 0) {
            if (!final)
                return push_pending(L, t, -ETIMEDOUT);
            t->failed = -ETIMEDOUT;
            end_transfer(L, idx, t);
            return push_result(L, idx, t);
        }
        if (final && mode != WAIT_BLOCK && (t->kind == XK_FRESH || t->kind == XK_INTO))
            set_lowat(t);
        size_t budget = t->x.budget ? t->x.budget : FASTSOCK_XFER_BUDGET;
        if (mode == WAIT_BLOCK && moved > 0 && (size_t)moved >= budget)
            continue; /* the kernel may have more at once: poll would only say so */
        if (fastsock_lua_wait(L, mode, idx, ctx, drive_k) == -EINTR &&
            (lua_gethook(L) != t->hook || lua_gethookmask(L) != t->hookmask)) {
            /* Ctrl-C in lua.c: give the interpreter control back. */
            if (!final)
                return push_pending(L, t, -EINTR);
            t->failed = -EINTR;
            end_transfer(L, idx, t);
            return push_result(L, idx, t);
        }
    }
}

static int drive(lua_State *L, int idx, lxfer *t, enum fastsock_lua_waitmode mode, int final)
{
    t->hook = lua_gethook(L);
    t->hookmask = lua_gethookmask(L);
    return drive_k(L, LUA_OK, CTX(idx, mode, final));
}

/* ---- building the objects ------------------------------------------------------- */

/* A receive of count bytes into the buffer at bufidx from offset, or (bufidx
 * 0) of n bytes into fresh memory. Raises on bad arguments and claims the
 * socket's receive side. The object is left on the top. */
static lxfer *push_receive(lua_State *L, const char *fn, int sockidx, int fd, int bufidx,
                           int startarg, int countarg, size_t offset, size_t count)
{
    lxfer *t = push_xfer(L, bufidx ? XK_INTO : XK_FRESH, sockidx, fd);
    int idx = lua_gettop(L);
    fastsock_result rc;
    if (bufidx == 0) {
        int fresh;
        fastsock_lua_buf *scratch = fastsock_lua_scratch_push(L, count, &fresh);
        if (scratch == NULL)
            fastsock_lua_nomem(L, fn, (lua_Integer)count, errno);
        lua_setiuservalue(L, idx, UV_DATA);
        t->buf = scratch;
        rc = fastsock_xfer_recv_init(&t->x, fd, scratch->data, count, 0, count);
        if ((fresh || scratch->kind == BUFFER_HEAP) && count >= FRESH_ADVICE_MIN)
            t->x.flags |= FASTSOCK_XFER_FRESH;
    } else {
        fastsock_lua_buf *b = fastsock_lua_check_buffer(L, bufidx);
        rc = fastsock_xfer_recv_init(&t->x, fd, b->data, b->len, offset, count);
        fastsock_lua_check_range(L, rc, startarg, countarg);
        lua_pushvalue(L, bufidx);
        lua_setiuservalue(L, idx, UV_DATA);
        b->pins++;
        t->buf = b;
    }
    (void)rc; /* only range errors, raised above */
    fastsock_lua_claim(L, fd, FASTSOCK_WANT_READ, sockidx);
    t->claim = FASTSOCK_WANT_READ;
    t->p.events = t->x.want;
    if (t->x.want == 0)
        end_transfer(L, idx, t); /* nothing to receive */
    return t;
}

/* A send of data[offset, offset + count) from the string or buffer at
 * dataidx, whose results count from index start. */
static lxfer *push_send(lua_State *L, int sockidx, int fd, int dataidx, lua_Integer start,
                        size_t offset, size_t count)
{
    size_t len;
    const char *data = fastsock_lua_check_data(L, dataidx, &len);
    fastsock_lua_buf *b = fastsock_lua_test_buffer(L, dataidx);
    lxfer *t = push_xfer(L, XK_DATA, sockidx, fd);
    int idx = lua_gettop(L);
    t->first = start;
    fastsock_xfer_send_init(&t->x, fd, data, len, offset, count); /* the range is clamped */
    lua_pushvalue(L, dataidx);
    lua_setiuservalue(L, idx, UV_DATA);
    if (b != NULL) {
        b->pins++;
        t->buf = b;
    }
    fastsock_lua_claim(L, fd, FASTSOCK_WANT_WRITE, sockidx);
    t->claim = FASTSOCK_WANT_WRITE;
    t->p.events = t->x.want;
    if (t->x.want == 0)
        end_transfer(L, idx, t);
    return t;
}

/* A send of count bytes of the file at fileidx (already read into f) from
 * offset. */
static lxfer *push_sendfile(lua_State *L, int sockidx, int fd, int fileidx,
                            const fastsock_lua_file *f, int64_t offset, size_t count)
{
    lxfer *t = push_xfer(L, XK_FILE, sockidx, fd);
    int idx = lua_gettop(L);
    t->file = *f;
    lua_pushvalue(L, fileidx);
    lua_setiuservalue(L, idx, UV_FILE); /* a path's string stays alive too */
    if (fastsock_lua_file_open(&t->file) < 0)
        luaL_argerror(L, fileidx, lua_pushfstring(L, "%s: %s", f->path, strerror(errno)));
    fastsock_result rc = fastsock_xfer_sendfile_init(&t->x, fd, t->file.fd, offset, count);
    if (rc == -ESPIPE)
        luaL_argerror(L, fileidx, "not a regular file: a step could wait on it");
    if (fastsock_classify(rc) == FASTSOCK_KIND_BADSOCK)
        fastsock_lua_verify_sock(L, sockidx, fd);
    if (rc < 0)
        luaL_argerror(L, fileidx, fastsock_lua_error_message(rc));
    t->positioned = 1;
    fastsock_lua_claim(L, fd, FASTSOCK_WANT_WRITE, sockidx);
    t->claim = FASTSOCK_WANT_WRITE;
    t->p.events = t->x.want;
    if (t->x.want == 0)
        end_transfer(L, idx, t);
    return t;
}

/*** Receives exactly n bytes, a step at a time.
 * `fastsock.receiver(sock, n)` receives into fresh memory and gives a string
 * at the end (one copy); `fastsock.receiver(sock, buf [, n [, i]])` fills
 * `buf[i .. i + n - 1]` (n absent: to the end of the buffer, i absent: 1),
 * pinning `buf` until the receive ends or the receiver is closed.
 * The receiver holds the socket's receive side: a second receive on it is an
 * error until this one ends.
 * @function receiver
 * @param sock a LuaSocket object, an io handle or an fd
 * @return a `fastsock.receiver`
 */
int fastsock_lua_receiver(lua_State *L)
{
    int fd = fastsock_lua_check_sock(L, 1, 1, 1);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        lua_Integer n = luaL_checkinteger(L, 2);
        luaL_argcheck(L, n >= 0, 2, "negative size");
        lua_settop(L, 2);
        push_receive(L, "receiver", 1, fd, 0, 0, 2, 0, (size_t)n);
    } else {
        fastsock_lua_check_buffer(L, 2);
        size_t count = fastsock_lua_opt_count(L, 3);
        size_t offset = fastsock_lua_opt_start(L, 4);
        lua_settop(L, 4);
        push_receive(L, "receiver", 1, fd, 2, 4, 3, offset, count);
    }
    return 1;
}

/*** Sends data or a file, a step at a time.
 * `fastsock.sender(sock, data [, i [, j]])` sends `data[i .. j]` (a string or
 * a `fastsock.buffer`, which stays pinned; i, j as LuaSocket's send);
 * `fastsock.sender(sock, file [, offset [, count]])` sends an io handle's
 * file (a regular file) with sendfile(2), leaving its position after the
 * bytes sent when the sender ends or is closed.
 * @function sender
 * @return a `fastsock.sender`
 */
int fastsock_lua_sender(lua_State *L)
{
    int fd = fastsock_lua_check_sock(L, 1, 0, 1);
    if (luaL_testudata(L, 2, LUA_FILEHANDLE) != NULL) {
        lua_Integer offset = luaL_optinteger(L, 3, 0);
        luaL_argcheck(L, offset >= 0, 3, "negative offset");
        size_t count = fastsock_lua_opt_count(L, 4);
        fastsock_lua_file f;
        int rc = fastsock_lua_check_file(L, 2, &f);
        if (rc < 0)
            return luaL_argerror(L, 2, fastsock_lua_error_message(rc));
        lua_settop(L, 4);
        push_sendfile(L, 1, fd, 2, &f, (int64_t)offset, count);
    } else {
        size_t len;
        fastsock_lua_check_data(L, 2, &len);
        lua_Integer start;
        size_t offset, count;
        fastsock_lua_send_range(L, 3, len, &start, &offset, &count);
        lua_settop(L, 4);
        push_send(L, 1, fd, 2, start, offset, count);
    }
    return 1;
}

/* ---- methods -------------------------------------------------------------------- */

/*** Moves what can move now, never waiting.
 * @function step
 * @return when done: the string (fresh receiver), the count (into a buffer,
 * a file), or the index of the last byte sent (data); else `nil, "timeout",
 * progress` while it goes on, or `nil, err, partial` when it failed
 * (partial: the string received so far for a fresh receiver). */
static int xfer_step(lua_State *L)
{
    lxfer *t = check_xfer(L, 1);
    lua_settop(L, 1);
    check_usable(L, t);
    fastsock_result moved;
    if (t->ended || step(L, 1, t, &moved, 0))
        return push_result(L, 1, t);
    return push_pending(L, t, -EAGAIN);
}

/*** Runs to the end, waiting between steps: through the scheduler when one
 * runs this coroutine (yielding), else in poll(2).
 * @function finish
 * @param[opt] timeout seconds from now (sets the deadline, as settimeout)
 * @return as `step`, with `nil, "timeout", progress` at the deadline: the
 * transfer stays where it was, to be finished later. */
static int xfer_finish(lua_State *L)
{
    lxfer *t = check_xfer(L, 1);
    if (!lua_isnoneornil(L, 2))
        t->p.deadline = fastsock_deadline(fastsock_lua_check_timeout(L, 2, 1));
    lua_settop(L, 1);
    check_usable(L, t);
    return drive(L, 1, t, fastsock_lua_waitmode(L), 0);
}

/*** Sets the deadline: seconds from now (nil or negative: none). It bounds
 * `finish` and is what cqueues reads from `timeout`.
 * @function settimeout */
static int xfer_settimeout(lua_State *L)
{
    lxfer *t = check_xfer(L, 1);
    t->p.deadline = fastsock_deadline(fastsock_lua_check_timeout(L, 2, 1));
    lua_settop(L, 1);
    return 1;
}

/*** Sets the bytes one step moves at most (default 1 MiB).
 * @function setbudget */
static int xfer_setbudget(lua_State *L)
{
    lxfer *t = check_xfer(L, 1);
    lua_Integer b = luaL_checkinteger(L, 2);
    luaL_argcheck(L, b > 0, 2, "budget must be positive");
    t->x.budget = (size_t)b;
    t->own_budget = 1;
    lua_settop(L, 1);
    return 1;
}

/*** Bytes moved so far and bytes in all.
 * @function progress
 * @return done, count */
static int xfer_progress(lua_State *L)
{
    lxfer *t = check_xfer(L, 1);
    lua_pushinteger(L, (lua_Integer)t->x.done);
    lua_pushinteger(L, (lua_Integer)t->x.count);
    return 2;
}

/*** Steps that moved data, the most bytes one step moved, and the system
 * calls made.
 * @function stats */
static int xfer_stats(lua_State *L)
{
    lxfer *t = check_xfer(L, 1);
    lua_pushinteger(L, t->data_steps);
    lua_pushinteger(L, (lua_Integer)t->largest_step);
    lua_pushinteger(L, (lua_Integer)t->x.cycles);
    return 3;
}

/*** Stops the transfer and gives back its socket side and buffer; what moved
 * stays where it went. Closing twice is harmless.
 * @function close
 * @return what moved: for a fresh receiver the bytes received (a string;
 * after the end, its result), else the count, or the
 * index of the last byte sent */
static int xfer_close(lua_State *L)
{
    lxfer *t = check_xfer(L, 1);
    lua_settop(L, 1);
    if (t->kind == XK_FRESH && !t->closed && !t->ended)
        end_transfer(L, 1, t); /* the bytes so far become the string */
    t->closed = 1;
    release(L, 1, t);
    if (t->kind == XK_FRESH && lua_getiuservalue(L, 1, UV_RESULT) == LUA_TSTRING)
        return 1;
    lua_settop(L, 1);
    lua_pushinteger(L, progress_value(t));
    return 1;
}

/* <close> and coroutine.close(): give everything back, return nothing. */
static int xfer_close_meta(lua_State *L)
{
    lxfer *t = check_xfer(L, 1);
    t->closed = 1;
    release(L, 1, t);
    return 0;
}

static int xfer_gc(lua_State *L)
{
    lxfer *t = check_xfer(L, 1);
    release(L, 1, t);
    return 0;
}

static int xfer_repr(lua_State *L)
{
    lxfer *t = check_xfer(L, 1);
    lua_pushfstring(L, "%s (%I of %I bytes%s): %p", type_name(t), (lua_Integer)t->x.done,
                    (lua_Integer)t->x.count,
                    t->closed ? ", closed" : t->ended ? ", ended" : "", (void *)t);
    return 1;
}

void fastsock_lua_open_xfer(lua_State *L)
{
    static const luaL_Reg meta[] = {
        { "__gc", xfer_gc },
        { "__close", xfer_close_meta },
        { "__tostring", xfer_repr },
        { NULL, NULL },
    };
    static const luaL_Reg methods[] = {
        { "step", xfer_step },
        { "finish", xfer_finish },
        { "settimeout", xfer_settimeout },
        { "setbudget", xfer_setbudget },
        { "progress", xfer_progress },
        { "stats", xfer_stats },
        { "close", xfer_close },
        { "pollfd", fastsock_lua_pollfd_method },
        { "events", fastsock_lua_events_method },
        { "timeout", fastsock_lua_timeout_method },
        { NULL, NULL },
    };
    fastsock_lua_new_class(L, RECEIVER_MT, meta, methods);
    fastsock_lua_new_class(L, SENDER_MT, meta, methods);
}

/* ---- the bulk calls under a scheduler -------------------------------------------- */

/* The object goes on the top as a to-be-closed slot: coroutine.close() of a
 * coroutine suspended in the call closes it at once (pins and claims given
 * back), instead of at the next collection. */
static int run_call(lua_State *L, lxfer *t, int64_t timeout_ms, enum fastsock_lua_waitmode mode)
{
    int idx = lua_gettop(L);
    lua_toclose(L, idx);
    t->p.deadline = fastsock_deadline(timeout_ms);
    return drive(L, idx, t, mode, 1);
}

int fastsock_lua_recvall_stepped(lua_State *L, int fd, lua_Integer n, int64_t timeout_ms,
                                 enum fastsock_lua_waitmode mode)
{
    lxfer *t = push_receive(L, "recvall", 1, fd, 0, 0, 2, 0, (size_t)n);
    return run_call(L, t, timeout_ms, mode);
}

int fastsock_lua_recvall_into_stepped(lua_State *L, int fd, int bufarg, size_t offset,
                                      size_t count, int64_t timeout_ms,
                                      enum fastsock_lua_waitmode mode)
{
    lxfer *t = push_receive(L, "recvall_into", 1, fd, bufarg, bufarg + 2, bufarg + 1, offset, count);
    return run_call(L, t, timeout_ms, mode);
}

int fastsock_lua_sendall_stepped(lua_State *L, int fd, int dataarg, lua_Integer start,
                                 size_t offset, size_t count, int64_t timeout_ms,
                                 enum fastsock_lua_waitmode mode)
{
    lxfer *t = push_send(L, 1, fd, dataarg, start, offset, count);
    return run_call(L, t, timeout_ms, mode);
}

int fastsock_lua_sendfile_stepped(lua_State *L, int fd, fastsock_lua_file *f, int64_t offset,
                                  size_t count, int64_t timeout_ms,
                                  enum fastsock_lua_waitmode mode)
{
    lxfer *t = push_sendfile(L, 1, fd, 2, f, offset, count);
    return run_call(L, t, timeout_ms, mode);
}
