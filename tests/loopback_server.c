/*
 * The loopback server every language's tests and benchmarks talk to.
 * Protocol and stream definition: tests/README.md.
 *
 * It must never be the bottleneck: the stream is served from a prebuilt,
 * page-aligned copy of the unit repeated, in large sends that start at the
 * unit's phase 0 after the first, so the kernel copies from aligned memory.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "stream.h"

#define UNIT FASTSOCK_TEST_UNIT
#define REPEATS 16u /* a send covers up to REPEATS units: about 1 MiB */

typedef struct request {
    char mode[16];
    uint64_t len, seed, off;
    int64_t close_at, reset_at, stall_at; /* -1: not set */
    int64_t stall_ms, pause_ms;
    uint64_t trickle_chunk, trickle_ms;
    uint64_t step; /* sink: bytes one recv takes at most (0: 1 MiB) */
} request;

static atomic_int active_connections;
static atomic_llong last_activity_ms;
static int listen_fd = -1;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* UNIT * REPEATS bytes of the unit repeated, then one more unit, so that any
 * phase can start a full-length send. Page-aligned. */
static unsigned char *make_stream_block(uint64_t seed)
{
    unsigned char *block = aligned_alloc(4096, ((size_t)UNIT * (REPEATS + 1) + 4095) / 4096 * 4096);
    if (block == NULL)
        return NULL;
    fastsock_test_unit(seed, block);
    for (unsigned r = 1; r <= REPEATS; r++)
        memcpy(block + (size_t)r * UNIT, block, UNIT);
    return block;
}

static int send_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t sent = send(fd, p, n, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += sent;
        n -= (size_t)sent;
    }
    return 0;
}

/* Waits up to ms for the client to go away (or send anything). */
static void wait_for_client(int fd, int64_t ms)
{
    int64_t end = now_ms() + ms;
    for (;;) {
        int64_t left = end - now_ms();
        if (left <= 0)
            return;
        struct pollfd p = { fd, POLLIN, 0 };
        int rc = poll(&p, 1, (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc != 0) {
            char scratch[4096];
            ssize_t got = recv(fd, scratch, sizeof scratch, MSG_DONTWAIT);
            if (got <= 0 && !(got < 0 && (errno == EAGAIN || errno == EINTR)))
                return;
        }
        if (rc == 0)
            return;
    }
}

static void reset_connection(int fd)
{
    struct linger lg = { 1, 0 }; /* close() now sends RST */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

static void serve_gen(int fd, const request *rq)
{
    unsigned char *block = make_stream_block(rq->seed);
    if (block == NULL)
        return;
    uint64_t n = rq->len;
    int64_t fault_at = rq->close_at >= 0 ? rq->close_at : rq->reset_at >= 0 ? rq->reset_at
                                                                             : rq->stall_at;
    if (fault_at >= 0 && (uint64_t)fault_at < n)
        n = (uint64_t)fault_at;
    uint64_t pos = rq->off, end = rq->off + n;
    size_t max_chunk = rq->trickle_chunk ? rq->trickle_chunk : (size_t)UNIT * REPEATS;
    while (pos < end) {
        size_t phase = (size_t)(pos % UNIT);
        size_t chunk = (size_t)UNIT * REPEATS - phase;
        if (chunk > max_chunk)
            chunk = max_chunk;
        if (chunk > end - pos)
            chunk = (size_t)(end - pos);
        if (send_all(fd, block + phase, chunk) < 0)
            break;
        pos += chunk;
        if (rq->trickle_ms && pos < end)
            sleep_ms((int64_t)rq->trickle_ms);
    }
    free(block);
    if (rq->reset_at >= 0) {
        sleep_ms(200); /* let the client read what was sent before the RST */
        reset_connection(fd);
        return;
    }
    if (rq->stall_at >= 0) {
        wait_for_client(fd, rq->stall_ms);
        return;
    }
    shutdown(fd, SHUT_WR);
    wait_for_client(fd, 10000); /* close after the client, so it never sees RST */
}

static void serve_sink(int fd, const request *rq)
{
    unsigned char unit[UNIT];
    fastsock_test_unit(rq->seed, unit);
    if (rq->pause_ms > 0) {
        /* A slow reader: a small receive buffer fills fast, so the client's
         * sends block and go partial, and little is left to drain after. */
        int small = 64 * 1024;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        sleep_ms(rq->pause_ms);
    }
    enum { BUF = 1 << 20 };
    unsigned char *buf = malloc(BUF);
    if (buf == NULL)
        return;
    uint64_t got = 0, match = 0;
    int matching = 1;
    for (;;) {
        size_t want = rq->step && rq->step < BUF ? (size_t)rq->step : BUF;
        if (rq->reset_at >= 0 && (uint64_t)rq->reset_at - got < want)
            want = (size_t)((uint64_t)rq->reset_at - got);
        if (want == 0) {
            free(buf);
            reset_connection(fd);
            return;
        }
        ssize_t r = recv(fd, buf, want, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (matching) {
            uint64_t at = (rq->off + got) % UNIT;
            for (ssize_t i = 0; i < r; i++) {
                if (buf[i] != unit[at]) {
                    matching = 0;
                    break;
                }
                match++;
                if (++at == UNIT)
                    at = 0;
            }
        }
        got += (uint64_t)r;
    }
    free(buf);
    char answer[96];
    int len = snprintf(answer, sizeof answer, "got=%llu match=%llu\n",
                       (unsigned long long)got, (unsigned long long)match);
    send_all(fd, (const unsigned char *)answer, (size_t)len);
    shutdown(fd, SHUT_WR);
    wait_for_client(fd, 10000);
}

static void serve_echo(int fd)
{
    unsigned char buf[1 << 16];
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || send_all(fd, buf, (size_t)r) < 0)
            break;
    }
}

/* A request/response peer: for each line the client sends (anything up to
 * a newline), one reply in one send. resp: a RESP bulk string, "$len\r\n" +
 * len stream bytes + "\r\n" (a Redis GET). lenprefix: an 8-byte big-endian
 * length, then the len bytes (a length-prefixed RPC). The protocol
 * benchmarks' servers. */
static void serve_replies(int fd, const request *rq, int resp)
{
    unsigned char unit[UNIT];
    fastsock_test_unit(rq->seed, unit);
    unsigned char head[32];
    size_t hlen = 8;
    if (resp) {
        hlen = (size_t)snprintf((char *)head, sizeof head, "$%llu\r\n", (unsigned long long)rq->len);
    } else {
        for (int i = 0; i < 8; i++)
            head[i] = (unsigned char)(rq->len >> (56 - 8 * i));
    }
    size_t total = hlen + rq->len + (resp ? 2 : 0);
    unsigned char *reply = malloc(total), buf[4096];
    if (reply == NULL)
        return;
    memcpy(reply, head, hlen);
    for (uint64_t i = 0; i < rq->len; i++)
        reply[hlen + i] = unit[(rq->off + i) % UNIT];
    if (resp)
        memcpy(reply + total - 2, "\r\n", 2);
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] == '\n' && send_all(fd, reply, total) < 0)
                goto out;
    }
