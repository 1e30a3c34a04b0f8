/*
 * Argument conversion: the socket, data, file, index, count and timeout
 * arguments of every call, read as LuaSocket and string.sub read them, with
 * errors that name the argument.
 */
#include "fastsock_lua.h"

#include <lauxlib.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fastsock_lua_stdio_has_readahead(FILE *f)
{
#if defined(__GLIBC__)
    return f->_IO_read_ptr < f->_IO_read_end;
#else
    (void)f; /* only glibc lets us look */
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

void fastsock_lua_verify_sock(lua_State *L, int idx, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        not_a_socket(L, idx, errno);
    if (!S_ISSOCK(st.st_mode))
        not_a_socket(L, idx, ENOTSOCK);
}

/* The metatable of the last object getfd() was asked of: the same class
 * again (a server's sockets) skips the file and buffer tests: a quarter of
 * the instructions a 64-byte sendall took. */
static const char getfd_class_key = 0;

static int same_class_as_last_getfd(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx))
        return 0;
    int same = lua_rawgetp(L, LUA_REGISTRYINDEX, &getfd_class_key) == LUA_TTABLE &&
               lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same;
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
int fastsock_lua_check_sock(lua_State *L, int idx, int receiving, int verify)
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
        if (!same_class_as_last_getfd(L, idx)) {
            luaL_Stream *stream = luaL_testudata(L, idx, LUA_FILEHANDLE);
            if (stream != NULL) {
                if (stream->closef == NULL)
                    return luaL_argerror(L, idx, "file handle is closed");
                if (receiving && fastsock_lua_stdio_has_readahead(stream->f))
                    return luaL_argerror(L, idx, "file handle holds buffered input; read it first");
                fflush(stream->f); /* what was written through stdio goes first */
                fd = fileno(stream->f);
                break;
            }
            /* Duck-typed like LuaSocket's own helpers: anything with getfd(),
             * whose metatable lets us index it. */
            if (luaL_testudata(L, idx, FASTSOCK_LUA_BUFFER_MT) != NULL ||
                luaL_getmetafield(L, idx, "__index") == LUA_TNIL)
                return luaL_typeerror(L, idx, SOCK_TYPES);
            lua_pop(L, 1);
            if (lua_getmetatable(L, idx))
                lua_rawsetp(L, LUA_REGISTRYINDEX, &getfd_class_key);
        }
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
        fastsock_lua_verify_sock(L, idx, (int)fd);
    return (int)fd;
}

void fastsock_lua_raise_if_not_socket(lua_State *L, int idx, fastsock_result rc, size_t moved)
{
    /* Only the first system call speaks for the argument: after bytes have
     * moved, an EBADF (another coroutine closed it) is an error that reports
     * them, not an argument error that would lose them. */
    if (rc < 0 && moved == 0 && fastsock_classify(rc) == FASTSOCK_KIND_BADSOCK)
        not_a_socket(L, idx, (int)-rc);
}

const char *fastsock_lua_check_data(lua_State *L, int idx, size_t *len)
{
    if (lua_type(L, idx) == LUA_TSTRING)
        return lua_tolstring(L, idx, len);
    fastsock_lua_buf *b = fastsock_lua_test_buffer(L, idx);
    if (b != NULL) {
        *len = b->len;
        return (const char *)b->data;
    }
    if (!lua_isstring(L, idx))
        luaL_typeerror(L, idx, "string or " FASTSOCK_LUA_BUFFER_MT);
    return lua_tolstring(L, idx, len);
}

size_t fastsock_lua_opt_count(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx))
        return FASTSOCK_ALL;
    lua_Integer n = luaL_checkinteger(L, idx);
    luaL_argcheck(L, n >= 0, idx, "negative count");
    return (size_t)n;
}

/* 1 .. #buf + 1. The core checks the range; an i below 1 wraps to an offset
 * it refuses. */
size_t fastsock_lua_opt_start(lua_State *L, int idx)
{
    return (size_t)(luaL_optinteger(L, idx, 1) - 1);
}

/*
 * Seconds, as LuaSocket's settimeout takes them: nil or negative waits as
 * long as it takes, 0 never waits. A LuaSocket object's own timeout can't be
 * read through its API, so it does not apply: only this argument does.
 */
int64_t fastsock_lua_check_timeout(lua_State *L, int idx, int zero_allowed)
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

/* string.sub's reading of a start and an end position (lstrlib.c). */
size_t fastsock_lua_start_pos(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 1;
    return len + (size_t)pos + 1;
}

