/*
 * fastsock for Lua 5.4: the transfers and the buffer type.
 *
 * Conventions are LuaSocket's, so that code written against it reads the same:
 * 1-based inclusive i, j with string.sub's clamping for data being sent
 * (buffer_meth_send in LuaSocket's buffer.c, to the letter); sends return the
 * index of the last byte sent; failures return nil, message, partial, where
 * the message is "closed" (the peer ended the stream), "timeout", or the
 * system's message. LuaSocket also says "closed" for a reset and a broken
 * pipe; here those keep the system's message ("Connection reset by peer",
 * "Broken pipe"), because recv_into's end of stream (nil, "closed", 0) must
 * not look like a reset. Bad arguments raise an error that names the
 * argument.
 */
#include "fastsock_lua.h"

#include "fastsock.h"

#include <lauxlib.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the buffer type ------------------------------------------------------ */

#define BUFFER_MT "fastsock.buffer"

/* Up to this size the bytes live inside the userdata and are zeroed by
 * memset, which costs less than a mapping. Above it they are an anonymous
 * mapping: the kernel hands its pages out zeroed on first touch, so a fresh
 * buffer of any size shows only zeros and costs no pass over its memory. */
#define BUFFER_INLINE_MAX ((size_t)64 * 1024)
#define HUGE_PAGE ((size_t)2 * 1024 * 1024)
/* recvall's scratch below this comes from malloc, which keeps freed blocks
 * up to 32 MiB (glibc's largest mmap threshold) for reuse. */
#define RECVALL_HEAP_MAX ((size_t)32 * 1024 * 1024)

/* BUFFER_HEAP: recvall's scratch only, never a user's buffer (its bytes are
 * not zeroed). */
enum buffer_kind { BUFFER_INLINE, BUFFER_MAPPED, BUFFER_HEAP };

typedef struct buffer {
    unsigned char *data; /* NULL once released: nothing can free it twice */
    size_t len;
    enum buffer_kind kind;
} buffer;

/* The collector sees only the small userdata of a mapped buffer. Telling it
 * about the mapping, as if Lua had allocated it, makes dropped buffers go as
 * fast as dropped strings of the same size would, so a loop that allocates
 * large buffers stays flat instead of piling up mappings. */
static void gc_account(lua_State *L, size_t len)
{
    if (!lua_gc(L, LUA_GCISRUNNING))
        return; /* the program stopped the collector; respect that */
    size_t kb = len / 1024;
    lua_gc(L, LUA_GCSTEP, kb > INT_MAX ? INT_MAX : (int)kb);
}

/* Pushes a new zeroed buffer; NULL (errno set) when the memory isn't there. */
static buffer *buffer_push(lua_State *L, size_t len, int account)
{
    int inline_data = len <= BUFFER_INLINE_MAX;
    buffer *b = lua_newuserdatauv(L, sizeof *b + (inline_data ? len : 0), 0);
    b->data = NULL;
    b->len = 0;
    b->kind = BUFFER_INLINE;
    luaL_setmetatable(L, BUFFER_MT);
    if (inline_data) {
        b->data = (unsigned char *)(b + 1);
        memset(b->data, 0, len);
        b->len = len;
        return b;
    }
    if (account)
        gc_account(L, len); /* first, so that dead buffers go before this one maps */
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
    /* First touch of a fresh page is a fault, and at 4 KiB a page the faults
     * cost more than the copy into them (measured: ~650 ms for 256 MiB).
     * Huge pages cut their number 512-fold where the system allows them. */
    if (len >= HUGE_PAGE)
        madvise(p, len, MADV_HUGEPAGE);
#endif
    b->data = p;
    b->len = len;
    b->kind = BUFFER_MAPPED;
    return b;
}

static void buffer_release(buffer *b)
{
    if (b->data != NULL && b->kind == BUFFER_MAPPED)
        munmap(b->data, b->len);
    if (b->data != NULL && b->kind == BUFFER_HEAP)
        free(b->data);
    b->data = NULL;
    b->len = 0;
}

static buffer *check_buffer(lua_State *L, int idx)
{
    buffer *b = luaL_checkudata(L, idx, BUFFER_MT);
    if (b->data == NULL)
        luaL_argerror(L, idx, "buffer has been closed");
    return b;
}

/* string.sub's reading of a start and an end position (lstrlib.c). */
static size_t start_pos(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 1;
    return len + (size_t)pos + 1;
}

