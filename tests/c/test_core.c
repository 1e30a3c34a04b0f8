/*
 * Unit tests of the core's edges, over socketpairs and pipes: what the
 * conformance cases reach only indirectly (socket state restored after a
 * call, the interrupt hook, SIGPIPE at its default action, the exact
 * errors for ranges near SIZE_MAX).
 */
#include "fastsock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/time.h>
#include <unistd.h>

static int passed, failed;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (cond) {                                                                   \
            passed++;                                                                 \
        } else {                                                                      \
            failed++;                                                                 \
            printf("FAIL %s:%d: %s\n", __func__, __LINE__, #cond);                    \
        }                                                                             \
    } while (0)

static void pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
        perror("socketpair");
        exit(2);
    }
}

static void set_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

typedef struct writer {
    int fd;
    size_t len, chunk;
    unsigned delay_us;
} writer;

static unsigned char pattern(size_t i) { return (unsigned char)(i * 7 + (i >> 9)); }

static void *write_pattern(void *arg)
{
    writer *w = arg;
    unsigned char *buf = malloc(w->len);
    for (size_t i = 0; i < w->len; i++)
        buf[i] = pattern(i);
    for (size_t done = 0; done < w->len;) {
        size_t n = w->len - done < w->chunk ? w->len - done : w->chunk;
        ssize_t r = write(w->fd, buf + done, n); /* sockets and pipes alike */
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r <= 0)
            break;
        done += (size_t)r;
        if (w->delay_us)
            usleep(w->delay_us);
    }
    free(buf);
    return NULL;
}

static void test_ranges(void)
{
    int sv[2];
    pair(sv);
    char buf[16];
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    CHECK(fastsock_recvall(sv[0], buf, 16, 17, 0, &ctl) == FASTSOCK_EOFFSET);
    CHECK(fastsock_recvall(sv[0], buf, 16, 16, 1, &ctl) == FASTSOCK_ECOUNT);
    CHECK(fastsock_recvall(sv[0], buf, 16, 16, 0, &ctl) == 0);
    CHECK(fastsock_recvall(sv[0], buf, 16, 1, SIZE_MAX - 1, &ctl) == FASTSOCK_ECOUNT);
    CHECK(fastsock_recv(sv[0], buf, 16, SIZE_MAX, 1, 0, &ctl) == FASTSOCK_EOFFSET);
    CHECK(fastsock_send(sv[0], buf, 16, 8, 9, &ctl) == FASTSOCK_ECOUNT);
    CHECK(fastsock_sendall(sv[0], buf, 16, 2, SIZE_MAX - 1, &ctl) == FASTSOCK_ECOUNT);
    CHECK(fastsock_sendfile(sv[0], 0, -1, 1, &ctl) == FASTSOCK_EOFFSET);
    CHECK(ctl.moved == 0);
    /* FASTSOCK_ALL from the end is an empty range, not an error. */
    CHECK(fastsock_sendall(sv[0], buf, 16, 16, FASTSOCK_ALL, &ctl) == 0);
    CHECK(strstr(fastsock_strerror(FASTSOCK_ECOUNT), "count") != NULL);
    CHECK(strlen(fastsock_strerror(-ECONNRESET)) > 0);
    close(sv[0]);
    close(sv[1]);
}

/* A runtime's O_NONBLOCK socket: made blocking for the transfer (few recv
 * calls), and O_NONBLOCK and SO_RCVTIMEO are back afterwards. */
static void test_recvall_nonblocking_restored(void)
{
    int sv[2];
    pair(sv);
    set_nonblock(sv[0]);
    struct timeval tv = { 7, 0 }, after;
    setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t len = 8u << 20;
    writer w = { sv[1], len, 1u << 20, 0 };
    pthread_t t;
    pthread_create(&t, NULL, write_pattern, &w);
    unsigned char *buf = malloc(len);
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    ctl.timeout_ms = 10000;
    CHECK(fastsock_recvall(sv[0], buf, len, 0, len, &ctl) == (fastsock_result)len);
    pthread_join(t, NULL);
    int same = 1;
    for (size_t i = 0; i < len; i++)
        same &= buf[i] == pattern(i);
    CHECK(same);
    CHECK(ctl.moved == len);
    CHECK(fcntl(sv[0], F_GETFL) & O_NONBLOCK);
    socklen_t sl = sizeof after;
    getsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &after, &sl);
    CHECK(after.tv_sec == 7 && after.tv_usec == 0);
    if (!fastsock_portable_build())
        CHECK(fastsock_recvall_cycles() <= 16);
    free(buf);
    close(sv[0]);
    close(sv[1]);
}

