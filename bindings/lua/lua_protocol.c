/*
 * Writing a protocol client with fastsock alone: sendallv (a header, a body
 * and a trailer as one stream, with no join), recvfile (socket to file, in
 * the kernel), fastsock.reader (a line up to a delimiter, then a body, with
 * no byte read past what the program asked for lost to the socket), and
 * find/split inside strings and buffers, which hand out positions instead
 * of copies.
 *
 * Under a scheduler (lua_scheduler.c) the reader cooperates: readuntil asks
 * the core never to wait and, when the line is not all there, waits through
 * the scheduler and asks again (what came stays in the look-ahead);
 * reader:recvall hands out the look-ahead, then receives the rest through
 * fastsock.recvall, which steps. sendallv and recvfile (of a regular file)
 * do the same with the core's blocking calls, which have no progressive
 * form: each call is given timeout 0 (never wait) and at most CALL_BUDGET
 * bytes, and between calls the coroutine waits through the scheduler, its
 * state (what is left, the pieces kept alive and their buffers pinned, the
 * socket's direction) in a to-be-closed userdata.
 */
/*** fastsock for Lua 5.4 (LDoc: `ldoc bindings/lua` writes bindings/lua/doc/).
 * @module fastsock.protocol
 */
#include "fastsock_lua.h"

#include <lauxlib.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define READER_MT "fastsock.reader"

/* sendallv's pieces up to this many are described on the C stack (the
 * core's sendmsg batch); more in a userdata the collector frees. */
#define PIECES_ON_STACK 256

/* Not "fastsock.<type>": no program gets one. */
#define PWAIT_MT "fastsock (protocol call waiting)"

/* Under a scheduler, the bytes one never-waiting core call of sendallv or
 * recvfile moves at most before the coroutine gives the scheduler a turn:
 * about a millisecond of loopback copy, as the progressive objects' steps. */
#define CALL_BUDGET ((size_t)1 << 20)

/* ---- waiting between core calls under a scheduler ------------------------------ */

/* The state of a sendallv, recvfile or readuntil that waits in a scheduler
 * between never-waiting core calls. Its uservalue is a table of the sendallv
 * pieces' data (the strings kept alive, the buffers pinned while it lives),
 * so that a program that changes its table or closes a buffer meanwhile
 * can't pull memory from under the iovecs. */
typedef struct pwait {
    int fd;
    unsigned claim;        /* the socket's direction held; 0 once given back */
    int64_t deadline;
    size_t moved;
    /* sendallv: the pieces left, from iov[first] */
    size_t n, first;
    /* recvfile */
    fastsock_lua_file file;
    int64_t offset;        /* where byte 0 goes (positioned files) */
    size_t count;
    int positioned, append;
    struct iovec iov[];
} pwait;