static size_t end_pos(lua_Integer pos, size_t len)
{
    if (pos > (lua_Integer)len)
        return len;
    if (pos >= 0)
        return (size_t)pos;
    if (pos < -(lua_Integer)len)
        return 0;
    return len + (size_t)pos + 1;
}

int fastsock_lua_buffer(lua_State *L)
{
    lua_Integer size = luaL_checkinteger(L, 1);
    luaL_argcheck(L, size >= 0, 1, "negative size");
    if (buffer_push(L, (size_t)size, 1) == NULL)
        return luaL_error(L, "fastsock.buffer: cannot allocate %I bytes (%s)", size,
                          strerror(errno));
    return 1;
}

static int buffer_len(lua_State *L)
{
    /* Lua 5.4 passes the operand twice; the second is of no interest. */
    lua_pushinteger(L, (lua_Integer)check_buffer(L, 1)->len);
    return 1;
}

static int buffer_tostring_method(lua_State *L)
{
    buffer *b = check_buffer(L, 1);
    size_t i = start_pos(luaL_optinteger(L, 2, 1), b->len);
    size_t j = end_pos(luaL_optinteger(L, 3, -1), b->len);
    if (i > j)
        lua_pushliteral(L, "");
    else
        lua_pushlstring(L, (const char *)b->data + i - 1, j - i + 1);
    return 1;
}

/* buf:byte([i [, j]]) answers as string.byte does on the same bytes. */
static int buffer_byte(lua_State *L)
{
    buffer *b = check_buffer(L, 1);
    lua_Integer raw_i = luaL_optinteger(L, 2, 1);
    size_t j = end_pos(luaL_optinteger(L, 3, raw_i), b->len);
    size_t i = start_pos(raw_i, b->len);
    if (i > j)
        return 0;
    if (j - i >= (size_t)INT_MAX)
        return luaL_error(L, "buffer slice too long");
    int n = (int)(j - i) + 1;
    luaL_checkstack(L, n, "buffer slice too long");
    for (int k = 0; k < n; k++)
        lua_pushinteger(L, b->data[i + (size_t)k - 1]);
    return n;
}

/* buf:fill(byte [, i [, j]]) sets bytes i..j (clamped as string.sub) and
 * returns the buffer. */
static int buffer_fill(lua_State *L)
{
    buffer *b = check_buffer(L, 1);
    lua_Integer v = luaL_checkinteger(L, 2);
    luaL_argcheck(L, v >= 0 && v <= 255, 2, "byte value out of range");
    size_t i = start_pos(luaL_optinteger(L, 3, 1), b->len);
    size_t j = end_pos(luaL_optinteger(L, 4, -1), b->len);
    if (i <= j)
        memset(b->data + i - 1, (int)v, j - i + 1);
    lua_settop(L, 1);
    return 1;
}

static int buffer_gc(lua_State *L)
{
    buffer_release(luaL_checkudata(L, 1, BUFFER_MT));
    return 0;
}

static int buffer_repr(lua_State *L)
{
    buffer *b = luaL_checkudata(L, 1, BUFFER_MT);
    if (b->data == NULL)
        lua_pushfstring(L, BUFFER_MT " (closed): %p", (void *)b);
    else
        lua_pushfstring(L, BUFFER_MT " (%I bytes): %p", (lua_Integer)b->len, (void *)b);
    return 1;
}

void fastsock_lua_open(lua_State *L)
{
    static const luaL_Reg meta[] = {
        { "__len", buffer_len },
        { "__gc", buffer_gc },
        { "__close", buffer_gc }, /* local buf <close> = fastsock.buffer(n) */
        { "__tostring", buffer_repr },
        { NULL, NULL },
    };
    static const luaL_Reg methods[] = {
        { "tostring", buffer_tostring_method },
        { "byte", buffer_byte },
        { "fill", buffer_fill },
        { NULL, NULL },
    };
    if (luaL_newmetatable(L, BUFFER_MT)) {
        luaL_setfuncs(L, meta, 0);
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushliteral(L, "fastsock.buffer");
        lua_setfield(L, -2, "__metatable"); /* scripts can't swap the methods */
    }
    lua_pop(L, 1);
}

/* ---- arguments ---------------------------------------------------------------- */

/* Bytes stdio has read ahead from the fd and holds for the next read: a
 * transfer on the fd would skip them. Only glibc lets us look. */
