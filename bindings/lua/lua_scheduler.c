/*
 * Waiting without blocking: inside a coroutine that a scheduler runs, a
 * fastsock call that has to wait hands the wait to the scheduler and yields,
 * so that the scheduler's other coroutines run meanwhile.
 *
 * Which scheduler, in a coroutine (outside any, the calls block as they
 * always did): a waiter registered with fastsock.setwaiter(fn) first; else
 * cqueues, when cqueues.running() says this coroutine is the one its
 * controller resumes (a coroutine nested inside it would hand cqueues'
 * yield to its own resumer instead); else none, and the call blocks in
 * poll(2).
 *
 * The waits are Lua calls made with lua_callk (cqueues.poll and a waiter
 * yield from Lua), so the C function that waits ends at the yield and its
 * continuation picks up from what it left on the Lua stack and in its
 * userdata: nothing on the C stack outlives a yield.
 */
/*** fastsock for Lua 5.4 (LDoc: `ldoc bindings/lua` writes bindings/lua/doc/).
 * @module fastsock.scheduler
 */
#include "fastsock_lua.h"

#include <lauxlib.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>

/* Not "fastsock.<type>": no program gets one; only cqueues.poll sees it. */
#define POLLABLE_MT "fastsock (single-shot wait)"

static const char waiter_key = 'w'; /* registry: the function setwaiter gave */
static const char claims_key = 'c'; /* registry: fd -> FASTSOCK_WANT_* bits in use */

enum fastsock_lua_waitmode fastsock_lua_waitmode(lua_State *L)
{
    int top = lua_gettop(L);
    enum fastsock_lua_waitmode mode = WAIT_BLOCK;
    if (!lua_isyieldable(L)) {
        /* The main thread, or a C boundary no yield can cross: block. */
    } else if (lua_rawgetp(L, LUA_REGISTRYINDEX, &waiter_key) != LUA_TNIL) {
        mode = WAIT_WAITER;
    } else {
        /* cqueues is in package.loaded once anything required it; without
         * it no controller can be running. */
        lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
        if (lua_getfield(L, -1, "cqueues") == LUA_TTABLE &&
            lua_getfield(L, -1, "running") == LUA_TFUNCTION) {
            lua_call(L, 0, 2);
            if (!lua_isnil(L, -2) && lua_toboolean(L, -1))
                mode = WAIT_CQUEUES;
        }
    }
    lua_settop(L, top);
    return mode;
}

/*** Sets the waiter other schedulers plug in with: in a coroutine, a call
 * that has to wait calls `fn(fd, events, deadline)` (events "r" or "w",
 * deadline on monotime's clock or nil) and steps again when it returns.
 * Takes precedence over cqueues; nil removes it.
 * @function setwaiter
 * @return the previous waiter, or nil */
int fastsock_lua_setwaiter(lua_State *L)
{
    if (!lua_isnoneornil(L, 1))
        luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &waiter_key);
    lua_pushvalue(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &waiter_key);
    return 1;
}

/*** Seconds on the monotonic clock of the waiter's deadlines.
 * @function monotime */
int fastsock_lua_monotime(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)fastsock_now_ms() / 1000.0);
    return 1;
}

static const char *events_name(unsigned events)
{
    switch (events & (FASTSOCK_WANT_READ | FASTSOCK_WANT_WRITE)) {
    case FASTSOCK_WANT_READ: return "r";
    case FASTSOCK_WANT_WRITE: return "w";
    case FASTSOCK_WANT_READ | FASTSOCK_WANT_WRITE: return "rw";
    default: return "";
    }
}

int fastsock_lua_wait(lua_State *L, enum fastsock_lua_waitmode mode, int pidx,
                      lua_KContext ctx, lua_KFunction k)
{
    fastsock_lua_pollable *p = lua_touserdata(L, pidx);
    if (mode == WAIT_WAITER) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &waiter_key);
        lua_pushinteger(L, p->fd);
        lua_pushstring(L, events_name(p->events));
        if (p->deadline < 0)
            lua_pushnil(L);
        else
            lua_pushnumber(L, (lua_Number)p->deadline / 1000.0);
        lua_callk(L, 3, 0, ctx, k);
        return 0;
    }
    if (mode == WAIT_CQUEUES) {
        p->cqueues_polled = 1;
        lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
        lua_getfield(L, -1, "cqueues");
        lua_getfield(L, -1, "poll");
        lua_replace(L, -3);
        lua_pop(L, 1);
        lua_pushvalue(L, pidx);
        lua_callk(L, 1, 0, ctx, k);
        return 0;
    }
    int64_t left = fastsock_remaining_ms(p->deadline);
    struct pollfd pfd = { p->fd, 0, 0 };
    if (p->events & FASTSOCK_WANT_READ)
        pfd.events |= POLLIN;
    if (p->events & FASTSOCK_WANT_WRITE)
        pfd.events |= POLLOUT;
    if (poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left) < 0 && errno == EINTR)
        return -EINTR;
    return 0;
}

/*
 * cqueues keeps what it knows of a polled fd until cqueues.cancel(fd): its
 * own sockets cancel in :close(), a LuaSocket object's close doesn't, and a
 * socket that later gets the same number would never be woken. So a wait's
 * user cancels once done with the fd. Other coroutines polling the fd wake
 * once for nothing, which their loops take as they take any early wake.
 */