static void pwait_release(lua_State *L, int idx)
{
    pwait *w = lua_touserdata(L, idx);
    if (w->claim != 0)
        fastsock_lua_unclaim(L, w->fd, w->claim);
    w->claim = 0;
    if (lua_getiuservalue(L, idx, 1) == LUA_TTABLE) {
        lua_Integer k = 1;
        while (lua_rawgeti(L, -1, k++) != LUA_TNIL) {
            fastsock_lua_buf *b = luaL_testudata(L, -1, FASTSOCK_LUA_BUFFER_MT);
            if (b != NULL)
                b->pins--;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_setiuservalue(L, idx, 1); /* unpinned once */
    }
    lua_pop(L, 1);
}

/* __close (coroutine.close, the end of the call) and __gc (a dropped
 * coroutine). */
static int pwait_close(lua_State *L)
{
    luaL_checkudata(L, 1, PWAIT_MT);
    pwait_release(L, 1);
    return 0;
}

/* Pushes the state, with room for n iovecs, as a to-be-closed slot. */
static pwait *pwait_push(lua_State *L, int fd, size_t n, int64_t timeout_ms)
{
    if (n > (SIZE_MAX - sizeof(pwait)) / sizeof(struct iovec))
        luaL_error(L, "too many pieces");
    pwait *w = lua_newuserdatauv(L, sizeof *w + n * sizeof(struct iovec), 1);
    memset(w, 0, sizeof *w);
    w->fd = fd;
    w->n = n;
    w->deadline = fastsock_deadline(timeout_ms);
    w->file.fd = -1;
    luaL_setmetatable(L, PWAIT_MT);
    lua_toclose(L, lua_gettop(L));
    return w;
}

/* 0 while the socket argument at idx still names fd; -EBADF once the
 * program closed it (another coroutine's close): the number may be
 * another file's now. */
static fastsock_result sock_unchanged(lua_State *L, int idx, int fd)
{
    if (lua_type(L, idx) != LUA_TUSERDATA)
        return 0;
    int open = 1;
    luaL_Stream *s = luaL_testudata(L, idx, LUA_FILEHANDLE);
    if (s != NULL) {
        open = s->closef != NULL;
    } else if (luaL_getmetafield(L, idx, "__index") != LUA_TNIL) {
        lua_pop(L, 1);
        if (lua_getfield(L, idx, "getfd") == LUA_TFUNCTION) {
            lua_pushvalue(L, idx);
            lua_call(L, 1, 1);
            int isint = 0;
            lua_Integer got = lua_tointegerx(L, -1, &isint);
            open = isint && got == fd;
        }
        lua_pop(L, 1);
    }
    return open ? 0 : -EBADF;
}

/* Waits through the scheduler for events on the state's fd; the pollable
 * goes above the state (at widx + 1) for the wait's length. */
static void pwait_wait(lua_State *L, int widx, unsigned events, lua_KContext ctx, lua_KFunction k)
{
    pwait *w = lua_touserdata(L, widx);
    lua_settop(L, widx);
    fastsock_lua_pollable_push(L, w->fd, events, w->deadline);
    fastsock_lua_wait(L, (enum fastsock_lua_waitmode)ctx, widx + 1, ctx, k);
}

static void pwait_waited(lua_State *L, int widx)
{
    fastsock_lua_done_polling(L, lua_touserdata(L, widx + 1));
    lua_settop(L, widx);
}

/* ---- sendallv ------------------------------------------------------------------- */

static void piece_error(lua_State *L, lua_Unsigned k, const char *what)
{
    luaL_argerror(L, 2, lua_pushfstring(L, "piece %I %s", (lua_Integer)k, what));
}

/* The bytes of a string or buffer at idx; NULL when it is neither. */
static const char *piece_bytes(lua_State *L, int idx, lua_Unsigned k, size_t *len)
{
    if (lua_type(L, idx) == LUA_TSTRING)
        return lua_tolstring(L, idx, len);
    fastsock_lua_buf *b = luaL_testudata(L, idx, FASTSOCK_LUA_BUFFER_MT);
    if (b == NULL)
        return NULL;
    if (b->data == NULL)
        piece_error(L, k, "is a closed buffer");
    *len = b->len;
    return (const char *)b->data;
}

/* An i or j of a {data, i, j} piece: nil is dflt. */
static lua_Integer range_index(lua_State *L, lua_Unsigned k, lua_Integer dflt, const char *name)
{
    int isint = 1;
    lua_Integer v = lua_isnil(L, -1) ? dflt : lua_tointegerx(L, -1, &isint);
    if (!isint)
        piece_error(L, k, lua_pushfstring(L, "has a %s that is no integer", name));
    lua_pop(L, 1);
    return v;
}

/* The piece on the top of the stack, as an iovec. Strings are not
 * converted from numbers: the converted string would live only on the
 * stack, and the iovec would point into a string gone by the send. The
 * table holding the pieces keeps their strings alive. */
static void read_piece(lua_State *L, lua_Unsigned k, struct iovec *iov)
{
    size_t len;
    const char *p = piece_bytes(L, -1, k, &len);
    if (p != NULL) {
        iov->iov_base = (void *)p;
        iov->iov_len = len;
        return;
    }
    if (lua_type(L, -1) != LUA_TTABLE)
        piece_error(L, k, lua_pushfstring(L, "is a %s, not a string, a " FASTSOCK_LUA_BUFFER_MT
                                             " or {data, i, j}", luaL_typename(L, -1)));
    lua_rawgeti(L, -1, 1);
    p = piece_bytes(L, -1, k, &len);
    if (p == NULL)
        piece_error(L, k, "is a table whose [1] is no string or buffer");
    lua_pop(L, 1); /* the table keeps it */
    lua_rawgeti(L, -1, 2);
    lua_Integer i = range_index(L, k, 1, "i");
    lua_rawgeti(L, -1, 3);
    lua_Integer j = range_index(L, k, -1, "j");
    size_t offset, count;
    fastsock_lua_clip_range(len, i, j, &offset, &count); /* as sendall reads its i, j */
    iov->iov_base = (void *)(p + offset);
    iov->iov_len = count;
}

/* sendallv's stack under a scheduler: the arguments, then the state. */
enum { SV_STATE = 4 };

/* Past the bytes a core call sent, and past empty pieces. */
static void sendallv_advance(pwait *w, size_t sent)
{
    w->moved += sent;
    while (w->first < w->n && sent >= w->iov[w->first].iov_len)
        sent -= w->iov[w->first++].iov_len;
    if (w->first < w->n) {
        w->iov[w->first].iov_base = (char *)w->iov[w->first].iov_base + sent;
        w->iov[w->first].iov_len -= sent;
    }
    while (w->first < w->n && w->iov[w->first].iov_len == 0)
        w->first++;
}

/* ctx: the wait mode. */
static int sendallv_k(lua_State *L, int status, lua_KContext ctx)
{
    pwait *w = lua_touserdata(L, SV_STATE);
    if (status == LUA_YIELD)
        pwait_waited(L, SV_STATE);
    for (;;) {
        if (w->first == w->n) {
            lua_pushinteger(L, (lua_Integer)w->moved);
            return 1;
        }
        fastsock_result rc = sock_unchanged(L, 1, w->fd);
        if (rc == 0) {
            /* At most CALL_BUDGET bytes: the pieces that fit, and part of
             * the next one, whose length is put back after the call. */
            size_t k = w->first, sum = 0, cut = 0, cnt;
            while (k < w->n && sum + w->iov[k].iov_len <= CALL_BUDGET)
                sum += w->iov[k++].iov_len;
            cnt = k - w->first;
            if (k < w->n && sum < CALL_BUDGET) {
                cut = w->iov[k].iov_len;
                w->iov[k].iov_len = CALL_BUDGET - sum;
                cnt++;
            }
            fastsock_lua_call c;
            fastsock_lua_call_init(&c, L, 0);
            rc = fastsock_sendallv(w->fd, w->iov + w->first, cnt, &c.ctl);
            if (cut != 0)
                w->iov[k].iov_len = cut;
            sendallv_advance(w, c.ctl.moved);
            if (rc >= 0 || rc == -EAGAIN) {
                if (w->first < w->n && fastsock_remaining_ms(w->deadline) == 0) {
                    rc = -ETIMEDOUT;
                } else {
                    /* Not done: writable again or not, the others get a turn. */
                    pwait_wait(L, SV_STATE, FASTSOCK_WANT_WRITE, ctx, sendallv_k);
                    pwait_waited(L, SV_STATE);
                    continue;
                }
            }
        }
        return fastsock_lua_fail(L, rc, (lua_Integer)w->moved);
    }
}

/* sendallv in a coroutine that a scheduler runs: the pieces read again
 * into the state, their data kept alive and buffers pinned by it. */
static int sendallv_stepped(lua_State *L, int fd, lua_Unsigned n, int64_t timeout_ms,
                            enum fastsock_lua_waitmode mode)
{
    lua_settop(L, 3);
    pwait *w = pwait_push(L, fd, (size_t)n, timeout_ms);
    lua_createtable(L, (int)(n < INT_MAX ? n : 0), 0);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, SV_STATE, 1);
    for (lua_Unsigned k = 1; k <= n; k++) {
        lua_rawgeti(L, 2, (lua_Integer)k);
        read_piece(L, k, &w->iov[k - 1]);
        if (lua_type(L, -1) == LUA_TTABLE)
            lua_rawgeti(L, -1, 1);
        else
            lua_pushvalue(L, -1);
        fastsock_lua_buf *b = luaL_testudata(L, -1, FASTSOCK_LUA_BUFFER_MT);
        if (b != NULL)
            b->pins++;
        lua_rawseti(L, SV_STATE + 1, (lua_Integer)k); /* unpinned by pwait_release */
        lua_pop(L, 1);
    }
    lua_settop(L, SV_STATE);
    fastsock_lua_claim(L, fd, FASTSOCK_WANT_WRITE, 1);
    w->claim = FASTSOCK_WANT_WRITE;
    sendallv_advance(w, 0); /* past leading empty pieces */
    return sendallv_k(L, LUA_OK, (lua_KContext)mode);
}