static int stdio_has_readahead(FILE *f)
{
#if defined(__GLIBC__)
    return f->_IO_read_ptr < f->_IO_read_end;
#else
    (void)f;
    return 0;
#endif
}

/* Calls obj:name() if obj has such a method; 1 with the result pushed, else 0. */
static int call_method(lua_State *L, int idx, const char *name)
{
    if (lua_getfield(L, idx, name) != LUA_TFUNCTION) {
        lua_pop(L, 1);
        return 0;
    }
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    return 1;
}

#define SOCK_TYPES "socket (LuaSocket object, file handle or integer fd)"

/* The argument error for an fd that is no socket (ENOTSOCK) or not open. */
static void not_a_socket(lua_State *L, int idx, int err)
{
    if (err == ENOTSOCK)
        luaL_argerror(L, idx, "not a socket");
    luaL_argerror(L, idx, lua_pushfstring(L, "not an open file descriptor (%s)", strerror(err)));
}

/* An argument error unless fd is an open socket. */
static void verify_sock(lua_State *L, int idx, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        not_a_socket(L, idx, errno);
    if (!S_ISSOCK(st.st_mode))
        not_a_socket(L, idx, ENOTSOCK);
}

/*
 * The fd behind a socket argument: a LuaSocket object (getfd), an io file
 * handle (inetd and systemd hand sockets over as stdin/stdout) or an integer
 * fd. A receive refuses a LuaSocket object whose own buffer holds unread
 * bytes: receiving under it would skip them.
 * Without `verify` the fd is not checked to be an open socket: the
 * single-shot calls, made once per message in event loops, leave that to
 * their one system call and its ENOTSOCK/EBADF (see raise_if_not_socket),
 * which saves an fstat per call.
 */
static int check_sock(lua_State *L, int idx, int receiving, int verify)
{
    lua_Integer fd = -1;
    int isint = 0;
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        fd = lua_tointegerx(L, idx, &isint);
        if (!isint || fd < 0 || fd > INT_MAX)
            return luaL_argerror(L, idx, "not a file descriptor");
        break;
    case LUA_TUSERDATA: {
        luaL_Stream *stream = luaL_testudata(L, idx, LUA_FILEHANDLE);
        if (stream != NULL) {
            if (stream->closef == NULL)
                return luaL_argerror(L, idx, "file handle is closed");
            if (receiving && stdio_has_readahead(stream->f))
                return luaL_argerror(L, idx, "file handle holds buffered input; read it first");
            fflush(stream->f); /* what was written through stdio goes first */
            fd = fileno(stream->f);
            break;
        }
        /* Duck-typed like LuaSocket's own helpers: anything with getfd(),
         * whose metatable lets us index it. */
        if (luaL_testudata(L, idx, BUFFER_MT) != NULL ||
            luaL_getmetafield(L, idx, "__index") == LUA_TNIL)
            return luaL_typeerror(L, idx, SOCK_TYPES);
        lua_pop(L, 1);
        if (!call_method(L, idx, "getfd"))
            return luaL_typeerror(L, idx, SOCK_TYPES);
        fd = lua_tointegerx(L, -1, &isint); /* LuaSocket returns a float */
        lua_pop(L, 1);
        if (!isint || fd > INT_MAX)
            return luaL_argerror(L, idx, "getfd() did not return a file descriptor");
        if (fd < 0)
            return luaL_argerror(L, idx, "socket is closed");
        if (receiving && call_method(L, idx, "dirty")) {
            int dirty = lua_toboolean(L, -1);
            lua_pop(L, 1);
            if (dirty)
                return luaL_argerror(L, idx, "socket holds unread data in LuaSocket's buffer "
                                             "(sock:dirty()); read it with sock:receive first");
        }
        break;
    }
    default:
        return luaL_typeerror(L, idx, SOCK_TYPES);
    }
    if (verify)
        verify_sock(L, idx, (int)fd);
    return (int)fd;
}

/* After a single-shot call on an unverified fd: the same argument errors
 * that check_sock's fstat gives. */
static void raise_if_not_socket(lua_State *L, int idx, fastsock_result rc)
{
    if (rc == -EBADF || rc == -ENOTSOCK)
        not_a_socket(L, idx, (int)-rc);
}