static void test_poll_only_and_timeout(void)
{
    int sv[2];
    pair(sv);
    set_nonblock(sv[0]);
    char buf[100];
    send(sv[1], "hello", 5, 0);
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    ctl.flags = FASTSOCK_POLL_ONLY;
    ctl.timeout_ms = 100;
    CHECK(fastsock_recvall(sv[0], buf, sizeof buf, 0, 10, &ctl) == -ETIMEDOUT);
    CHECK(ctl.moved == 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    ctl.flags = 0; /* the blocking path times out the same way */
    send(sv[1], "abc", 3, 0);
    CHECK(fastsock_recvall(sv[0], buf, sizeof buf, 0, 10, &ctl) == -ETIMEDOUT);
    CHECK(ctl.moved == 3);
    ctl.timeout_ms = 0; /* never wait */
    CHECK(fastsock_recv(sv[0], buf, sizeof buf, 0, 10, 0, &ctl) == -EAGAIN);
    close(sv[1]);
    ctl.timeout_ms = -1;
    CHECK(fastsock_recv(sv[0], buf, sizeof buf, 0, 10, 0, &ctl) == 0);
    CHECK(fastsock_recvall(sv[0], buf, sizeof buf, 0, 1, &ctl) == FASTSOCK_EOF);
    close(sv[0]);
}

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) { (void)sig; alarms++; }
static int hook_calls;
static int stop_after_three(void *arg)
{
    (void)arg;
    return ++hook_calls >= 3 ? -EINTR : 0;
}

/* Signals reach the hook, which can stop the call; moved stays exact. */
static void test_interrupt_hook(void)
{
    int sv[2];
    pair(sv);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: the call sees EINTR */
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = { { 0, 20000 }, { 0, 20000 } };
    setitimer(ITIMER_REAL, &it, NULL);
    send(sv[1], "12345", 5, 0);
    char buf[64];
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    ctl.on_interrupt = stop_after_three;
    hook_calls = 0;
    CHECK(fastsock_recvall(sv[0], buf, sizeof buf, 0, sizeof buf, &ctl) == -EINTR);
    CHECK(ctl.moved == 5);
    CHECK(hook_calls == 3);
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &off, NULL);
    CHECK(alarms >= 3);
    close(sv[0]);
    close(sv[1]);
}

/* With SIGPIPE at its default action, a gone peer is -EPIPE, not death. */
static void test_no_sigpipe(void)
{
    signal(SIGPIPE, SIG_DFL);
    int sv[2];
    pair(sv);
    close(sv[1]);
    char buf[4096] = { 0 };
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    CHECK(fastsock_sendall(sv[0], buf, sizeof buf, 0, FASTSOCK_ALL, &ctl) == -EPIPE);
    CHECK(fastsock_send(sv[0], buf, sizeof buf, 0, FASTSOCK_ALL, &ctl) == -EPIPE);
    FILE *f = tmpfile();
    fwrite(buf, 1, sizeof buf, f);
    fflush(f);
    CHECK(fastsock_sendfile(sv[0], fileno(f), 0, FASTSOCK_ALL, &ctl) == -EPIPE);
    sigset_t pending;
    sigpending(&pending);
    CHECK(!sigismember(&pending, SIGPIPE));
    fclose(f);
    close(sv[0]);
}

static void test_sendfile_pipe_and_bounds(void)
{
    int sv[2], pp[2];
    pair(sv);
    if (pipe(pp) < 0)
        exit(2);
    CHECK(write(pp[1], "pipe-data", 9) == 9);
    close(pp[1]);
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    CHECK(fastsock_sendfile(sv[0], pp[0], 1, FASTSOCK_ALL, &ctl) == -ESPIPE);
    CHECK(fastsock_sendfile(sv[0], pp[0], 0, FASTSOCK_ALL, &ctl) == 9);
    char got[16] = { 0 };
    CHECK(recv(sv[1], got, sizeof got, 0) == 9 && memcmp(got, "pipe-data", 9) == 0);
    close(pp[0]);

    /* An O_NONBLOCK pipe whose writer is slower than us: wait, don't fail. */
    if (pipe(pp) < 0)
        exit(2);
    set_nonblock(pp[0]);
    writer slow = { pp[1], 3000, 1000, 20000 };
    pthread_t t;
    pthread_create(&t, NULL, write_pattern, &slow);
    ctl.timeout_ms = 5000;
    CHECK(fastsock_sendfile(sv[0], pp[0], 0, 3000, &ctl) == 3000);
    pthread_join(t, NULL);
    char slow_got[3000];
    CHECK(recv(sv[1], slow_got, sizeof slow_got, MSG_WAITALL) == 3000);
    CHECK(slow_got[0] == (char)pattern(0) && slow_got[2999] == (char)pattern(2999));
    ctl.timeout_ms = 50; /* and the deadline bounds the wait */
    CHECK(fastsock_sendfile(sv[0], pp[0], 0, 1, &ctl) == -ETIMEDOUT);
    close(pp[1]);
    ctl.timeout_ms = -1;
    FILE *f = tmpfile();
    fputs("0123456789", f);
    fflush(f);
    CHECK(fastsock_sendfile(sv[0], fileno(f), 10, FASTSOCK_ALL, &ctl) == 0);
    CHECK(fastsock_sendfile(sv[0], fileno(f), 100, 5, &ctl) == 0);
    CHECK(fastsock_sendfile(sv[0], fileno(f), 7, 100, &ctl) == 3);
    CHECK(recv(sv[1], got, sizeof got, 0) == 3 && memcmp(got, "789", 3) == 0);
    int write_only = open("/dev/null", O_WRONLY);
    CHECK(fastsock_sendfile(sv[0], write_only, 0, 1, &ctl) == -EBADF);
    close(write_only);
    fclose(f);
    close(pp[0]);
    close(sv[0]);
    close(sv[1]);
}