void fastsock_lua_done_polling(lua_State *L, fastsock_lua_pollable *p)
{
    if (!p->cqueues_polled)
        return;
    p->cqueues_polled = 0;
    int top = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    if (lua_getfield(L, -1, "cqueues") == LUA_TTABLE &&
        lua_getfield(L, -1, "cancel") == LUA_TFUNCTION) {
        lua_pushinteger(L, p->fd);
        lua_pcall(L, 1, 0, 0); /* runs from __gc too: never raises */
    }
    lua_settop(L, top);
}

/* ---- pollables: what cqueues.poll takes ----------------------------------------- */

/* Any fastsock userdata whose first member is a fastsock_lua_pollable. */
static fastsock_lua_pollable *check_pollable(lua_State *L)
{
    static const char *const types[] = { POLLABLE_MT, "fastsock.receiver", "fastsock.sender" };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        void *p = luaL_testudata(L, 1, types[i]);
        if (p != NULL)
            return p;
    }
    luaL_typeerror(L, 1, "fastsock pollable");
    return NULL;
}

fastsock_lua_pollable *fastsock_lua_pollable_push(lua_State *L, int fd, unsigned events,
                                                  int64_t deadline)
{
    fastsock_lua_pollable *p = lua_newuserdatauv(L, sizeof *p, 0);
    p->fd = fd;
    p->events = events;
    p->deadline = deadline;
    p->cqueues_polled = 0;
    luaL_setmetatable(L, POLLABLE_MT);
    return p;
}

/*** The fd to poll. @function pollfd */
int fastsock_lua_pollfd_method(lua_State *L)
{
    fastsock_lua_pollable *p = check_pollable(L);
    /* Whoever asks is polling, cqueues.poll(receiver) in a program's own
     * loop too: at the end the transfer has cqueues forget the fd. */
    p->cqueues_polled = 1;
    lua_pushinteger(L, p->fd);
    return 1;
}

/*** "r" or "w": what to wait for; "" once the transfer has ended. @function events */
int fastsock_lua_events_method(lua_State *L)
{
    lua_pushstring(L, events_name(check_pollable(L)->events));
    return 1;
}

/*** Seconds until the deadline, nil for none. @function timeout */
int fastsock_lua_timeout_method(lua_State *L)
{
    int64_t left = fastsock_remaining_ms(check_pollable(L)->deadline);
    if (left < 0)
        lua_pushnil(L);
    else
        lua_pushnumber(L, (lua_Number)left / 1000.0);
    return 1;
}

void fastsock_lua_open_scheduler(lua_State *L)
{
    static const luaL_Reg methods[] = {
        { "pollfd", fastsock_lua_pollfd_method },
        { "events", fastsock_lua_events_method },
        { "timeout", fastsock_lua_timeout_method },
        { NULL, NULL },
    };
    if (luaL_newmetatable(L, POLLABLE_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &claims_key);
}

/* ---- one receive and one send per socket at a time -------------------------------- */

/* Transfers holding a claim, in every Lua state of the process: while
 * there are none, the single-shot calls (made once per message) skip the
 * table. */
static _Atomic long claims_held;

long fastsock_lua_claims_held(void)
{
    return atomic_load_explicit(&claims_held, memory_order_relaxed);
}

static unsigned claimed(lua_State *L, int fd)
{
    if (atomic_load_explicit(&claims_held, memory_order_relaxed) == 0)
        return 0;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &claims_key);
    lua_rawgeti(L, -1, fd);
    unsigned bits = (unsigned)lua_tointeger(L, -1);
    lua_pop(L, 2);
    return bits;
}

static void set_claims(lua_State *L, int fd, unsigned bits)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &claims_key);
    if (bits == 0)
        lua_pushnil(L);
    else
        lua_pushinteger(L, (lua_Integer)bits);
    lua_rawseti(L, -2, fd);
    lua_pop(L, 1);
}

void fastsock_lua_check_unclaimed(lua_State *L, int fd, unsigned dir, int arg)
{
    /* A receiver the program dropped without closing holds its claim until
     * the collector finalizes it: collect before calling it a conflict. */
    if ((claimed(L, fd) & dir) && lua_gc(L, LUA_GCISRUNNING))
        lua_gc(L, LUA_GCCOLLECT);
    if (claimed(L, fd) & dir)
        luaL_argerror(L, arg, dir == FASTSOCK_WANT_READ
                                  ? "another receive is in progress on this socket (a "
                                    "receiver, or a call suspended in another coroutine)"
                                  : "another send is in progress on this socket (a "
                                    "sender, or a call suspended in another coroutine)");
}

void fastsock_lua_claim(lua_State *L, int fd, unsigned dir, int arg)
{
    fastsock_lua_check_unclaimed(L, fd, dir, arg);
    atomic_fetch_add_explicit(&claims_held, 1, memory_order_relaxed);
    set_claims(L, fd, claimed(L, fd) | dir);
}

/* Only for a claim fastsock_lua_claim made. */
void fastsock_lua_unclaim(lua_State *L, int fd, unsigned dir)
{
    set_claims(L, fd, claimed(L, fd) & ~dir);
    atomic_fetch_sub_explicit(&claims_held, 1, memory_order_relaxed);
}
