/*
 * Differential fuzzer for the core (libFuzzer).
 *
 * One input is a script of episodes. Each episode is one socketpair with a
 * peer thread on the far end, and a few core operations on the near end:
 *   - a receive episode: the peer writes stream bytes in fuzzed chunks with
 *     fuzzed delays, then closes, shuts down writing, or stays open; the
 *     operations are recvall / recv / recv(MSG_PEEK);
 *   - a send episode: the peer reads in fuzzed chunks (checking every byte
 *     against the stream) to the end, or closes after K bytes; the
 *     operations are send / sendall / sendfile (memfd, or a pipe).
 * Ranges come from a table of edges (0, len, len + 1, SIZE_MAX,
 * SIZE_MAX - len + 1 so that offset + count wraps, ...) or raw input;
 * timeouts, O_NONBLOCK, FASTSOCK_POLL_ONLY and an interrupt hook that stops
 * the call are fuzzed too.
 *
 * Every result is checked against a model that knows only the contract:
 *   - a range error is exactly EOFFSET or ECOUNT, with nothing moved, the
 *     buffer untouched and no byte consumed from or added to the stream;
 *   - the bytes received are the stream's next bytes, and the bytes outside
 *     [offset, offset + moved) still hold the fill pattern (so moved is exact,
 *     and nothing is handed over that was not received);
 *   - at the end of an episode the stream continues exactly where the model
 *     says (so every count reported, on success and on error, was exact);
 *   - every error is one the situation allows (EOF only after the peer
 *     stopped writing, ETIMEDOUT only after the deadline, ...);
 *   - buffers sit between PROT_NONE pages, flush against one of them, and a
 *     send's data is read-only: a stray access faults, a stray kernel copy
 *     shows as EFAULT, which no situation allows.
 */
#include "fastsock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EPISODES 4
#define MAX_OPS 6
#define MAX_CHUNKS 8
#define MAX_BUF ((size_t)192 * 1024)
#define FILL 0xA5

/* Bails out loudly: libFuzzer records the input that got here. */
#define REQUIRE(cond, ...)                                                        \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "model violated at %s:%d: %s\n  ", __FILE__, __LINE__, \
                    #cond);                                                       \
            fprintf(stderr, __VA_ARGS__);                                         \
            fputc('\n', stderr);                                                  \
            abort();                                                              \
        }                                                                         \
    } while (0)

/* ---- input --------------------------------------------------------------- */

typedef struct input {
    const uint8_t *p;
    size_t n;
} input;

/* Little-endian; zeros once the input runs out, so every input is a script. */
static uint64_t take(input *in, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) {
        uint64_t b = 0;
        if (in->n > 0) {
            b = *in->p++;
            in->n--;
        }
        v |= b << (8 * i);
    }
    return v;
}

/* Stream byte k: a multiplicative hash of the position, so a byte delivered
 * at the wrong position (a lost, repeated or miscounted chunk) shows. */
static uint8_t stream_byte(uint64_t seed, uint64_t k)
{
    return (uint8_t)(((k + seed) * 0x9E3779B97F4A7C15ull) >> 56);
}