/* A send on a full socket that may not wait: -EAGAIN, nothing counted. */
static void test_send_full_socket(void)
{
    int sv[2];
    pair(sv);
    size_t len = 16u << 20;
    char *buf = calloc(1, len);
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    ctl.timeout_ms = 0;
    fastsock_result first = fastsock_send(sv[0], buf, len, 0, FASTSOCK_ALL, &ctl);
    CHECK(first > 0 && (size_t)first < len);
    CHECK(fastsock_send(sv[0], buf, len, (size_t)first, FASTSOCK_ALL, &ctl) == -EAGAIN);
    CHECK(ctl.moved == 0);
    ctl.timeout_ms = 50;
    CHECK(fastsock_sendall(sv[0], buf, len, 0, FASTSOCK_ALL, &ctl) == -ETIMEDOUT);
    CHECK(ctl.moved < len);
    free(buf);
    close(sv[0]);
    close(sv[1]);
}

static void test_not_a_socket(void)
{
    FILE *f = tmpfile();
    char buf[8] = "12345678"; /* the first try's send reads it before refusing */
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    CHECK(fastsock_recvall(fileno(f), buf, 8, 0, 8, &ctl) == -ENOTSOCK);
    CHECK(fastsock_sendall(fileno(f), buf, 8, 0, 8, &ctl) == -ENOTSOCK);
    CHECK(fastsock_recvall(-1, buf, 8, 0, 8, &ctl) == -EBADF);
    fclose(f);
}

static void *read_all(void *arg)
{
    struct { int fd; unsigned char *buf; size_t len; } *r = arg;
    size_t have = 0;
    while (have < r->len) {
        usleep(have == 0 ? 20000 : 0); /* the sender finds the socket full first */
        ssize_t got = recv(r->fd, r->buf + have, r->len - have < 65536 ? r->len - have : 65536, 0);
        if (got <= 0)
            break;
        have += (size_t)got;
    }
    return NULL;
}

static void *write_late(void *arg)
{
    usleep(20000);
    unsigned char rest[7];
    for (size_t i = 0; i < sizeof rest; i++)
        rest[i] = pattern(i);
    if (write(*(int *)arg, rest, sizeof rest) != (ssize_t)sizeof rest)
        perror("write");
    return NULL;
}

/* Small calls with their data (or room) already there: one system call. One
 * whose first try comes back short goes on in the session from there. */
static void test_first_try(void)
{
    int sv[2];
    pair(sv);
    char buf[16] = { 0 };
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    CHECK(fastsock_sendall(sv[1], "0123456789", 10, 0, 4, &ctl) == 4 && ctl.moved == 4);
    CHECK(fastsock_recvall(sv[0], buf, sizeof buf, 0, 4, &ctl) == 4);
    CHECK(fastsock_recvall_cycles() == 1 && memcmp(buf, "0123", 4) == 0);
    CHECK(write(sv[1], "abc", 3) == 3);
    pthread_t t;
    pthread_create(&t, NULL, write_late, &sv[1]); /* the rest, 20 ms later */
    ctl.timeout_ms = 5000;
    CHECK(fastsock_recvall(sv[0], buf, sizeof buf, 0, 10, &ctl) == 10 && ctl.moved == 10);
    pthread_join(t, NULL);
    CHECK(memcmp(buf, "abc", 3) == 0 && (unsigned char)buf[3] == pattern(0));
    CHECK(fastsock_recvall_cycles() >= 2);
    /* The end of the stream in the first try is the end of the call. */
    close(sv[1]);
    CHECK(fastsock_recvall(sv[0], buf, sizeof buf, 0, 4, &ctl) == FASTSOCK_EOF && ctl.moved == 0);
    close(sv[0]);
}

/* ---- sendallv and recvfile ------------------------------------------------------ */