/* Bytes to send: a string (or a number, as LuaSocket takes) or a buffer. */
static const char *check_data(lua_State *L, int idx, size_t *len)
{
    buffer *b = luaL_testudata(L, idx, BUFFER_MT);
    if (b != NULL) {
        if (b->data == NULL)
            luaL_argerror(L, idx, "buffer has been closed");
        *len = b->len;
        return (const char *)b->data;
    }
    if (!lua_isstring(L, idx))
        luaL_typeerror(L, idx, "string or " BUFFER_MT);
    return lua_tolstring(L, idx, len);
}

/* A count argument: absent or nil means all, FASTSOCK_ALL for the core. */
static size_t opt_count(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx))
        return FASTSOCK_ALL;
    lua_Integer n = luaL_checkinteger(L, idx);
    luaL_argcheck(L, n >= 0, idx, "negative count");
    return (size_t)n;
}

/* A 1-based start index into a buffer being written: 1 .. #buf + 1. The core
 * checks the range; an i below 1 wraps to an offset it refuses. */
static size_t opt_start(lua_State *L, int idx)
{
    return (size_t)(luaL_optinteger(L, idx, 1) - 1);
}

/*
 * Seconds, as LuaSocket's settimeout takes them: nil or negative waits as
 * long as it takes, 0 never waits. A LuaSocket object's own timeout can't be
 * read through its API, so it does not apply: only this argument does.
 */
static int64_t check_timeout(lua_State *L, int idx, int zero_allowed)
{
    if (lua_isnoneornil(L, idx))
        return -1;
    lua_Number t = luaL_checknumber(L, idx);
    luaL_argcheck(L, !isnan(t), idx, "timeout is NaN");
    if (t < 0)
        return -1;
    if (t == 0) {
        if (!zero_allowed)
            luaL_argerror(L, idx, "0 (never wait) is for send and recv_into: an "
                                  "all-or-nothing transfer needs time to complete");
        return 0;
    }
    lua_Number ms = ceil(t * 1000);
    return ms >= 9.0e18 ? -1 : (int64_t)ms;
}

/* ---- calls and results -------------------------------------------------------- */

typedef struct call {
    fastsock_ctl ctl;
    lua_State *L;
    lua_Hook hook;
    int hookmask;
} call;

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

static void call_init(call *c, lua_State *L, int64_t timeout_ms)
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

static const char *error_message(fastsock_result rc)
{
    switch (rc) {
    case FASTSOCK_EOF:
        return "closed";
    case -ETIMEDOUT:
    case -EAGAIN:
        return "timeout";
    default:
        return fastsock_strerror(rc);
    }
}

/* nil, message, partial. */
static int fail(lua_State *L, fastsock_result rc, lua_Integer partial)
{
    lua_pushnil(L);
    lua_pushstring(L, error_message(rc));
    lua_pushinteger(L, partial);
    return 3;
}

/* The core's range codes name the argument at fault. */
static void check_range_result(lua_State *L, fastsock_result rc, int start_arg, int count_arg)
{
    if (rc == FASTSOCK_EOFFSET)
        luaL_argerror(L, start_arg, "index out of range for the buffer");
    if (rc == FASTSOCK_ECOUNT)
        luaL_argerror(L, count_arg, "count goes beyond the end of the buffer");
}

/* ---- the transfers ------------------------------------------------------------ */

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

static int push_bytes(lua_State *L)
{
    lua_pushlstring(L, lua_touserdata(L, 1), (size_t)lua_tointeger(L, 2));
    return 1;
}

/* Pushes a copy of p[0, n) as a string. The allocator is swapped only for
 * this copy and put back before any error propagates (hence the pcall). */
static void push_large(lua_State *L, const char *p, size_t n)
{
    void *ud;
    lua_Alloc f = lua_getallocf(L, &ud);
    advising_alloc a = { f, ud, n };
    lua_pushcfunction(L, push_bytes);
    lua_pushlightuserdata(L, (void *)p);
    lua_pushinteger(L, (lua_Integer)n);
    lua_setallocf(L, advising_alloc_fn, &a);
    int rc = lua_pcall(L, 2, 1, 0);
    lua_setallocf(L, f, ud);
    if (rc != LUA_OK)
        lua_error(L);
}