static void fill_stream(uint8_t *out, size_t n, uint64_t seed, uint64_t from)
{
    for (size_t i = 0; i < n; i++)
        out[i] = stream_byte(seed, from + i);
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_us(unsigned us)
{
    struct timespec ts = { 0, (long)us * 1000 };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- guarded buffers ------------------------------------------------------- */

/* A buffer of len bytes inside [lo, hi), which is filled with FILL and
 * bordered by PROT_NONE pages; the buffer touches the front or back guard. */
typedef struct guarded {
    uint8_t *map;
    size_t maplen;
    uint8_t *lo, *hi;
    uint8_t *buf;
    size_t len;
} guarded;

static size_t page_size(void)
{
    static size_t page;
    if (page == 0)
        page = (size_t)sysconf(_SC_PAGESIZE);
    return page;
}

static void guarded_alloc(guarded *g, size_t len, int at_back, size_t slack)
{
    size_t page = page_size();
    size_t body = (len + slack + page - 1) / page * page;
    if (body == 0)
        body = page;
    g->maplen = body + 2 * page;
    g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(g->map != MAP_FAILED, "mmap %zu", g->maplen);
    REQUIRE(mprotect(g->map, page, PROT_NONE) == 0, "mprotect");
    REQUIRE(mprotect(g->map + page + body, page, PROT_NONE) == 0, "mprotect");
    g->lo = g->map + page;
    g->hi = g->lo + body;
    memset(g->lo, FILL, body);
    g->buf = at_back ? g->hi - len : g->lo;
    g->len = len;
}

static void guarded_protect(guarded *g, int prot)
{
    REQUIRE(mprotect(g->lo, (size_t)(g->hi - g->lo), prot) == 0, "mprotect");
}

static void guarded_free(guarded *g)
{
    munmap(g->map, g->maplen);
}

/* Every byte of [lo, hi) outside buf[from, from + n) still holds FILL. */
static void require_untouched_outside(const guarded *g, size_t from, size_t n)
{
    const uint8_t *a = g->buf + from, *b = a + n;
    for (const uint8_t *p = g->lo; p < g->hi; p++)
        if (p < a || p >= b)
            REQUIRE(*p == FILL, "byte %td of the region changed (range [%zu, +%zu))",
                    p - g->lo, from, n);
}

/* ---- ranges ------------------------------------------------------------------ */

/* An offset or count: an edge of the buffer or of size_t, or raw input. */
static size_t pick_size(input *in, size_t len)
{
    switch (take(in, 1) % 12) {
    case 0: return 0;
    case 1: return 1;
    case 2: return len;
    case 3: return len + 1;
    case 4: return len / 2;
    case 5: return len > 0 ? len - 1 : 0;
    case 6: return FASTSOCK_ALL;
    case 7: return SIZE_MAX - 1;
    case 8: return SIZE_MAX - len + 1; /* offset + count wraps to 1 */
    case 9: return (size_t)1 << 63;
    case 10: return (size_t)take(in, 2);
    default: return (size_t)take(in, 8);
    }
}

/* The model of check_range: 0 and the count, or the error it must give. */
static fastsock_result model_range(size_t len, size_t offset, size_t count, size_t *n)
{
    if (offset > len)
        return FASTSOCK_EOFFSET;
    if (count == FASTSOCK_ALL) {
        *n = len - offset;
        return 0;
    }
    if (count > len - offset)
        return FASTSOCK_ECOUNT;
    *n = count;
    return 0;
}

static const int64_t timeouts_ms[] = { -1, 0, 1, 3, 10, 25 };

/* Stops the call at the first interruption, as a binding does when a
 * signal handler raised. */
static int stop_hook(void *arg)
{
    (*(int *)arg)++;
    return -EINTR;
}

typedef struct op_ctl {
    fastsock_ctl ctl;
    int hook_calls;
    int64_t timeout_ms;
} op_ctl;

static void pick_ctl(input *in, op_ctl *o, int need_limit)
{
    uint64_t v = take(in, 1);
    o->timeout_ms = timeouts_ms[v % 6];
    if (need_limit && o->timeout_ms < 0)
        o->timeout_ms = 10;
    fastsock_ctl init = FASTSOCK_CTL_INIT;
    o->ctl = init;
    o->ctl.timeout_ms = o->timeout_ms;
    o->ctl.flags = (v >> 3) & 1 ? FASTSOCK_POLL_ONLY : 0;
    o->hook_calls = 0;
    if ((v >> 4) & 1) {
        o->ctl.on_interrupt = stop_hook;
        o->ctl.interrupt_arg = &o->hook_calls;
    }
    o->ctl.moved = 0xdeadbeef; /* the core must set it on every path */
}

/* An error the call may give in this episode, with its own conditions. */
static void require_allowed_error(fastsock_result rc, const op_ctl *o, int64_t elapsed_us,
                                  int peer_may_close)
{
    if (rc == -ETIMEDOUT) {
        REQUIRE(o->timeout_ms > 0, "ETIMEDOUT without a deadline (timeout %lld)",
                (long long)o->timeout_ms);
        /* The core counts whole milliseconds: it may fire up to 1 ms early. */
        REQUIRE(elapsed_us >= (o->timeout_ms - 1) * 1000, "timed out after %lld us of %lld ms",
                (long long)elapsed_us, (long long)o->timeout_ms);
        return;
    }
    if (rc == -EAGAIN) {
        REQUIRE(o->timeout_ms == 0, "EAGAIN with timeout %lld", (long long)o->timeout_ms);
        return;
    }
    if (rc == -EINTR) {
        REQUIRE(o->hook_calls > 0, "EINTR without the hook asking for it");
        return;
    }
    if (rc == -EPIPE || rc == -ECONNRESET) {
        REQUIRE(peer_may_close, "%s while the peer is reading", fastsock_strerror(rc));
        return;
    }
    REQUIRE(0, "unexpected result %zd (%s)", rc, fastsock_strerror(rc));
}

/* ---- the peer ------------------------------------------------------------------- */

enum { END_CLOSE, END_SHUTDOWN, END_STAY, END_COUNT };

typedef struct peer {
    int fd;
    uint64_t seed;
    int sending;              /* receive episode: the peer sends */
    size_t chunk[MAX_CHUNKS]; /* sizes to write, or to read at a time */
    unsigned delay_us[MAX_CHUNKS];
    int nchunks;
    int end;                  /* receive episode: END_* */
    uint64_t close_after;     /* send episode: read this much, then close */
    uint64_t done;            /* bytes written or read (and checked) */
    int writing_over;         /* set once the peer wrote its last byte */
    uint64_t bad_at;          /* send episode: first mismatching position + 1 */
} peer;

static void *peer_send(peer *p)
{
    uint8_t buf[16384];
    for (int i = 0; i < p->nchunks; i++) {
        if (p->delay_us[i])
            sleep_us(p->delay_us[i]);
        size_t left = p->chunk[i];
        while (left > 0) {
            size_t n = left < sizeof buf ? left : sizeof buf;
            fill_stream(buf, n, p->seed, p->done);
            ssize_t w = send(p->fd, buf, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) /* libFuzzer's SIGALRM */
                continue;
            REQUIRE(w > 0, "peer send: %s", strerror(errno));
            __atomic_add_fetch(&p->done, (uint64_t)w, __ATOMIC_SEQ_CST);
            left -= (size_t)w;
        }
    }
    __atomic_store_n(&p->writing_over, 1, __ATOMIC_SEQ_CST);
    if (p->end == END_CLOSE) {
        close(p->fd);
        return NULL;
    }
    if (p->end == END_SHUTDOWN)
        shutdown(p->fd, SHUT_WR);
    /* Stay until the near end finishes (it shuts down writing). */
    for (;;) {
        ssize_t r = recv(p->fd, buf, sizeof buf, 0);
        if (r == 0 || (r < 0 && errno != EINTR))
            break;
    }
    close(p->fd);
    return NULL;
}

static void *peer_recv(peer *p)
{
    uint8_t buf[16384];
    for (int i = 0;; i++) {
        /* The fuzzed reads first, then whole buffers without pauses, so
         * that an episode stays short whatever was sent. */
        size_t want = sizeof buf;
        if (i < p->nchunks) {
            want = p->chunk[i];
            if (p->delay_us[i])
                sleep_us(p->delay_us[i]);
        }
        if (want > sizeof buf)
            want = sizeof buf;
        if (p->close_after != UINT64_MAX && want > p->close_after - p->done)
            want = (size_t)(p->close_after - p->done);
        if (want == 0)
            break;
        ssize_t r = recv(p->fd, buf, want, 0);
        if (r < 0 && errno == EINTR) {
            i--;
            continue;
        }
        if (r <= 0)
            break;
        for (ssize_t k = 0; k < r; k++)
            if (buf[k] != stream_byte(p->seed, p->done + (uint64_t)k) && p->bad_at == 0)
                p->bad_at = p->done + (uint64_t)k + 1;
        p->done += (uint64_t)r;
    }
    close(p->fd);
    return NULL;
}

static void *peer_main(void *arg)
{
    peer *p = arg;
    return p->sending ? peer_send(p) : peer_recv(p);
}

static void pick_chunks(input *in, peer *p, size_t max_chunk)
{
    p->nchunks = 1 + (int)(take(in, 1) % MAX_CHUNKS);
    for (int i = 0; i < p->nchunks; i++) {
        uint64_t v = take(in, 3);
        p->chunk[i] = 1 + (size_t)(v & 0x3FFFF) % max_chunk;
        /* Mostly no delay; sometimes up to 2 ms, to land inside a deadline. */
        p->delay_us[i] = (v >> 18) % 4 == 0 ? (unsigned)((v >> 20) % 8) * 250 : 0;
    }
}

/* ---- receive episode ---------------------------------------------------------------- */

static void receive_episode(input *in, int fd, peer *p)
{
    uint64_t consumed = 0;
    int nops = 1 + (int)(take(in, 1) % MAX_OPS);
    for (int i = 0; i < nops; i++) {
        uint64_t kind = take(in, 1);
        size_t len = (size_t)(take(in, 3) % (MAX_BUF + 1));
        guarded g;
        guarded_alloc(&g, len, (kind >> 2) & 1, (size_t)take(in, 1) % 64);
        size_t offset = pick_size(in, len), count = pick_size(in, len);
        op_ctl o;
        /* A peer that stays open never ends a receive: bound the wait. */
        pick_ctl(in, &o, p->end == END_STAY);
        int peek = 0;
        size_t n = 0;
        fastsock_result expect = model_range(len, offset, count, &n);

        int64_t t0 = now_us();
        fastsock_result rc;
        const char *what;
        if (kind % 3 == 0) {
            what = "recvall";
            rc = fastsock_recvall(fd, g.buf, len, offset, count, &o.ctl);
        } else {
            peek = kind % 3 == 2;
            what = peek ? "recv(MSG_PEEK)" : "recv";
            rc = fastsock_recv(fd, g.buf, len, offset, count, peek ? MSG_PEEK : 0, &o.ctl);
        }
        int64_t elapsed = now_us() - t0;

        if (expect < 0) {
            REQUIRE(rc == expect, "%s(len %zu, offset %zu, count %zu) = %zd, want %zd", what,
                    len, offset, count, rc, expect);
            REQUIRE(o.ctl.moved == 0, "%s range error moved %zu", what, o.ctl.moved);
            require_untouched_outside(&g, 0, 0);
            guarded_free(&g);
            continue;
        }
        size_t moved = o.ctl.moved;
        REQUIRE(moved <= n, "%s moved %zu of %zu", what, moved, n);
        for (size_t k = 0; k < moved; k++)
            REQUIRE(g.buf[offset + k] == stream_byte(p->seed, consumed + k),
                    "%s: byte %zu of %zu is not stream byte %llu", what, k, moved,
                    (unsigned long long)(consumed + k));
        require_untouched_outside(&g, offset, moved);

        if (rc >= 0) {
            REQUIRE((size_t)rc == moved, "%s returned %zd but moved %zu", what, rc, moved);
            if (kind % 3 == 0)
                REQUIRE((size_t)rc == n, "recvall returned %zd of %zu", rc, n);
            if (rc == 0 && n > 0) /* end of stream */
                REQUIRE(__atomic_load_n(&p->writing_over, __ATOMIC_SEQ_CST) &&
                        p->end != END_STAY &&
                        consumed == __atomic_load_n(&p->done, __ATOMIC_SEQ_CST),
                        "%s saw end of stream at %llu", what, (unsigned long long)consumed);
        } else if (rc == FASTSOCK_EOF) {
            REQUIRE(kind % 3 == 0, "%s gave FASTSOCK_EOF", what);
            REQUIRE(p->end != END_STAY && __atomic_load_n(&p->writing_over, __ATOMIC_SEQ_CST) &&
                        consumed + moved == __atomic_load_n(&p->done, __ATOMIC_SEQ_CST),
                    "recvall: end of stream after %llu + %zu, the peer wrote %llu",
                    (unsigned long long)consumed, moved,
                    (unsigned long long)__atomic_load_n(&p->done, __ATOMIC_SEQ_CST));
        } else {
            require_allowed_error(rc, &o, elapsed, 0);
        }
        if (!peek)
            consumed += moved;
        guarded_free(&g);
    }

    /* The rest of the stream must continue exactly where the counts said. */
    shutdown(fd, SHUT_WR);
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    uint8_t buf[16384];
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r == 0)
            break;
        if (r < 0 && errno == EINTR)
            continue;
        REQUIRE(r > 0, "drain: %s", strerror(errno));
        for (ssize_t k = 0; k < r; k++)
            REQUIRE(buf[k] == stream_byte(p->seed, consumed + (uint64_t)k),
                    "drain: stream byte %llu wrong: a count was not exact",
                    (unsigned long long)(consumed + (uint64_t)k));
        consumed += (uint64_t)r;
    }
    REQUIRE(consumed == __atomic_load_n(&p->done, __ATOMIC_SEQ_CST),
            "received %llu in all, the peer sent %llu", (unsigned long long)consumed,
            (unsigned long long)p->done);
}