static void test_sendallv(void)
{
    int sv[2];
    pair(sv);
    /* 300 pieces (more than one batch), empty ones among them, then a large
     * one that goes short into a reader that drains it slowly. */
    enum { PIECES = 300 };
    struct iovec iov[PIECES + 1];
    char small[PIECES][7];
    size_t total = 0;
    for (int i = 0; i < PIECES; i++) {
        snprintf(small[i], sizeof small[i], "%06d", i);
        iov[i].iov_base = small[i];
        iov[i].iov_len = i % 10 == 3 ? 0 : 6;
        total += iov[i].iov_len;
    }
    size_t big = 4u << 20;
    unsigned char *data = malloc(big);
    for (size_t i = 0; i < big; i++)
        data[i] = pattern(i);
    iov[PIECES].iov_base = data;
    iov[PIECES].iov_len = big;
    total += big;
    unsigned char *got = malloc(total);
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    ctl.timeout_ms = 10000;
    writer w = { sv[1], 0, 0, 0 };
    (void)w;
    pthread_t t;
    struct { int fd; unsigned char *buf; size_t len; } rd = { sv[1], got, total };
    pthread_create(&t, NULL, read_all, &rd);
    CHECK(fastsock_sendallv(sv[0], iov, PIECES + 1, &ctl) == (fastsock_result)total);
    CHECK(ctl.moved == total);
    pthread_join(t, NULL);
    size_t at = 0;
    int same = 1;
    for (int i = 0; i < PIECES; i++) {
        same &= memcmp(got + at, small[i], iov[i].iov_len) == 0;
        at += iov[i].iov_len;
    }
    same &= memcmp(got + at, data, big) == 0;
    CHECK(same);
    /* Overflowing totals are refused before any byte moves. */
    struct iovec huge[2] = { { data, SIZE_MAX / 2 }, { data, SIZE_MAX / 2 } };
    CHECK(fastsock_sendallv(sv[0], huge, 2, &ctl) == FASTSOCK_ECOUNT && ctl.moved == 0);
    CHECK(fastsock_sendallv(sv[0], iov, 0, &ctl) == 0);
    /* A gone peer: EPIPE with the bytes that went. */
    close(sv[1]);
    CHECK(fastsock_sendallv(sv[0], iov, PIECES + 1, &ctl) == -EPIPE);
    close(sv[0]);
    free(data);
    free(got);
}

static void test_recvfile(void)
{
    char path[] = "/tmp/fastsock-test-recvfile-XXXXXX";
    int file = mkstemp(path);
    unlink(path);
    unsigned char fill[100];
    memset(fill, 0xA5, sizeof fill);
    CHECK(write(file, fill, sizeof fill) == (ssize_t)sizeof fill);
    for (int append = 0; append < 2; append++) {
        int sv[2];
        pair(sv);
        size_t len = 3u << 20;
        writer w = { sv[1], len + 10, 64u << 10, 0 };
        pthread_t t;
        pthread_create(&t, NULL, write_pattern, &w);
        int target = file;
        if (append)
            target = open(path[0] ? "/dev/null" : "", O_WRONLY); /* replaced below */
        if (append) {
            close(target);
            char p2[] = "/tmp/fastsock-test-recvfile-XXXXXX";
            target = mkstemp(p2);
            unlink(p2);
            CHECK(write(target, fill, 10) == 10);
            fcntl(target, F_SETFL, fcntl(target, F_GETFL) | O_APPEND);
        }
        fastsock_ctl ctl = FASTSOCK_CTL_INIT;
        ctl.timeout_ms = 10000;
        int64_t offset = append ? 0 : 50;
        CHECK(fastsock_recvfile(sv[0], target, offset, len, &ctl) == (fastsock_result)len);
        CHECK(ctl.moved == len);
        /* The stream's rest is still in the socket: no over-read. */
        unsigned char next[10];
        CHECK(recv(sv[0], next, sizeof next, MSG_WAITALL) == 10 && next[0] == pattern(len));
        pthread_join(t, NULL);
        size_t start = append ? 10 : 50;
        unsigned char *back = malloc(start + len);
        CHECK(pread(target, back, start + len, 0) == (ssize_t)(start + len));
        int same = memcmp(back, fill, start) == 0;
        for (size_t i = 0; i < len; i++)
            same &= back[start + i] == pattern(i);
        CHECK(same);
        if (!append)
            CHECK(lseek(target, 0, SEEK_CUR) == 100); /* position left alone */
        free(back);
        /* End of stream first: what came is written, and counted. */
        CHECK(write(sv[1], "tail", 4) == 4);
        close(sv[1]);
        CHECK(fastsock_recvfile(sv[0], target, append ? 0 : 7, 100, &ctl) == FASTSOCK_EOF);
        CHECK(ctl.moved == 4);
        close(sv[0]);
        if (append)
            close(target);
    }
    int sv[2];
    pair(sv);
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    CHECK(fastsock_recvfile(sv[0], file, -1, 10, &ctl) == FASTSOCK_EOFFSET);
    int ro = open("/dev/null", O_RDONLY);
    CHECK(fastsock_recvfile(sv[0], ro, 0, 10, &ctl) == -EBADF);
    int pipes[2];
    CHECK(pipe(pipes) == 0);
    CHECK(fastsock_recvfile(sv[0], pipes[1], 5, 10, &ctl) == -ESPIPE);
    CHECK(fastsock_recvfile(sv[0], file, 0, 0, &ctl) == 0);
    /* A deadline with nothing coming. */
    ctl.timeout_ms = 100;
    CHECK(fastsock_recvfile(sv[0], file, 0, 10, &ctl) == -ETIMEDOUT && ctl.moved == 0);
    close(ro);
    close(pipes[0]);
    close(pipes[1]);
    close(sv[0]);
    close(sv[1]);
    close(file);
}