/* recvall(sock, n [, timeout]) -> data | nil, err, partial */
int fastsock_lua_recvall(lua_State *L)
{
    int fd = check_sock(L, 1, 1, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0, 2, "negative size");
    call c;
    call_init(&c, L, check_timeout(L, 3, 0));
    /* Lua 5.4 can't hand out a string to be filled, so the bytes land in a
     * scratch buffer and are copied once into the result (the contract's
     * one unavoidable copy); the scratch goes at once, not at the next GC. */
    buffer *scratch;
    if ((size_t)n < RECVALL_HEAP_MAX) {
        /* malloc hands back memory it already has, where a mapping of its
         * own faults on every page (measured: at 1 MiB that made recvall
         * slower than LuaSocket, at 16 MiB half as fast as this). */
        scratch = lua_newuserdatauv(L, sizeof *scratch, 0);
        scratch->data = NULL;
        scratch->len = 0;
        scratch->kind = BUFFER_HEAP;
        luaL_setmetatable(L, BUFFER_MT); /* its __gc frees it if an error comes first */
        scratch->data = malloc(n > 0 ? (size_t)n : 1);
        scratch->len = (size_t)n;
        if (scratch->data == NULL)
            errno = ENOMEM;
    } else {
        scratch = buffer_push(L, (size_t)n, 0);
    }
    if (scratch == NULL || scratch->data == NULL)
        return luaL_error(L, "fastsock.recvall: cannot allocate %I bytes (%s)", n,
                          strerror(errno));
    /* Memory malloc recycled: a walk over present pages. Fresh memory: huge
     * pages, faulted in at once. */
    fastsock_advise_fresh(scratch->data, (size_t)n);
    fastsock_result rc = fastsock_recvall(fd, scratch->data, (size_t)n, 0, (size_t)n, &c.ctl);
    if (c.ctl.moved >= HUGE_PAGE)
        push_large(L, (const char *)scratch->data, c.ctl.moved);
    else
        lua_pushlstring(L, (const char *)scratch->data, c.ctl.moved);
    buffer_release(scratch);
    if (rc >= 0)
        return 1;
    lua_pushnil(L);
    lua_pushstring(L, error_message(rc));
    lua_rotate(L, -3, -1); /* data, nil, err -> nil, err, data */
    return 3;
}

/* recvall_into(sock, buf, n [, i [, timeout]]) -> n | nil, err, count */
int fastsock_lua_recvall_into(lua_State *L)
{
    int fd = check_sock(L, 1, 1, 1);
    buffer *b = check_buffer(L, 2);
    size_t count = opt_count(L, 3);
    size_t offset = opt_start(L, 4);
    call c;
    call_init(&c, L, check_timeout(L, 5, 0));
    fastsock_result rc = fastsock_recvall(fd, b->data, b->len, offset, count, &c.ctl);
    check_range_result(L, rc, 4, 3);
    if (rc >= 0) {
        lua_pushinteger(L, rc);
        return 1;
    }
    return fail(L, rc, (lua_Integer)c.ctl.moved);
}

/* recv_into(sock, buf [, n [, i [, timeout]]]) -> count | nil, err, 0 */
int fastsock_lua_recv_into(lua_State *L)
{
    int fd = check_sock(L, 1, 1, 0);
    buffer *b = check_buffer(L, 2);
    size_t count = opt_count(L, 3);
    size_t offset = opt_start(L, 4);
    call c;
    call_init(&c, L, check_timeout(L, 5, 1));
    fastsock_result rc = fastsock_recv(fd, b->data, b->len, offset, count, 0, &c.ctl);
    check_range_result(L, rc, 4, 3);
    raise_if_not_socket(L, 1, rc);
    /* rc >= 0 means the range held, so len - offset is the count "all" meant. */
    size_t asked = count == FASTSOCK_ALL ? b->len - offset : count;
    if (rc > 0 || (rc == 0 && asked == 0)) {
        lua_pushinteger(L, rc);
        return 1;
    }
    return fail(L, rc == 0 ? FASTSOCK_EOF : rc, (lua_Integer)c.ctl.moved);
}

