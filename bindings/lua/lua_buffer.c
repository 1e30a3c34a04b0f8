/*
 * fastsock.buffer: Lua 5.4 strings are immutable, so this is the mutable,
 * fixed-size byte buffer the receives write into and the sends read from.
 * A buffer never shows bytes that were not written into it: it starts zeroed.
 * While a suspended transfer (a receiver, a sender, a call waiting in a
 * coroutine) uses it, it is pinned and refuses to close, so no transfer can
 * write into freed memory.
 */
/*** fastsock for Lua 5.4 (LDoc: `ldoc bindings/lua` writes bindings/lua/doc/).
 * @module fastsock.buffer
 */
#include "fastsock_lua.h"

#include <lauxlib.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define BUFFER_MT FASTSOCK_LUA_BUFFER_MT

/* Up to this size the bytes live inside the userdata and are zeroed by
 * memset, which costs less than a mapping. Above it they are an anonymous
 * mapping: the kernel hands its pages out zeroed on first touch, so a fresh
 * buffer of any size shows only zeros and costs no pass over its memory. */
#define BUFFER_INLINE_MAX ((size_t)64 * 1024)
#define HUGE_PAGE ((size_t)2 * 1024 * 1024)
/* recvall's scratch below this comes from malloc, which keeps freed blocks
 * up to 32 MiB (glibc's largest mmap threshold) for reuse. */
#define SCRATCH_HEAP_MAX ((size_t)32 * 1024 * 1024)

typedef fastsock_lua_buf buffer;

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

static buffer *new_userdata(lua_State *L, size_t extra)
{
    buffer *b = lua_newuserdatauv(L, sizeof *b + extra, 0);
    b->data = NULL;
    b->len = 0;
    b->kind = BUFFER_INLINE;
    b->pins = 0;
    luaL_setmetatable(L, BUFFER_MT); /* its __gc frees the memory if an error comes first */
    return b;
}

fastsock_lua_buf *fastsock_lua_buffer_push(lua_State *L, size_t len, int account)
{
    int inline_data = len <= BUFFER_INLINE_MAX;
    buffer *b = new_userdata(L, inline_data ? len : 0);
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

/* The largest scratch mapping a recvall gave back, kept for the next large
 * one: a mapping of its own costs a page fault per page on first touch,
 * which on this project's machine made a fresh 64 MiB recvall run at a
 * quarter of the speed of one into memory already there. Its pages are
 * given MADV_FREE meanwhile, so the kernel takes them back under memory
 * pressure; Lua frees it at lua_close. */
static const char spare_key = 's';

fastsock_lua_buf *fastsock_lua_scratch_push(lua_State *L, size_t len, int *fresh)
{
    if (len >= SCRATCH_HEAP_MAX) {
        if (lua_rawgetp(L, LUA_REGISTRYINDEX, &spare_key) == LUA_TUSERDATA) {
            buffer *spare = lua_touserdata(L, -1);
            if (spare->data != NULL && spare->len >= len) {
                lua_pushnil(L);
                lua_rawsetp(L, LUA_REGISTRYINDEX, &spare_key);
                *fresh = 0;
                return spare; /* on the top */
            }
        }
        lua_pop(L, 1);
        *fresh = 1;
        return fastsock_lua_buffer_push(L, len, 0);
    }
    /* malloc hands back memory it already has, where a mapping of its own
     * faults on every page (measured: at 1 MiB that made recvall slower than
     * LuaSocket, at 16 MiB half as fast as this). */
    *fresh = 0;
    buffer *b = new_userdata(L, 0);
    b->kind = BUFFER_HEAP;
    b->data = malloc(len > 0 ? len : 1);
    if (b->data == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    b->len = len;
    return b;
}

void fastsock_lua_scratch_done(lua_State *L, int idx)
{
    buffer *b = lua_touserdata(L, idx);
    if (b->kind != BUFFER_MAPPED || b->data == NULL) {
        fastsock_lua_buffer_release(b);
        return;
    }
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &spare_key) == LUA_TUSERDATA) {
        buffer *spare = lua_touserdata(L, -1);
        if (spare->data != NULL && spare->len >= b->len) {
            lua_pop(L, 1);
            fastsock_lua_buffer_release(b); /* the spare is the larger: keep it */
            return;
        }
        fastsock_lua_buffer_release(spare);
    }
    lua_pop(L, 1);
#ifdef MADV_FREE
    madvise(b->data, b->len, MADV_FREE);
#endif
    lua_pushvalue(L, idx);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &spare_key);
}

void fastsock_lua_buffer_release(fastsock_lua_buf *b)
{
    if (b->data != NULL && b->kind == BUFFER_MAPPED)
        munmap(b->data, b->len);
    if (b->data != NULL && b->kind == BUFFER_HEAP)
        free(b->data);
    b->data = NULL;
    b->len = 0;
}