size_t fastsock_lua_end_pos(lua_Integer pos, size_t len)
{
    if (pos > (lua_Integer)len)
        return len;
    if (pos >= 0)
        return (size_t)pos;
    if (pos < -(lua_Integer)len)
        return 0;
    return len + (size_t)pos + 1;
}

/* LuaSocket's buffer_meth_send to the letter, so that sendall and a
 * sendallv piece read i, j as LuaSocket's send does. */
lua_Integer fastsock_lua_clip_range(size_t len, lua_Integer i, lua_Integer j, size_t *offset,
                                    size_t *count)
{
    lua_Integer size = (lua_Integer)len;
    if (i < 0)
        i = size + i + 1;
    if (j < 0)
        j = size + j + 1;
    if (i < 1)
        i = 1;
    if (j > size)
        j = size;
    *offset = i > j ? 0 : (size_t)(i - 1);
    *count = i > j ? 0 : (size_t)(j - i + 1);
    return i;
}

/* An empty range sends nothing and answers start - 1, even past the end. */
int fastsock_lua_send_range(lua_State *L, int idx, size_t len, lua_Integer *start,
                            size_t *offset, size_t *count)
{
    lua_Integer i = luaL_optinteger(L, idx, 1);
    lua_Integer j = luaL_optinteger(L, idx + 1, -1);
    *start = fastsock_lua_clip_range(len, i, j, offset, count);
    return *count > 0;
}

void fastsock_lua_new_class(lua_State *L, const char *name, const luaL_Reg *meta,
                            const luaL_Reg *methods)
{
    if (luaL_newmetatable(L, name)) {
        luaL_setfuncs(L, meta, 0);
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushstring(L, name);
        lua_setfield(L, -2, "__metatable"); /* scripts can't swap the methods */
    }
    lua_pop(L, 1);
}

int fastsock_lua_check_file(lua_State *L, int idx, fastsock_lua_file *f)
{
    f->fd = -1;
    f->stream = NULL;
    f->path = NULL;
    f->seekable = 0;
    int isint = 0;
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER: {
        lua_Integer v = lua_tointegerx(L, idx, &isint);
        if (!isint || v < 0 || v > INT_MAX)
            return luaL_argerror(L, idx, "not a file descriptor");
        f->fd = (int)v;
        break;
    }
    case LUA_TSTRING:
        f->path = lua_tostring(L, idx);
        f->seekable = 1;
        return 0;
    case LUA_TUSERDATA: {
        luaL_Stream *s = luaL_testudata(L, idx, LUA_FILEHANDLE);
        if (s == NULL)
            return luaL_typeerror(L, idx, "file handle, fd or path");
        if (s->closef == NULL)
            return luaL_argerror(L, idx, "file handle is closed");
        f->stream = s->f;
        f->fd = fileno(s->f);
        break;
    }
    default:
        return luaL_typeerror(L, idx, "file handle, fd or path");
    }
    struct stat st;
    if (fstat(f->fd, &st) < 0)
        return luaL_argerror(L, idx, lua_pushfstring(L, "not an open file descriptor (%s)",
                                                     strerror(errno)));
    f->seekable = S_ISREG(st.st_mode) || S_ISBLK(st.st_mode);
    if (f->stream != NULL) {
        /* A pipe's read-ahead would be skipped; a seekable file is read at
         * the given offset, so its read-ahead does not matter. */
        if (!f->seekable && fastsock_lua_stdio_has_readahead(f->stream))
            return luaL_argerror(L, idx, "file handle holds buffered input; read it first");
        if (fflush(f->stream) != 0)
            return -errno;
    }
    return 0;
}

int fastsock_lua_file_open(fastsock_lua_file *f)
{
    if (f->path == NULL)
        return 0;
    f->fd = open(f->path, O_RDONLY | O_CLOEXEC);
    return f->fd < 0 ? -errno : 0;
}

/* The file is left positioned after the bytes sent, as Python's
 * socket.sendfile leaves it. */
void fastsock_lua_file_done(fastsock_lua_file *f, int64_t pos)
{
    if (f->path != NULL) {
        if (f->fd >= 0)
            close(f->fd);
        f->fd = -1;
    } else if (f->stream != NULL && f->seekable) {
        fseeko(f->stream, (off_t)pos, SEEK_SET);
    } else if (f->seekable) {
        lseek(f->fd, (off_t)pos, SEEK_SET);
    }
}