/* send / sendall(sock, data [, i [, j [, timeout]]]) -> last | nil, err, last */
static int send_common(lua_State *L, int all)
{
    int fd = check_sock(L, 1, 0, all);
    size_t len;
    const char *data = check_data(L, 2, &len);
    lua_Integer start = luaL_optinteger(L, 3, 1);
    lua_Integer end = luaL_optinteger(L, 4, -1);
    call c;
    call_init(&c, L, check_timeout(L, 5, !all));
    /* LuaSocket's buffer_meth_send: an empty range sends nothing and
     * answers start - 1, even past the end. */
    lua_Integer size = (lua_Integer)len;
    if (start < 0)
        start = size + start + 1;
    if (end < 0)
        end = size + end + 1;
    if (start < 1)
        start = 1;
    if (end > size)
        end = size;
    if (start > end) {
        if (!all)
            verify_sock(L, 1, fd); /* no system call below to tell */
        lua_pushinteger(L, start - 1);
        return 1;
    }
    size_t offset = (size_t)(start - 1), count = (size_t)(end - start + 1);
    fastsock_result rc = all ? fastsock_sendall(fd, data, len, offset, count, &c.ctl)
                             : fastsock_send(fd, data, len, offset, count, &c.ctl);
    if (!all)
        raise_if_not_socket(L, 1, rc);
    if (rc >= 0) {
        lua_pushinteger(L, start - 1 + rc);
        return 1;
    }
    return fail(L, rc, start - 1 + (lua_Integer)c.ctl.moved);
}

int fastsock_lua_send(lua_State *L)
{
    return send_common(L, 0);
}

int fastsock_lua_sendall(lua_State *L)
{
    return send_common(L, 1);
}

/* sendfile(sock, file [, offset [, count [, timeout]]]) -> sent | nil, err, sent
 * file: an io handle (flushed first), an fd, or a path. A seekable file is
 * left positioned after the bytes sent, as Python's socket.sendfile leaves it. */
int fastsock_lua_sendfile(lua_State *L)
{
    int sock = check_sock(L, 1, 0, 1);
    lua_Integer offset = luaL_optinteger(L, 3, 0);
    luaL_argcheck(L, offset >= 0, 3, "negative offset");
    size_t count = opt_count(L, 4);
    call c;
    call_init(&c, L, check_timeout(L, 5, 0));

    int file = -1;
    FILE *stream = NULL;
    const char *path = NULL;
    int isint = 0;
    switch (lua_type(L, 2)) {
    case LUA_TNUMBER: {
        lua_Integer v = lua_tointegerx(L, 2, &isint);
        if (!isint || v < 0 || v > INT_MAX)
            return luaL_argerror(L, 2, "not a file descriptor");
        file = (int)v;
        break;
    }
    case LUA_TSTRING:
        path = lua_tostring(L, 2);
        break;
    case LUA_TUSERDATA: {
        luaL_Stream *s = luaL_testudata(L, 2, LUA_FILEHANDLE);
        if (s == NULL)
            return luaL_typeerror(L, 2, "file handle, fd or path");
        if (s->closef == NULL)
            return luaL_argerror(L, 2, "file handle is closed");
        stream = s->f;
        file = fileno(stream);
        break;
    }
    default:
        return luaL_typeerror(L, 2, "file handle, fd or path");
    }
    struct stat st;
    if (path == NULL && fstat(file, &st) < 0)
        return luaL_argerror(L, 2, lua_pushfstring(L, "not an open file descriptor (%s)",
                                                   strerror(errno)));
    int seekable = path != NULL || S_ISREG(st.st_mode) || S_ISBLK(st.st_mode);
    if (stream != NULL) {
        /* A pipe's read-ahead would be skipped; a seekable file is read at
         * the given offset, so its read-ahead does not matter. */
        if (!seekable && stdio_has_readahead(stream))
            return luaL_argerror(L, 2, "file handle holds buffered input; read it first");
        if (fflush(stream) != 0)
            return fail(L, -errno, 0);
    }
    if (path != NULL) {
        file = open(path, O_RDONLY | O_CLOEXEC);
        if (file < 0) {
            lua_pushnil(L);
            lua_pushfstring(L, "%s: %s", path, strerror(errno));
            lua_pushinteger(L, 0);
            return 3;
        }
    }
    fastsock_result rc = fastsock_sendfile(sock, file, (int64_t)offset, count, &c.ctl);
    off_t end = (off_t)offset + (off_t)c.ctl.moved;
    if (path != NULL)
        close(file);
    else if (stream != NULL && seekable)
        fseeko(stream, end, SEEK_SET);
    else if (seekable)
        lseek(file, end, SEEK_SET);
    if (rc >= 0) {
        lua_pushinteger(L, rc);
        return 1;
    }
    return fail(L, rc, (lua_Integer)c.ctl.moved);
}