fastsock_lua_buf *fastsock_lua_test_buffer(lua_State *L, int idx)
{
    buffer *b = luaL_testudata(L, idx, BUFFER_MT);
    if (b != NULL && b->data == NULL)
        luaL_argerror(L, idx, "buffer has been closed");
    return b;
}

fastsock_lua_buf *fastsock_lua_check_buffer(lua_State *L, int idx)
{
    buffer *b = luaL_checkudata(L, idx, BUFFER_MT);
    if (b->data == NULL)
        luaL_argerror(L, idx, "buffer has been closed");
    return b;
}

/*** A new mutable buffer: of size bytes, zeroed; or holding a copy of a
 * string (data to find and split in, or to send from and receive into).
 * @function buffer
 * @param size_or_string an integer, or a string to copy
 * @return a `fastsock.buffer` */
int fastsock_lua_buffer(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, 1, &len);
        fastsock_lua_buf *b = fastsock_lua_buffer_push(L, len, 1);
        if (b == NULL)
            return fastsock_lua_nomem(L, "buffer", (lua_Integer)len, errno);
        if (len > 0)
            memcpy(b->data, s, len);
        return 1;
    }
    lua_Integer size = luaL_checkinteger(L, 1);
    luaL_argcheck(L, size >= 0, 1, "negative size");
    if (fastsock_lua_buffer_push(L, (size_t)size, 1) == NULL)
        return fastsock_lua_nomem(L, "buffer", size, errno);
    return 1;
}

static int buffer_len(lua_State *L)
{
    /* Lua 5.4 passes the operand twice; the second is of no interest. */
    lua_pushinteger(L, (lua_Integer)fastsock_lua_check_buffer(L, 1)->len);
    return 1;
}

static int buffer_tostring_method(lua_State *L)
{
    buffer *b = fastsock_lua_check_buffer(L, 1);
    size_t i = fastsock_lua_start_pos(luaL_optinteger(L, 2, 1), b->len);
    size_t j = fastsock_lua_end_pos(luaL_optinteger(L, 3, -1), b->len);
    if (i > j)
        lua_pushliteral(L, "");
    else
        lua_pushlstring(L, (const char *)b->data + i - 1, j - i + 1);
    return 1;
}

/* buf:byte([i [, j]]) answers as string.byte does on the same bytes. */
static int buffer_byte(lua_State *L)
{
    buffer *b = fastsock_lua_check_buffer(L, 1);
    lua_Integer raw_i = luaL_optinteger(L, 2, 1);
    size_t j = fastsock_lua_end_pos(luaL_optinteger(L, 3, raw_i), b->len);
    size_t i = fastsock_lua_start_pos(raw_i, b->len);
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
    buffer *b = fastsock_lua_check_buffer(L, 1);
    lua_Integer v = luaL_checkinteger(L, 2);
    luaL_argcheck(L, v >= 0 && v <= 255, 2, "byte value out of range");
    size_t i = fastsock_lua_start_pos(luaL_optinteger(L, 3, 1), b->len);
    size_t j = fastsock_lua_end_pos(luaL_optinteger(L, 4, -1), b->len);
    if (i <= j)
        memset(b->data + i - 1, (int)v, j - i + 1);
    lua_settop(L, 1);
    return 1;
}

/* buf:close(), and the end of `local buf <close>`: frees the memory now. A
 * pinned buffer refuses: a suspended transfer would write into freed
 * memory. Closing twice is harmless, as for io handles' __close. */
static int buffer_close(lua_State *L)
{
    buffer *b = luaL_checkudata(L, 1, BUFFER_MT);
    if (b->pins > 0)
        return luaL_error(L, "fastsock.buffer: cannot close a buffer that a transfer is "
                             "using (a receiver, a sender or a call suspended in a "
                             "coroutine); close or finish that first");
    fastsock_lua_buffer_release(b);
    return 0;
}

/* The collector reaches a pinned buffer only together with the transfer
 * pinning it, which is unreachable too and never steps again. */
static int buffer_gc(lua_State *L)
{
    fastsock_lua_buffer_release(luaL_checkudata(L, 1, BUFFER_MT));
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

void fastsock_lua_open_buffer(lua_State *L)
{
    static const luaL_Reg meta[] = {
        { "__len", buffer_len },
        { "__gc", buffer_gc },
        { "__close", buffer_close }, /* local buf <close> = fastsock.buffer(n) */
        { "__tostring", buffer_repr },
        { NULL, NULL },
    };
    static const luaL_Reg methods[] = {
        { "tostring", buffer_tostring_method },
        { "byte", buffer_byte },
        { "fill", buffer_fill },
        { "close", buffer_close },
        { NULL, NULL },
    };
    fastsock_lua_new_class(L, BUFFER_MT, meta, methods);
}