/* ---- progressive transfers ------------------------------------------------- */

/* Steps until the transfer ends, polling as a loop would; the largest step. */
static size_t drive(fastsock_xfer *x)
{
    size_t largest = 0;
    while (x->want) {
        struct pollfd p = { x->fd, (short)(x->want == FASTSOCK_WANT_READ ? POLLIN : POLLOUT), 0 };
        if (poll(&p, 1, 10000) <= 0)
            break;
        fastsock_result rc = fastsock_xfer_step(x);
        if (rc < 0)
            break;
        if ((size_t)rc > largest)
            largest = (size_t)rc;
    }
    return largest;
}

static void test_xfer_recv_budget_and_fresh(void)
{
    int sv[2];
    pair(sv);
    size_t len = 6u << 20;
    writer w = { sv[1], len, 1u << 20, 0 };
    pthread_t t;
    pthread_create(&t, NULL, write_pattern, &w);
    /* A mapping of its own, never touched: what FRESH is for. */
    unsigned char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    fastsock_xfer x;
    CHECK(fastsock_xfer_recv_init(&x, sv[0], buf, len, 0, len) == 0);
    CHECK(x.want == FASTSOCK_WANT_READ);
    x.budget = 256u << 10;
    x.flags = FASTSOCK_XFER_FRESH;
    size_t largest = drive(&x);
    pthread_join(t, NULL);
    CHECK(x.want == 0 && x.error == 0 && x.done == len);
    CHECK(largest <= x.budget && largest > 0);
    CHECK(x.cycles >= len / x.budget);
    int same = 1;
    for (size_t i = 0; i < len; i++)
        same &= buf[i] == pattern(i);
    CHECK(same);
    /* After the end a step moves nothing. */
    CHECK(fastsock_xfer_step(&x) == 0 && x.done == len);
    fastsock_xfer_release(&x);
    munmap(buf, len);
    close(sv[0]);
    close(sv[1]);
}

/* A step never waits, on a blocking socket too; it ends at EAGAIN. */
static void test_xfer_never_waits(void)
{
    int sv[2];
    pair(sv);
    char buf[64];
    fastsock_xfer x;
    CHECK(fastsock_xfer_recv_init(&x, sv[0], buf, sizeof buf, 0, sizeof buf) == 0);
    CHECK(fastsock_xfer_step(&x) == 0 && x.want == FASTSOCK_WANT_READ && x.cycles == 1);
    CHECK(write(sv[1], "abc", 3) == 3);
    CHECK(fastsock_xfer_step(&x) == 3 && x.done == 3);
    /* The peer ends the stream: FASTSOCK_EOF, the 3 bytes counted. */
    close(sv[1]);
    CHECK(fastsock_xfer_step(&x) == FASTSOCK_EOF);
    CHECK(x.want == 0 && x.error == FASTSOCK_EOF && x.done == 3);
    CHECK(fastsock_xfer_step(&x) == FASTSOCK_EOF);
    close(sv[0]);

    /* Sends into a peer that never reads: what fits, then the step returns. */
    pair(sv);
    size_t len = 32u << 20;
    char *data = calloc(1, len);
    CHECK(fastsock_xfer_send_init(&x, sv[0], data, len, 0, FASTSOCK_ALL) == 0);
    x.budget = len;
    fastsock_result sent = fastsock_xfer_step(&x);
    CHECK(sent > 0 && (size_t)sent < len && x.want == FASTSOCK_WANT_WRITE);
    CHECK(!(fcntl(sv[0], F_GETFL) & O_NONBLOCK));
    /* A gone peer: -EPIPE, and no SIGPIPE reaches the process. */
    close(sv[1]);
    fastsock_result rc = fastsock_xfer_step(&x);
    CHECK(rc == -EPIPE || rc == -ECONNRESET);
    CHECK(x.want == 0 && x.done == (size_t)sent);
    free(data);
    close(sv[0]);
}