/*** Sends a list of pieces as one stream, with sendmsg(2) in batches: no
 * join, no slicing. A piece is a string, a `fastsock.buffer`, or a range
 * `{data, i, j}` of either (i, j as `sendall`'s, clamped). Every piece is
 * checked before any byte moves. Under a scheduler it yields while it
 * waits, and pins the buffers it sends from until it ends.
 * @function sendallv
 * @param sock a LuaSocket object, an io handle or an fd
 * @tparam table pieces the pieces, in order
 * @number[opt] timeout seconds for the whole call (nil: none)
 * @return the bytes sent, or `nil, err, sent` (a count) */
int fastsock_lua_sendallv(lua_State *L)
{
    int fd = fastsock_lua_check_sock(L, 1, 0, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int64_t timeout_ms = fastsock_lua_check_timeout(L, 3, 0);
    lua_settop(L, 3);
    lua_Unsigned n = lua_rawlen(L, 2);
    struct iovec local[PIECES_ON_STACK], *iov = local;
    if (n > PIECES_ON_STACK) {
        luaL_argcheck(L, n <= SIZE_MAX / sizeof *iov, 2, "too many pieces");
        iov = lua_newuserdatauv(L, (size_t)n * sizeof *iov, 0);
    }
    for (lua_Unsigned k = 1; k <= n; k++) {
        lua_rawgeti(L, 2, (lua_Integer)k);
        read_piece(L, k, &iov[k - 1]);
        lua_pop(L, 1);
    }
    fastsock_lua_check_unclaimed(L, fd, FASTSOCK_WANT_WRITE, 1);
    enum fastsock_lua_waitmode mode = fastsock_lua_waitmode(L);
    if (mode != WAIT_BLOCK)
        return sendallv_stepped(L, fd, n, timeout_ms, mode);
    fastsock_lua_call c;
    fastsock_lua_call_init(&c, L, timeout_ms);
    fastsock_result rc = fastsock_sendallv(fd, iov, (size_t)n, &c.ctl);
    if (rc == FASTSOCK_ECOUNT)
        luaL_argerror(L, 2, "the pieces add up to more bytes than a count holds");
    if (rc >= 0) {
        lua_pushinteger(L, rc);
        return 1;
    }
    return fastsock_lua_fail(L, rc, (lua_Integer)c.ctl.moved);
}

/* ---- recvfile ------------------------------------------------------------------- */

/* recvfile's stack under a scheduler: the arguments, then the state. */
enum { RF_STATE = 6 };

/* The file's position after the bytes written so far, as the blocking
 * call leaves it. */
static void recvfile_position(pwait *w)
{
    if (w->positioned)
        fastsock_lua_file_done(&w->file, w->offset + (int64_t)w->moved);
    else if (w->append && w->file.stream != NULL)
        fseeko(w->file.stream, 0, SEEK_END); /* where the kernel wrote up to */
}

/* ctx: the wait mode. */
static int recvfile_k(lua_State *L, int status, lua_KContext ctx)
{
    pwait *w = lua_touserdata(L, RF_STATE);
    if (status == LUA_YIELD)
        pwait_waited(L, RF_STATE);
    for (;;) {
        if (w->moved == w->count) {
            lua_pushinteger(L, (lua_Integer)w->moved);
            return 1;
        }
        fastsock_result rc = sock_unchanged(L, 1, w->fd);
        if (rc == 0 && w->file.stream != NULL)
            rc = sock_unchanged(L, 2, -1); /* the handle closed meanwhile? */
        if (rc == 0) {
            size_t left = w->count - w->moved;
            fastsock_lua_call c;
            fastsock_lua_call_init(&c, L, 0);
            /* splice(2) waits on a blocking socket whatever its flags say:
             * O_NONBLOCK for the call, as the core's progressive steps do
             * (LuaSocket's sockets have it already). */
            int flags = fcntl(w->fd, F_GETFL);
            int set = flags >= 0 && !(flags & O_NONBLOCK) &&
                      fcntl(w->fd, F_SETFL, flags | O_NONBLOCK) == 0;
            rc = fastsock_recvfile(w->fd, w->file.fd, w->positioned ? w->offset + (int64_t)w->moved : 0,
                                   left < CALL_BUDGET ? left : CALL_BUDGET, &c.ctl);
            if (set)
                fcntl(w->fd, F_SETFL, flags);
            w->moved += c.ctl.moved;
            recvfile_position(w);
            if (rc >= 0 || rc == -EAGAIN) {
                if (w->moved < w->count && fastsock_remaining_ms(w->deadline) == 0) {
                    rc = -ETIMEDOUT;
                } else {
                    pwait_wait(L, RF_STATE, FASTSOCK_WANT_READ, ctx, recvfile_k);
                    pwait_waited(L, RF_STATE);
                    continue;
                }
            }
        }
        return fastsock_lua_fail(L, rc, (lua_Integer)w->moved);
    }
}

/*** Receives exactly count bytes from the socket into a file, with
 * splice(2) (through a pipe, never through Lua), else recv and write (a
 * file open for appending, a pipe). An io handle's buffered writes are
 * flushed first. offset absent: the file's position; a file open for
 * appending, or a pipe, is written where it stands and takes no offset.
 * A seekable file is left positioned after the bytes written. A file not
 * open for writing is `nil, "file not open for writing", 0`, before any
 * byte is read. Under a scheduler it yields while it waits (a pipe
 * blocks: a write could wait on it, which no scheduler watches).
 * @function recvfile
 * @param sock a LuaSocket object, an io handle or an fd
 * @param file an io handle or an fd, open for writing
 * @int count bytes
 * @int[opt] offset byte offset in the file (from 0, as `seek`)
 * @number[opt] timeout seconds for the whole call (nil: none)
 * @return count, or `nil, err, written` (bytes, which stay written) */
int fastsock_lua_recvfile(lua_State *L)
{
    int sock = fastsock_lua_check_sock(L, 1, 1, 1);
    if (lua_type(L, 2) == LUA_TSTRING)
        luaL_typeerror(L, 2, "file handle or fd");
    lua_Integer n = luaL_checkinteger(L, 3);
    luaL_argcheck(L, n >= 0, 3, "negative count");
    int has_offset = !lua_isnoneornil(L, 4);
    lua_Integer offset = luaL_optinteger(L, 4, 0);
    luaL_argcheck(L, offset >= 0, 4, "negative offset");
    int64_t timeout_ms = fastsock_lua_check_timeout(L, 5, 0);
    fastsock_lua_file f;
    int frc = fastsock_lua_check_file(L, 2, &f); /* flushes the handle's writes */
    if (frc < 0)
        return fastsock_lua_fail(L, frc, 0);
    int flags = fcntl(f.fd, F_GETFL);
    if (flags < 0)
        return fastsock_lua_fail(L, -errno, 0);
    if ((flags & O_ACCMODE) == O_RDONLY) {
        lua_pushnil(L);
        lua_pushliteral(L, "file not open for writing");
        lua_pushinteger(L, 0);
        return 3;
    }
    int append = (flags & O_APPEND) != 0;
    int positioned = f.seekable && !append;
    if (has_offset && !positioned)
        luaL_argerror(L, 4, append ? "the file is open for appending: it is written at its end"
                                   : "the file is not seekable: it is written where it stands");
    if (!has_offset && positioned) {
        off_t pos = f.stream != NULL ? ftello(f.stream) : lseek(f.fd, 0, SEEK_CUR);
        if (pos < 0)
            return fastsock_lua_fail(L, -errno, 0);
        offset = (lua_Integer)pos;
    }
    fastsock_lua_check_unclaimed(L, sock, FASTSOCK_WANT_READ, 1);
    enum fastsock_lua_waitmode mode = f.seekable ? fastsock_lua_waitmode(L) : WAIT_BLOCK;
    if (mode != WAIT_BLOCK) {
        lua_settop(L, RF_STATE - 1);
        pwait *w = pwait_push(L, sock, 0, timeout_ms);
        w->file = f;
        w->offset = (int64_t)offset;
        w->count = (size_t)n;
        w->positioned = positioned;
        w->append = append;
        fastsock_lua_claim(L, sock, FASTSOCK_WANT_READ, 1);
        w->claim = FASTSOCK_WANT_READ;
        return recvfile_k(L, LUA_OK, (lua_KContext)mode);
    }
    fastsock_lua_call c;
    fastsock_lua_call_init(&c, L, timeout_ms);
    fastsock_result rc = fastsock_recvfile(sock, f.fd, (int64_t)offset, (size_t)n, &c.ctl);
    if (positioned)
        fastsock_lua_file_done(&f, (int64_t)offset + (int64_t)c.ctl.moved);
    else if (append && f.stream != NULL)
        fseeko(f.stream, 0, SEEK_END); /* where the kernel wrote up to */
    if (rc >= 0) {
        lua_pushinteger(L, rc);
        return 1;
    }
    return fastsock_lua_fail(L, rc, (lua_Integer)c.ctl.moved);
}

/* ---- fastsock.reader ------------------------------------------------------------- */

typedef struct lreader {
    fastsock_reader r;
    int sockobj; /* the socket (uservalue 1) is a LuaSocket object or an io handle */
    int closed;
} lreader;

static lreader *check_reader(lua_State *L)
{
    lreader *rd = luaL_checkudata(L, 1, READER_MT);
    if (rd->closed)
        luaL_error(L, READER_MT ": closed");
    return rd;
}

/* A socket object closed since the reader was made: its number may be
 * another file's now, which the reader must not read. */
static void check_reader_sock(lua_State *L, const lreader *rd)
{
    if (!rd->sockobj)
        return;
    int open = 1;
    lua_getiuservalue(L, 1, 1);
    luaL_Stream *s = luaL_testudata(L, -1, LUA_FILEHANDLE);
    if (s != NULL) {
        open = s->closef != NULL;
    } else if (luaL_getmetafield(L, -1, "__index") != LUA_TNIL) {
        lua_pop(L, 1);
        if (lua_getfield(L, -1, "getfd") == LUA_TFUNCTION) {
            lua_pushvalue(L, -2);
            lua_call(L, 1, 1);
            int isint = 0;
            lua_Integer fd = lua_tointegerx(L, -1, &isint);
            open = isint && fd == rd->r.fd;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (!open)
        luaL_error(L, READER_MT ": its socket has been closed");
}

/*** A reader over a socket: it owns a look-ahead buffer, reads lines up to
 * a delimiter with as few system calls as the data allows, and hands what
 * it read past a line to the next body. Whatever follows a line is the
 * reader's: read it through the reader.
 * @function reader
 * @param sock a LuaSocket object (with nothing in its own buffer), an io
 * handle or an fd
 * @return a `fastsock.reader` */
int fastsock_lua_reader(lua_State *L)
{
    int fd = fastsock_lua_check_sock(L, 1, 1, 1);
    lreader *rd = lua_newuserdatauv(L, sizeof *rd, 1);
    fastsock_reader_init(&rd->r, fd);
    rd->closed = 0;
    rd->sockobj = lua_type(L, 1) == LUA_TUSERDATA;
    luaL_setmetatable(L, READER_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

/* readuntil's stack after its first wait: the arguments, then its state
 * (the deadline, the socket's receive side held). */
enum { RU_STATE = 5 };

/* ctx: 0 on the first try, else the wait mode (after a wait). */
static int readuntil_k(lua_State *L, int status, lua_KContext ctx)
{
    if (status == LUA_YIELD)
        pwait_waited(L, RU_STATE);
    for (;;) {
        lreader *rd = check_reader(L); /* closed by another coroutine meanwhile? */
        size_t dlen;
        const char *delim = luaL_optlstring(L, 2, "\r\n", &dlen);
        luaL_argcheck(L, dlen > 0, 2, "empty delimiter");
        lua_Integer max = luaL_optinteger(L, 3, 65536);
        luaL_argcheck(L, max >= (lua_Integer)dlen, 3, "max is shorter than the delimiter");
        int64_t timeout_ms = fastsock_lua_check_timeout(L, 4, 1);
        check_reader_sock(L, rd);
        enum fastsock_lua_waitmode mode = (enum fastsock_lua_waitmode)ctx;
        if (ctx == 0) {
            fastsock_lua_check_unclaimed(L, rd->r.fd, FASTSOCK_WANT_READ, 1);
            mode = fastsock_lua_waitmode(L);
        }
        fastsock_lua_call c;
        fastsock_lua_call_init(&c, L, mode == WAIT_BLOCK ? timeout_ms : 0);
        const unsigned char *line;
        fastsock_result rc = fastsock_reader_until(&rd->r, delim, dlen, (size_t)max, &line, &c.ctl);
        if (rc == -EAGAIN && mode != WAIT_BLOCK && timeout_ms != 0) {
            if (ctx == 0) {
                lua_settop(L, RU_STATE - 1);
                pwait *w = pwait_push(L, rd->r.fd, 0, timeout_ms);
                fastsock_lua_claim(L, w->fd, FASTSOCK_WANT_READ, 1);
                w->claim = FASTSOCK_WANT_READ;
                ctx = mode;
            }
            pwait *w = lua_touserdata(L, RU_STATE);
            if (fastsock_remaining_ms(w->deadline) != 0) {
                pwait_wait(L, RU_STATE, FASTSOCK_WANT_READ, ctx, readuntil_k);
                pwait_waited(L, RU_STATE);
                continue;
            }
            rc = -ETIMEDOUT;
        }
        /* The line points into the look-ahead until the reader's next call. */
        if (rc >= 0) {
            lua_pushlstring(L, (const char *)line, (size_t)rc);
            return 1;
        }
        if (rc == -ENOMEM)
            return fastsock_lua_nomem(L, "reader", max, ENOMEM);
        lua_pushnil(L);
        lua_pushstring(L, rc == FASTSOCK_ETOOLONG ? "too long" : fastsock_lua_error_message(rc));
        if (rc == FASTSOCK_EOF)
            lua_pushlstring(L, (const char *)line, c.ctl.moved);
        else
            lua_pushliteral(L, ""); /* nothing handed out: the bytes stay in the reader */
        return 3;
    }
}

/*** Reads up to and including the first delimiter within max bytes.
 * Under a scheduler it waits through it (yielding), and what came stays
 * in the reader meanwhile.
 * @function reader:readuntil
 * @string[opt="\r\n"] delim the delimiter (not a pattern; not empty)
 * @int[opt=65536] max the longest line, delimiter included
 * @number[opt] timeout seconds for the whole call (nil: none; 0: never wait)
 * @return the line, delimiter included; or `nil, err, partial`: err is
 * "closed" (partial: the line so far, handed out), "too long" (no delimiter
 * within max), "timeout" or the system's message, with partial "" and the
 * bytes kept by the reader for the next call */
static int reader_readuntil(lua_State *L)
{
    lua_settop(L, 4);
    return readuntil_k(L, LUA_OK, 0);
}

/* reader:recvall under a scheduler, after fastsock.recvall received the
 * rest: slot 4 holds the look-ahead's bytes, 5.. recvall's results. */
static int reader_recvall_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    if (lua_type(L, 5) == LUA_TSTRING) {
        lua_pushvalue(L, 4);
        lua_pushvalue(L, 5);
        lua_concat(L, 2);
        return 1;
    }
    lua_pushvalue(L, 4);
    lua_pushvalue(L, 7);
    lua_concat(L, 2);
    lua_replace(L, 7);
    return 3;
}

/*** Receives exactly n bytes: the look-ahead's first, then the rest
 * straight from the socket (as `fastsock.recvall`, which under a scheduler
 * steps and yields).
 * @function reader:recvall
 * @int n bytes
 * @number[opt] timeout seconds for the whole call (nil: none)
 * @return the string, or `nil, err, partial` (the bytes received) */
static int reader_recvall(lua_State *L)
{
    lreader *rd = check_reader(L);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0, 2, "negative size");
    int64_t timeout_ms = fastsock_lua_check_timeout(L, 3, 0);
    size_t held = fastsock_reader_buffered(&rd->r);
    if ((size_t)n <= held) {
        /* The whole body is in the look-ahead (buf[start, end), fastsock.h):
         * one copy, into the string. */
        lua_pushlstring(L, (const char *)rd->r.buf + rd->r.start, (size_t)n);
        rd->r.start += (size_t)n;
        return 1;
    }
    check_reader_sock(L, rd); /* only now: the look-ahead's bytes need no socket */
    fastsock_lua_check_unclaimed(L, rd->r.fd, FASTSOCK_WANT_READ, 1);
    if (fastsock_lua_waitmode(L) != WAIT_BLOCK) {
        lua_settop(L, 3);
        lua_pushlstring(L, (const char *)rd->r.buf + rd->r.start, held);
        rd->r.start = rd->r.end;
        lua_pushcfunction(L, fastsock_lua_recvall);
        lua_getiuservalue(L, 1, 1);
        lua_pushinteger(L, n - (lua_Integer)held);
        lua_pushvalue(L, 3);
        lua_callk(L, 3, LUA_MULTRET, 0, reader_recvall_k);
        return reader_recvall_k(L, LUA_OK, 0);
    }
    fastsock_lua_call c;
    fastsock_lua_call_init(&c, L, timeout_ms);
    int fresh;
    fastsock_lua_buf *scratch = fastsock_lua_scratch_push(L, (size_t)n, &fresh);
    if (scratch == NULL)
        return fastsock_lua_nomem(L, "reader:recvall", n, errno);
    fastsock_advise_fresh(scratch->data, (size_t)n);
    fastsock_result rc = fastsock_reader_recvall(&rd->r, scratch->data, (size_t)n, 0, (size_t)n,
                                                 &c.ctl);
    int scratch_idx = lua_gettop(L);
    fastsock_lua_push_bytes(L, (const char *)scratch->data, c.ctl.moved);
    fastsock_lua_scratch_done(L, scratch_idx);
    if (rc >= 0)
        return 1;
    return fastsock_lua_fail_with_top(L, rc);
}

/* reader:recvall_into under a scheduler: ctx the bytes the look-ahead
 * gave, 6.. fastsock.recvall_into's results for the rest. */
static int reader_into_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    lua_Integer held = (lua_Integer)ctx;
    int top = lua_gettop(L);
    if (lua_isinteger(L, 6)) {
        lua_pushinteger(L, lua_tointeger(L, 6) + held);
        return 1;
    }
    lua_pushinteger(L, lua_tointeger(L, top) + held);
    lua_replace(L, top);
    return 3;
}

/*** Fills `buf[i .. i + n - 1]` (n absent: to the end): the look-ahead's
 * bytes first, then the rest straight from the socket.
 * @function reader:recvall_into
 * @param buf a `fastsock.buffer`
 * @int[opt] n bytes
 * @int[opt=1] i where they go
 * @number[opt] timeout seconds for the whole call (nil: none)
 * @return n, or `nil, err, count` */
static int reader_recvall_into(lua_State *L)
{
    lreader *rd = check_reader(L);
    fastsock_lua_buf *b = fastsock_lua_check_buffer(L, 2);
    size_t count = fastsock_lua_opt_count(L, 3);
    size_t offset = fastsock_lua_opt_start(L, 4);
    int64_t timeout_ms = fastsock_lua_check_timeout(L, 5, 0);
    /* The whole range, before the look-ahead moves into it. */
    luaL_argcheck(L, offset <= b->len, 4, "index out of range for the buffer");
    if (count == FASTSOCK_ALL)
        count = b->len - offset;
    luaL_argcheck(L, count <= b->len - offset, 3, "count goes beyond the end of the buffer");
    size_t held = fastsock_reader_buffered(&rd->r);
    fastsock_ctl from_buffer = FASTSOCK_CTL_INIT;
    if (count <= held) {
        fastsock_reader_recvall(&rd->r, b->data, b->len, offset, count, &from_buffer);
        lua_pushinteger(L, (lua_Integer)count);
        return 1;
    }
    check_reader_sock(L, rd);
    fastsock_lua_check_unclaimed(L, rd->r.fd, FASTSOCK_WANT_READ, 1);
    if (fastsock_lua_waitmode(L) != WAIT_BLOCK) {
        fastsock_reader_recvall(&rd->r, b->data, b->len, offset, held, &from_buffer);
        lua_settop(L, 5);
        lua_pushcfunction(L, fastsock_lua_recvall_into);
        lua_getiuservalue(L, 1, 1);
        lua_pushvalue(L, 2);
        lua_pushinteger(L, (lua_Integer)(count - held));
        lua_pushinteger(L, (lua_Integer)(offset + held) + 1);
        lua_pushvalue(L, 5);
        lua_callk(L, 5, LUA_MULTRET, (lua_KContext)held, reader_into_k);
        return reader_into_k(L, LUA_OK, (lua_KContext)held);
    }
    fastsock_lua_call c;
    fastsock_lua_call_init(&c, L, timeout_ms);
    fastsock_result rc = fastsock_reader_recvall(&rd->r, b->data, b->len, offset, count, &c.ctl);
    if (rc >= 0) {
        lua_pushinteger(L, rc);
        return 1;
    }
    return fastsock_lua_fail(L, rc, (lua_Integer)c.ctl.moved);
}

/*** Bytes read from the socket and not yet handed out.
 * @function reader:buffered */
static int reader_buffered(lua_State *L)
{
    lreader *rd = check_reader(L);
    lua_pushinteger(L, (lua_Integer)fastsock_reader_buffered(&rd->r));
    return 1;
}

/*** Frees the look-ahead (and whatever it still held); the socket stays
 * open. Closing twice is harmless.
 * @function reader:close */
static int reader_close(lua_State *L)
{
    lreader *rd = luaL_checkudata(L, 1, READER_MT);
    fastsock_reader_release(&rd->r);
    rd->closed = 1;
    return 0;
}

static int reader_repr(lua_State *L)
{
    lreader *rd = luaL_checkudata(L, 1, READER_MT);
    if (rd->closed)
        lua_pushfstring(L, READER_MT " (closed): %p", (void *)rd);
    else
        lua_pushfstring(L, READER_MT " (fd %d, %I bytes buffered): %p", rd->r.fd,
                        (lua_Integer)fastsock_reader_buffered(&rd->r), (void *)rd);
    return 1;
}

/* ---- find and split ------------------------------------------------------------- */

static const unsigned char *check_hay(lua_State *L, int idx, size_t *len)
{
    fastsock_lua_buf *b = fastsock_lua_test_buffer(L, idx);
    if (b != NULL) {
        *len = b->len;
        return b->data;
    }
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_typeerror(L, idx, "string or " FASTSOCK_LUA_BUFFER_MT);
    return (const unsigned char *)lua_tolstring(L, idx, len);
}

/*** Finds plain bytes (no patterns) in a string or a buffer, as
 * `string.find(data, s, init, true)` does, without copying.
 * @function find
 * @param data a string or a `fastsock.buffer`
 * @string s the bytes to find (not empty)
 * @int[opt=1] init where to start: 1-based, negative from the end (0 is an error)
 * @return i, j (the first and last position of the match), or nil */
int fastsock_lua_find(lua_State *L)
{
    size_t len, nlen;
    const unsigned char *hay = check_hay(L, 1, &len);
    const char *needle = luaL_checklstring(L, 2, &nlen);
    luaL_argcheck(L, nlen > 0, 2, "empty string: nothing to find");
    lua_Integer init = luaL_optinteger(L, 3, 1);
    luaL_argcheck(L, init != 0, 3, "position 0: positions start at 1 (negative count from the end)");
    size_t from;
    if (init > 0)
        from = (size_t)init - 1;
    else
        from = (lua_Unsigned)-init > len ? 0 : len - (size_t)-init;
    fastsock_result at = fastsock_find(hay, len, from, needle, nlen);
    if (at < 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushinteger(L, (lua_Integer)at + 1);
    lua_pushinteger(L, (lua_Integer)at + (lua_Integer)nlen);
    return 2;
}

/*** Splits a string or a buffer at every sep, without copying a field:
 * returns the fields' positions as one flat table `{i1, j1, i2, j2, ...}`
 * (field k is `data:sub(t[2k-1], t[2k])`, or `buf:tostring` of them, and
 * `{buf, t[2k-1], t[2k]}` is a `sendallv` piece). n separators make n + 1
 * fields, empty ones included (an empty field has j = i - 1).
 * @function split
 * @param data a string or a `fastsock.buffer`
 * @string sep the separator (plain bytes, not empty)
 * @treturn table the positions, two integers per field */
int fastsock_lua_split(lua_State *L)
{
    size_t len, slen;
    const unsigned char *hay = check_hay(L, 1, &len);
    const char *sep = luaL_checklstring(L, 2, &slen);
    luaL_argcheck(L, slen > 0, 2, "empty separator");
    lua_createtable(L, 16, 0);
    lua_Integer k = 0;
    size_t at = 0;
    for (;;) {
        fastsock_result hit = fastsock_find(hay, len, at, sep, slen);
        size_t end = hit < 0 ? len : (size_t)hit;
        lua_pushinteger(L, (lua_Integer)at + 1);
        lua_rawseti(L, -2, ++k);
        lua_pushinteger(L, (lua_Integer)end);
        lua_rawseti(L, -2, ++k);
        if (hit < 0)
            return 1;
        at = (size_t)hit + slen;
    }
}

void fastsock_lua_open_protocol(lua_State *L)
{
    static const luaL_Reg reader_meta[] = {
        { "__gc", reader_close },
        { "__close", reader_close },
        { "__tostring", reader_repr },
        { NULL, NULL },
    };
    static const luaL_Reg reader_methods[] = {
        { "readuntil", reader_readuntil },
        { "recvall", reader_recvall },
        { "recvall_into", reader_recvall_into },
        { "buffered", reader_buffered },
        { "close", reader_close },
        { NULL, NULL },
    };
    static const luaL_Reg buffer_methods[] = {
        { "find", fastsock_lua_find },
        { "split", fastsock_lua_split },
        { NULL, NULL },
    };
    fastsock_lua_new_class(L, READER_MT, reader_meta, reader_methods);
    if (luaL_newmetatable(L, PWAIT_MT)) {
        lua_pushcfunction(L, pwait_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, pwait_close);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    /* buffer:find and buffer:split: the buffer's method table is built by
     * lua_buffer.c, which fastsock_lua_open runs first. */
    luaL_getmetatable(L, FASTSOCK_LUA_BUFFER_MT);
    lua_getfield(L, -1, "__index");
    luaL_setfuncs(L, buffer_methods, 0);
    lua_pop(L, 2);
}