out:
    free(reply);
}

static int parse_request(char *line, request *rq)
{
    memset(rq, 0, sizeof *rq);
    rq->close_at = rq->reset_at = rq->stall_at = -1;
    char *save = NULL;
    char *tok = strtok_r(line, " \r\n", &save);
    if (tok == NULL || strlen(tok) >= sizeof rq->mode)
        return -1;
    strcpy(rq->mode, tok);
    while ((tok = strtok_r(NULL, " \r\n", &save)) != NULL) {
        char *eq = strchr(tok, '=');
        if (eq == NULL)
            return -1;
        *eq = '\0';
        const char *key = tok, *val = eq + 1;
        unsigned long long v = strtoull(val, NULL, 10);
        if (!strcmp(key, "len")) rq->len = v;
        else if (!strcmp(key, "seed")) rq->seed = v;
        else if (!strcmp(key, "off")) rq->off = v;
        else if (!strcmp(key, "close")) rq->close_at = (int64_t)v;
        else if (!strcmp(key, "reset")) rq->reset_at = (int64_t)v;
        else if (!strcmp(key, "stall")) rq->stall_at = (int64_t)v;
        else if (!strcmp(key, "stall_ms")) rq->stall_ms = (int64_t)v;
        else if (!strcmp(key, "pause_ms")) rq->pause_ms = (int64_t)v;
        else if (!strcmp(key, "step")) rq->step = v;
        else if (!strcmp(key, "trickle")) {
            char *colon = strchr(val, ':');
            if (colon == NULL)
                return -1;
            rq->trickle_chunk = v;
            rq->trickle_ms = strtoull(colon + 1, NULL, 10);
        } else
            return -1;
    }
    return 0;
}

/* Reads the request line byte by byte, so that no payload after it is eaten. */
static int read_line(int fd, char *line, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = recv(fd, line + n, 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        if (line[n] == '\n') {
            line[n] = '\0';
            return 0;
        }
        n++;
    }
    return -1;
}

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char line[512];
    request rq;
    if (read_line(fd, line, sizeof line) == 0 && parse_request(line, &rq) == 0) {
        if (!strcmp(rq.mode, "gen"))
            serve_gen(fd, &rq);
        else if (!strcmp(rq.mode, "sink"))
            serve_sink(fd, &rq);
        else if (!strcmp(rq.mode, "echo"))
            serve_echo(fd);
        else if (!strcmp(rq.mode, "resp") || !strcmp(rq.mode, "lenprefix"))
            serve_replies(fd, &rq, !strcmp(rq.mode, "resp"));
        else if (!strcmp(rq.mode, "quit"))
            exit(0);
        else
            fprintf(stderr, "loopback server: unknown mode %s\n", rq.mode);
    } else {
        fprintf(stderr, "loopback server: bad request\n");
    }
    close(fd);
    atomic_store(&last_activity_ms, now_ms());
    atomic_fetch_sub(&active_connections, 1);
    return NULL;
}

int main(int argc, char **argv)
{
    int64_t idle_exit_ms = 120000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--idle-exit") && i + 1 < argc)
            idle_exit_ms = (int64_t)(atof(argv[++i]) * 1000);
        else {
            fprintf(stderr, "usage: %s [--idle-exit SECONDS]\n", argv[0]);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = 0 };
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    if (bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listen_fd, 128) < 0 ||
        getsockname(listen_fd, (struct sockaddr *)&addr, &alen) < 0) {
        perror("loopback server");
        return 1;
    }
    printf("PORT %d\n", ntohs(addr.sin_port));
    fflush(stdout);
    atomic_store(&last_activity_ms, now_ms());
    for (;;) {
        struct pollfd p = { listen_fd, POLLIN, 0 };
        int rc = poll(&p, 1, 500);
        if (rc == 0) {
            if (atomic_load(&active_connections) == 0 &&
                now_ms() - atomic_load(&last_activity_ms) > idle_exit_ms)
                return 0;
            continue;
        }
        if (rc < 0)
            continue;
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        atomic_fetch_add(&active_connections, 1);
        atomic_store(&last_activity_ms, now_ms());
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, serve, (void *)(intptr_t)fd) != 0) {
            close(fd);
            atomic_fetch_sub(&active_connections, 1);
        }
        pthread_attr_destroy(&attr);
    }
}