static void test_xfer_sendfile(void)
{
    char path[] = "/tmp/fastsock-test-xfer-XXXXXX";
    int file = mkstemp(path);
    unlink(path);
    size_t len = 3u << 20;
    unsigned char *data = malloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = pattern(i);
    CHECK(write(file, data, len) == (ssize_t)len);
    int sv[2];
    pair(sv);
    fastsock_xfer x;
    /* Past the end clamps, as fastsock_sendfile does. */
    CHECK(fastsock_xfer_sendfile_init(&x, sv[0], file, 100, len) == 0);
    CHECK(x.count == len - 100 && x.want == FASTSOCK_WANT_WRITE);
    x.budget = 128u << 10;
    unsigned char *got = malloc(len);
    size_t have = 0;
    while (x.want) {
        fastsock_result rc = fastsock_xfer_step(&x);
        CHECK(rc >= 0 && (size_t)rc <= x.budget);
        if (rc < 0)
            break;
        /* The socket is blocking: the step made it non-blocking for its
         * sendfile calls only. */
        CHECK(!(fcntl(sv[0], F_GETFL) & O_NONBLOCK));
        ssize_t r;
        while ((r = recv(sv[1], got + have, len - have, MSG_DONTWAIT)) > 0)
            have += (size_t)r;
    }
    ssize_t r;
    while (have < x.count && (r = recv(sv[1], got + have, len - have, 0)) > 0)
        have += (size_t)r;
    CHECK(x.error == 0 && x.done == len - 100 && have == len - 100);
    CHECK(memcmp(got, data + 100, have) == 0);
    CHECK(lseek(file, 0, SEEK_CUR) == (off_t)len); /* position left alone */
    fastsock_xfer_release(&x);
    fastsock_xfer_release(&x);

    int pipes[2];
    CHECK(pipe(pipes) == 0);
    CHECK(fastsock_xfer_sendfile_init(&x, sv[0], pipes[0], 0, 10) == -ESPIPE && x.want == 0);
    CHECK(fastsock_xfer_sendfile_init(&x, pipes[1], file, 0, 10) == -ENOTSOCK);
    CHECK(fastsock_xfer_sendfile_init(&x, sv[0], file, -1, 10) == FASTSOCK_EOFFSET);
    CHECK(fastsock_xfer_sendfile_init(&x, sv[0], file, (int64_t)len, FASTSOCK_ALL) == 0 && x.want == 0);
    char small[8];
    CHECK(fastsock_xfer_recv_init(&x, sv[0], small, 8, 9, 0) == FASTSOCK_EOFFSET && x.want == 0);
    CHECK(fastsock_xfer_send_init(&x, sv[0], small, 8, 4, 5) == FASTSOCK_ECOUNT && x.want == 0);
    CHECK(fastsock_xfer_step(&x) == FASTSOCK_ECOUNT);
    close(pipes[0]);
    close(pipes[1]);
    close(sv[0]);
    close(sv[1]);
    close(file);
    free(data);
    free(got);
}

static void test_classify_and_deadlines(void)
{
    CHECK(fastsock_classify(5) == FASTSOCK_KIND_OK);
    CHECK(fastsock_classify(FASTSOCK_EOF) == FASTSOCK_KIND_CLOSED);
    CHECK(fastsock_classify(FASTSOCK_ECOUNT) == FASTSOCK_KIND_RANGE);
    CHECK(fastsock_classify(-ETIMEDOUT) == FASTSOCK_KIND_TIMEOUT);
    CHECK(fastsock_classify(-EAGAIN) == FASTSOCK_KIND_WOULDBLOCK);
    CHECK(fastsock_classify(-EPIPE) == FASTSOCK_KIND_PEER_GONE);
    CHECK(fastsock_classify(-ENOTSOCK) == FASTSOCK_KIND_BADSOCK);
    CHECK(fastsock_classify(-EIO) == FASTSOCK_KIND_OTHER);
    CHECK(fastsock_deadline(-1) == -1 && fastsock_remaining_ms(-1) == -1);
    int64_t d = fastsock_deadline(10000);
    CHECK(fastsock_remaining_ms(d) > 9000 && fastsock_remaining_ms(d) <= 10000);
    CHECK(fastsock_remaining_ms(fastsock_deadline(0)) == 0);
}

/* A line, then a body: the look-ahead goes to the body, the rest comes from
 * the socket; the delimiter across two receives; too long; end of stream. */