/* ---- send episode ----------------------------------------------------------------- */

/* A file whose byte j is stream byte base + j: a memfd, or a pipe that holds
 * the whole of it (so it fits the pipe's capacity). -1 if none can be made. */
static int make_file(int as_pipe, size_t size, uint64_t seed, uint64_t base)
{
    uint8_t *data = malloc(size ? size : 1);
    REQUIRE(data != NULL, "malloc");
    fill_stream(data, size, seed, base);
    int fd = -1;
    if (as_pipe) {
        int pp[2];
        REQUIRE(pipe(pp) == 0, "pipe");
        REQUIRE(write(pp[1], data, size) == (ssize_t)size, "pipe write");
        close(pp[1]);
        fd = pp[0];
    } else {
        fd = memfd_create("fuzz", 0);
        REQUIRE(fd >= 0, "memfd_create");
        REQUIRE(write(fd, data, size) == (ssize_t)size, "memfd write");
    }
    free(data);
    return fd;
}

/* Returns the bytes the counts say were sent. */
static uint64_t send_episode(input *in, int fd, peer *p)
{
    uint64_t sent = 0;
    int nops = 1 + (int)(take(in, 1) % MAX_OPS);
    for (int i = 0; i < nops; i++) {
        uint64_t kind = take(in, 1);
        op_ctl o;
        size_t n = 0, moved;
        fastsock_result rc, expect;
        const char *what;
        int64_t t0, elapsed;
        if (kind % 3 != 2) {
            size_t len = (size_t)(take(in, 3) % (MAX_BUF + 1));
            guarded g;
            guarded_alloc(&g, len, (kind >> 2) & 1, (size_t)take(in, 1) % 64);
            size_t offset = pick_size(in, len), count = pick_size(in, len);
            pick_ctl(in, &o, 0);
            expect = model_range(len, offset, count, &n);
            /* data[offset + k] is the stream byte the peer expects next. */
            if (expect == 0)
                fill_stream(g.buf, len, p->seed, sent - offset);
            guarded_protect(&g, PROT_READ); /* a send that writes faults */
            what = kind % 3 == 0 ? "send" : "sendall";
            t0 = now_us();
            rc = kind % 3 == 0 ? fastsock_send(fd, g.buf, len, offset, count, &o.ctl)
                               : fastsock_sendall(fd, g.buf, len, offset, count, &o.ctl);
            elapsed = now_us() - t0;
            if (expect < 0)
                REQUIRE(rc == expect, "%s(len %zu, offset %zu, count %zu) = %zd, want %zd",
                        what, len, offset, count, rc, expect);
            guarded_free(&g);
        } else {
            int as_pipe = (kind >> 2) & 1;
            size_t size = (size_t)(take(in, 3) % (as_pipe ? 65536 : MAX_BUF + 1));
            int64_t offset;
            switch (take(in, 1) % 6) {
            case 0: offset = 0; break;
            case 1: offset = (int64_t)size; break;
            case 2: offset = (int64_t)size + 1; break;
            case 3: offset = -1; break;
            case 4: offset = INT64_MAX; break;
            default: offset = (int64_t)(take(in, 3) % (size + 1)); break;
            }
            size_t count = pick_size(in, size);
            pick_ctl(in, &o, 0);
            int file = make_file(as_pipe, size, p->seed, sent - (uint64_t)offset);
            /* The contract's model: a seekable file sends [offset, size)
             * clamped by count; a pipe must be read from where it is. */
            if (offset < 0) {
                expect = FASTSOCK_EOFFSET;
            } else if (as_pipe && offset != 0) {
                expect = -ESPIPE;
            } else {
                uint64_t avail = (uint64_t)offset >= size ? 0 : size - (uint64_t)offset;
                n = (uint64_t)count < avail ? count : (size_t)avail;
                expect = 0;
            }
            what = as_pipe ? "sendfile(pipe)" : "sendfile";
            t0 = now_us();
            rc = fastsock_sendfile(fd, file, offset, count, &o.ctl);
            elapsed = now_us() - t0;
            if (expect < 0)
                REQUIRE(rc == expect, "%s(size %zu, offset %lld, count %zu) = %zd, want %zd",
                        what, size, (long long)offset, count, rc, expect);
            if (expect == 0 && !as_pipe) {
                /* The core leaves a seekable file's position alone. */
                REQUIRE(lseek(file, 0, SEEK_CUR) == (off_t)size, "sendfile moved the position");
            }
            close(file);
        }
        moved = o.ctl.moved;
        if (expect < 0) {
            REQUIRE(moved == 0, "%s argument error moved %zu", what, moved);
            continue;
        }
        REQUIRE(moved <= n, "%s moved %zu of %zu", what, moved, n);
        if (rc >= 0) {
            REQUIRE((size_t)rc == moved, "%s returned %zd but moved %zu", what, rc, moved);
            if (kind % 3 != 0)
                REQUIRE((size_t)rc == n, "%s returned %zd of %zu", what, rc, n);
        } else {
            require_allowed_error(rc, &o, elapsed, p->close_after != UINT64_MAX);
        }
        sent += moved;
    }
    shutdown(fd, SHUT_WR); /* the peer reads to the end, or has closed */
    return sent;
}