static void test_reader(void)
{
    int sv[2];
    pair(sv);
    fastsock_reader r;
    fastsock_reader_init(&r, sv[0]);
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    const unsigned char *line;
    static const char msg[] = "$5\r\nhello\r\n+OK\r\n";
    CHECK(write(sv[1], msg, sizeof msg - 1) == (ssize_t)(sizeof msg - 1));
    CHECK(fastsock_reader_until(&r, "\r\n", 2, 64, &line, &ctl) == 4 && ctl.moved == 4);
    CHECK(line != NULL && memcmp(line, "$5\r\n", 4) == 0);
    CHECK(fastsock_reader_buffered(&r) == sizeof msg - 1 - 4);
    char body[16];
    CHECK(fastsock_reader_recvall(&r, body, sizeof body, 1, 7, &ctl) == 7 && ctl.moved == 7);
    CHECK(memcmp(body + 1, "hello\r\n", 7) == 0);
    CHECK(fastsock_reader_until(&r, "\r\n", 2, 64, &line, &ctl) == 5);
    CHECK(memcmp(line, "+OK\r\n", 5) == 0 && fastsock_reader_buffered(&r) == 0);

    /* The delimiter split over two writes, in two receives; never waits with
     * a timeout of 0, keeping what came. */
    CHECK(write(sv[1], "abc\r", 4) == 4);
    ctl.timeout_ms = 0;
    CHECK(fastsock_reader_until(&r, "\r\n", 2, 64, &line, &ctl) == -EAGAIN && ctl.moved == 0);
    CHECK(fastsock_reader_buffered(&r) == 4);
    CHECK(write(sv[1], "\nrest", 5) == 5);
    CHECK(fastsock_reader_until(&r, "\r\n", 2, 64, &line, &ctl) == 5 && memcmp(line, "abc\r\n", 5) == 0);
    ctl.timeout_ms = -1;

    /* No delimiter within max: nothing handed out, the body reads on. */
    CHECK(fastsock_reader_until(&r, "\r\n", 2, 3, &line, &ctl) == FASTSOCK_ETOOLONG && ctl.moved == 0);
    CHECK(fastsock_reader_until(&r, "\r\n", 2, 1, &line, &ctl) == -EINVAL);
    CHECK(fastsock_reader_until(&r, "", 0, 10, &line, &ctl) == -EINVAL);

    /* A body larger than the look-ahead: the first bytes from it, the rest
     * from the socket. */
    size_t len = 1u << 20;
    unsigned char *big = malloc(len);
    for (size_t i = 0; i < len; i++)
        big[i] = pattern(i);
    writer w = { sv[1], len, 65536, 0 };
    pthread_t t;
    pthread_create(&t, NULL, write_pattern, &w);
    memset(big, 0, len);
    CHECK(fastsock_reader_recvall(&r, big, len, 0, 4, &ctl) == 4 && memcmp(big, "rest", 4) == 0);
    CHECK(fastsock_reader_recvall(&r, big, len, 0, len, &ctl) == (fastsock_result)len && ctl.moved == len);
    pthread_join(t, NULL);
    int same = 1;
    for (size_t i = 0; i < len; i++)
        same &= big[i] == pattern(i);
    CHECK(same);
    free(big);
    CHECK(fastsock_reader_recvall(&r, body, sizeof body, 10, 7, &ctl) == FASTSOCK_ECOUNT);
    CHECK(fastsock_reader_recvall(&r, body, sizeof body, 17, 0, &ctl) == FASTSOCK_EOFFSET);

    /* The stream ends inside a line: the partial is handed out. */
    CHECK(write(sv[1], "tail", 4) == 4);
    close(sv[1]);
    CHECK(fastsock_reader_until(&r, "\n", 1, 64, &line, &ctl) == FASTSOCK_EOF && ctl.moved == 4);
    CHECK(memcmp(line, "tail", 4) == 0 && fastsock_reader_buffered(&r) == 0);
    CHECK(fastsock_reader_until(&r, "\n", 1, 64, &line, &ctl) == FASTSOCK_EOF && ctl.moved == 0);
    fastsock_reader_release(&r);
    fastsock_reader_release(&r);
    close(sv[0]);
}

/* A line longer than the first look-ahead, a delimiter straddling two
 * receives and a timeout that keeps what came. */
static void test_reader_long_line(void)
{
    int sv[2];
    pair(sv);
    fastsock_reader r;
    fastsock_reader_init(&r, sv[0]);
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    const unsigned char *line;
    size_t len = 100000;
    char *data = malloc(len + 3);
    memset(data, 'x', len);
    memcpy(data + len, "END", 3);
    CHECK(write(sv[1], data, 40000) == 40000);
    ctl.timeout_ms = 50;
    CHECK(fastsock_reader_until(&r, "END", 3, 200000, &line, &ctl) == -ETIMEDOUT && ctl.moved == 0);
    CHECK(fastsock_reader_buffered(&r) == 40000);
    ctl.timeout_ms = -1;
    CHECK(write(sv[1], data + 40000, len + 1 - 40000) == (ssize_t)(len + 1 - 40000));
    CHECK(write(sv[1], data + len + 1, 2) == 2);
    CHECK(fastsock_reader_until(&r, "END", 3, 200000, &line, &ctl) == (fastsock_result)(len + 3));
    CHECK(memcmp(line, data, len + 3) == 0);
    free(data);
    fastsock_reader_release(&r);
    close(sv[0]);
    close(sv[1]);
}

static void test_find(void)
{
    static const char hay[] = "abcaabcab";
    size_t n = sizeof hay - 1;
    CHECK(fastsock_find(hay, n, 0, "ab", 2) == 0);
    CHECK(fastsock_find(hay, n, 1, "ab", 2) == 4);
    CHECK(fastsock_find(hay, n, 5, "ab", 2) == 7);
    CHECK(fastsock_find(hay, n, 8, "ab", 2) == -1);
    CHECK(fastsock_find(hay, n, 0, "abcab", 5) == 4);
    CHECK(fastsock_find(hay, n, 0, "zz", 2) == -1);
    CHECK(fastsock_find(hay, n, 3, "", 0) == 3);
    CHECK(fastsock_find(hay, n, n, "", 0) == (fastsock_result)n);
    CHECK(fastsock_find(hay, n, n + 1, "", 0) == -1);
    CHECK(fastsock_find(hay, n, SIZE_MAX, "a", 1) == -1);
    CHECK(fastsock_find(hay, 0, 0, "a", 1) == -1);
    CHECK(fastsock_find(hay, n, 0, "abcaabcabX", 10) == -1);
}

/* Timeout 0 never waits, on a blocking socket too: recvfile (splice would
 * wait on the socket whatever SPLICE_F_NONBLOCK says) and sendfile. The
 * socket's own 2 s timeout bounds a call that waits by mistake. */
static void test_never_wait_file_calls(void)
{
    int sv[2];
    pair(sv);
    struct timeval two = { 2, 0 };
    setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &two, sizeof two);
    setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &two, sizeof two);
    char path[] = "/tmp/fastsock-test-never-XXXXXX";
    int file = mkstemp(path);
    unlink(path);
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    ctl.timeout_ms = 0;
    struct timeval t0, t1;
    gettimeofday(&t0, NULL);
    CHECK(fastsock_recvfile(sv[0], file, 0, 100, &ctl) == -EAGAIN && ctl.moved == 0);
    CHECK(write(sv[1], "abc", 3) == 3);
    CHECK(fastsock_recvfile(sv[0], file, 0, 100, &ctl) == -EAGAIN && ctl.moved == 3);
    CHECK(!(fcntl(sv[0], F_GETFL) & O_NONBLOCK));

    size_t len = 8u << 20;
    char *data = calloc(1, len);
    CHECK(write(file, data, len) == (ssize_t)len);
    fastsock_result rc = fastsock_sendfile(sv[0], file, 0, len, &ctl);
    CHECK((rc == -EAGAIN && ctl.moved > 0 && ctl.moved < len) || (rc >= 0 && (size_t)rc < len));
    CHECK(!(fcntl(sv[0], F_GETFL) & O_NONBLOCK));
    gettimeofday(&t1, NULL);
    CHECK(t1.tv_sec - t0.tv_sec < 2);
    free(data);
    close(file);
    close(sv[0]);
    close(sv[1]);
}

/* recvall's first try alone: done in one recv when the bytes are there;
 * else a recvall finishes from where it stopped and counts its recv too. */
static void test_recvall_try(void)
{
    int sv[2];
    pair(sv);
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    char buf[16];
    CHECK(write(sv[1], "0123456789", 10) == 10);
    CHECK(fastsock_recvall_try(sv[0], buf, sizeof buf, 0, 4, &ctl) == 1 && ctl.moved == 4);
    CHECK(memcmp(buf, "0123", 4) == 0 && fastsock_recvall_cycles() == 1);
    CHECK(fastsock_recvall_try(sv[0], buf, sizeof buf, 0, 10, &ctl) == 0 && ctl.moved == 6);
    size_t first = ctl.moved;
    CHECK(write(sv[1], "abcd", 4) == 4);
    CHECK(fastsock_recvall(sv[0], buf, sizeof buf, first, 10 - first, &ctl) == 4 && ctl.moved == 4);
    CHECK(memcmp(buf, "456789abcd", 10) == 0 && fastsock_recvall_cycles() == 2);
    /* A try left unfinished is counted by the recvall that finishes it
     * only: another receive counts its own recv alone. */
    CHECK(write(sv[1], "xy", 2) == 2);
    CHECK(fastsock_recvall_try(sv[0], buf, sizeof buf, 0, 4, &ctl) == 0 && ctl.moved == 2);
    CHECK(write(sv[1], "zw", 2) == 2);
    CHECK(fastsock_recvall(sv[0], buf, sizeof buf, 8, 2, &ctl) == 2 && fastsock_recvall_cycles() == 1);
    CHECK(fastsock_recvall_try(sv[0], buf, sizeof buf, 0, 17, &ctl) == FASTSOCK_ECOUNT);
    /* sendall's try: all of a small range in one send, a range beyond the
     * data refused, a gone peer an error (never SIGPIPE). */
    CHECK(fastsock_sendall_try(sv[0], "hello", 5, 1, 3, &ctl) == 1 && ctl.moved == 3);
    char got[3];
    CHECK(read(sv[1], got, 3) == 3 && memcmp(got, "ell", 3) == 0);
    CHECK(fastsock_sendall_try(sv[0], "hello", 5, 3, 3, &ctl) == FASTSOCK_ECOUNT && ctl.moved == 0);
    close(sv[1]);
    CHECK(fastsock_recvall_try(sv[0], buf, sizeof buf, 0, 4, &ctl) == FASTSOCK_EOF && ctl.moved == 0);
    fastsock_result gone = fastsock_sendall_try(sv[0], "x", 1, 0, 1, &ctl);
    CHECK((gone == -EPIPE || gone == -ECONNRESET) && ctl.moved == 0);
    close(sv[0]);
}

int main(void)
{
    test_ranges();
    test_recvall_nonblocking_restored();
    test_poll_only_and_timeout();
    test_interrupt_hook();
    test_no_sigpipe();
    test_sendfile_pipe_and_bounds();
    test_send_full_socket();
    test_not_a_socket();
    test_first_try();
    test_recvall_try();
    test_sendallv();
    test_recvfile();
    test_xfer_recv_budget_and_fresh();
    test_xfer_never_waits();
    test_xfer_sendfile();
    test_classify_and_deadlines();
    test_reader();
    test_reader_long_line();
    test_find();
    test_never_wait_file_calls();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