/* ---- signal storms ------------------------------------------------------------------ */

/* A timer that interrupts the calling thread (and only it: the peer's
 * system calls stay undisturbed) every interval_us with a handler installed
 * without SA_RESTART, as an interpreter's is, so that the core's system calls
 * fail with EINTR or come back short. */
static volatile sig_atomic_t storm_signals;

static void storm_handler(int sig)
{
    (void)sig;
    storm_signals++;
}

static timer_t storm_start(unsigned interval_us)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = storm_handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = SIGUSR1;
    ev._sigev_un._tid = gettid(); /* glibc names no accessor for it */
    timer_t timer;
    REQUIRE(timer_create(CLOCK_MONOTONIC, &ev, &timer) == 0, "timer_create: %s", strerror(errno));
    struct itimerspec its = { { 0, (long)interval_us * 1000 }, { 0, (long)interval_us * 1000 } };
    REQUIRE(timer_settime(timer, 0, &its, NULL) == 0, "timer_settime");
    return timer;
}

static void storm_stop(timer_t timer)
{
    timer_delete(timer);
}

/* ---- driver ---------------------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* The contract: a gone peer is an error, never SIGPIPE. Keep SIGPIPE at
     * its default action so that a leak of it kills the run. */
    signal(SIGPIPE, SIG_DFL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input in = { data, size };
    for (int e = 0; e < MAX_EPISODES && in.n > 0; e++) {
        int sv[2];
        REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
        uint64_t kind = take(&in, 1);
        peer p;
        memset(&p, 0, sizeof p);
        p.fd = sv[1];
        p.seed = take(&in, 2);
        p.sending = kind & 1;
        if (kind & 2)
            fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
        if (kind & 4) {
            /* Small socket buffers: sends block and go partial, receives
             * arrive in pieces. */
            int small = 4096;
            setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
            setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
            setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
            setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        }
        if (p.sending) {
            pick_chunks(&in, &p, 96 * 1024);
            p.end = (int)(take(&in, 1) % END_COUNT);
        } else {
            pick_chunks(&in, &p, 16384);
            uint64_t c = take(&in, 3);
            p.close_after = c % 4 == 0 ? (c >> 2) % (256 * 1024) : UINT64_MAX;
        }
        pthread_t t;
        REQUIRE(pthread_create(&t, NULL, peer_main, &p) == 0, "pthread_create");
        static const unsigned storm_us[] = { 100, 300, 1000 };
        int storm = (kind >> 3) % 4 != 0 ? 0 : 1;
        timer_t timer = 0;
        if (storm)
            timer = storm_start(storm_us[(kind >> 5) % 3]);
        if (p.sending) {
            receive_episode(&in, sv[0], &p);
            if (storm)
                storm_stop(timer);
            storm = 0;
            pthread_join(t, NULL);
        } else {
            uint64_t sent = send_episode(&in, sv[0], &p);
            if (storm)
                storm_stop(timer);
            storm = 0;
            pthread_join(t, NULL);
            /* What the peer read is the stream, and exactly what the counts
             * said was sent (or all it wanted, when it closed early). */
            REQUIRE(p.bad_at == 0, "the peer received a wrong byte at stream position %llu",
                    (unsigned long long)(p.bad_at - 1));
            uint64_t want = sent < p.close_after ? sent : p.close_after;
            REQUIRE(p.done == want, "the peer read %llu, the counts say %llu were sent",
                    (unsigned long long)p.done, (unsigned long long)want);
        }
        close(sv[0]);
    }
    return 0;
}
