/*
 * The C conformance runner: every case of tests/cases.txt against the core,
 * through the loopback server. The other languages' runners do the same
 * through their modules; the checks are those of tests/README.md.
 *
 * C has no allocating recvall, so the runner's recvall is what a C caller
 * writes: check n, malloc n bytes, fastsock_recvall into them.
 */
#include "fastsock.h"
#include "stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_KEYS 24
#define SENTINEL 0xA5

typedef struct kv {
    char key[32];
    char val[128];
} kv;

typedef struct test_case {
    char name[64];
    kv keys[MAX_KEYS];
    int nkeys;
} test_case;

static const char *const known_keys[] = {
    "op", "req", "sock", "n", "bufsize", "offset", "count", "datalen", "file", "timeout",
    "expect", "result", "result_max", "moved", "moved_min", "cycles_max", "budget", "steps_min",
    "pieces", "delim", "max", "repeat", "then", "hay", "needle", "sep", "from", NULL
};
static const char *const known_ops[] = {
    "recvall", "recvall_into", "recv_into", "send", "sendall", "sendfile",
    "recv_steps", "recv_steps_into", "send_steps", "sendfile_steps",
    "sendallv", "recvfile", "readuntil", "find", "split", NULL
};
static const char *const known_expects[] = {
    "ok", "closed", "timeout", "reset", "peer_gone", "badarg", "badsock", "nomem", "wouldblock",
    "toolong", "badfile", NULL
};
static const char *const known_socks[] = { "fd", "int", "notsock", "closed", NULL };

static int in_list(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (!strcmp(*list, s))
            return 1;
    return 0;
}

static const char *get(const test_case *tc, const char *key)
{
    for (int i = 0; i < tc->nkeys; i++)
        if (!strcmp(tc->keys[i].key, key))
            return tc->keys[i].val;
    return NULL;
}

static int64_t get_int(const test_case *tc, const char *key, int64_t dflt)
{
    const char *v = get(tc, key);
    return v ? (int64_t)strtoll(v, NULL, 10) : dflt;
}

/* Sizes as a C caller passes them: a negative value wraps, as it would. */
static size_t get_size(const test_case *tc, const char *key, size_t dflt)
{
    const char *v = get(tc, key);
    if (v == NULL)
        return dflt;
    return v[0] == '-' ? (size_t)strtoll(v, NULL, 10) : (size_t)strtoull(v, NULL, 10);
}

/* A value of the server request, e.g. seed of "gen,len=10,seed=3". */
static uint64_t req_value(const test_case *tc, const char *key)
{
    const char *req = get(tc, "req");
    char pattern[40];
    snprintf(pattern, sizeof pattern, ",%s=", key);
    const char *at = strstr(req, pattern);
    return at ? strtoull(at + strlen(pattern), NULL, 10) : 0;
}

/* Parses one line; 1 for a case, 0 for blank/comment, -1 with a message. */
static int parse_line(char *line, test_case *tc, char *err, size_t errlen)
{
    char *hash = strchr(line, '#');
    if (hash)
        *hash = '\0';
    char *save = NULL;
    char *tok = strtok_r(line, " \t\r\n", &save);
    if (tok == NULL)
        return 0;
    memset(tc, 0, sizeof *tc);
    snprintf(tc->name, sizeof tc->name, "%s", tok);
    while ((tok = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
        char *eq = strchr(tok, '=');
        if (eq == NULL) {
            snprintf(err, errlen, "%s: token without '=': %s", tc->name, tok);
            return -1;
        }
        *eq = '\0';
        char *at = strchr(tok, '@');
        int override = 0;
        if (at) {
            *at = '\0';
            if (strcmp(at + 1, "c"))
                continue; /* another language's override */
            override = 1;
        }
        if (!in_list(known_keys, tok)) {
            snprintf(err, errlen, "%s: unknown key %s", tc->name, tok);
            return -1;
        }
        int slot = -1;
        for (int i = 0; i < tc->nkeys; i++)
            if (!strcmp(tc->keys[i].key, tok))
                slot = i;
        if (slot >= 0 && !override)
            continue; /* an override came first; it wins */
        if (slot < 0) {
            if (tc->nkeys == MAX_KEYS) {
                snprintf(err, errlen, "%s: too many keys", tc->name);
                return -1;
            }
            slot = tc->nkeys++;
        }
        snprintf(tc->keys[slot].key, sizeof tc->keys[slot].key, "%s", tok);
        snprintf(tc->keys[slot].val, sizeof tc->keys[slot].val, "%s", eq + 1);
    }
    const char *op = get(tc, "op"), *expect = get(tc, "expect"), *sock = get(tc, "sock");
    const char *file = get(tc, "file");
    if (!op || !in_list(known_ops, op) || !expect || !in_list(known_expects, expect) ||
        (!get(tc, "req") && strcmp(op, "find") && strcmp(op, "split")) ||
        (sock && !in_list(known_socks, sock)) ||
        (file && strncmp(file, "regular:", 8) && strncmp(file, "pipe:", 5) && strcmp(file, "empty") &&
         strcmp(file, "pipe") && strncmp(file, "append:", 7) && strncmp(file, "readonly:", 9))) {
        snprintf(err, errlen, "%s: missing or unknown op/expect/req/sock/file", tc->name);
        return -1;
    }
    return 1;
}

/* ---- the server ------------------------------------------------------------ */

static int server_port;

static int start_server(const char *path)
{
    int out[2];
    if (pipe(out) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        execl(path, path, "--idle-exit", "60", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    FILE *f = fdopen(out[0], "r");
    if (f == NULL || fscanf(f, "PORT %d", &server_port) != 1)
        return -1;
    fclose(f);
    return 0;
}

static int connect_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)server_port) };
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("connect");
        exit(2);
    }
    return fd;
}

static void send_request(int fd, const char *req)
{
    char line[256];
    snprintf(line, sizeof line, "%s\n", req);
    for (char *c = line; *c; c++)
        if (*c == ',')
            *c = ' ';
    if (send(fd, line, strlen(line), MSG_NOSIGNAL) != (ssize_t)strlen(line)) {
        perror("send request");
        exit(2);
    }
}

/* The sink's answer after we stop sending; -1 when the connection is gone. */
static int sink_answer(int fd, uint64_t *got, uint64_t *match)
{
    shutdown(fd, SHUT_WR);
    char answer[128];
    size_t n = 0;
    for (;;) {
        ssize_t r = recv(fd, answer + n, sizeof answer - 1 - n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    answer[n] = '\0';
    unsigned long long g, m;
    if (sscanf(answer, "got=%llu match=%llu", &g, &m) != 2)
        return -1;
    *got = g;
    *match = m;
    return 0;
}

/* ---- pipes for sendfile ------------------------------------------------------- */

typedef struct pipe_writer {
    int fd;
    const unsigned char *data;
    size_t len;
} pipe_writer;

static void *write_pipe(void *arg)
{
    pipe_writer *w = arg;
    /* The reader may stop early (a count): the write then fails with EPIPE,
     * and the SIGPIPE it raises stays blocked in this thread. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    size_t done = 0;
    while (done < w->len) {
        ssize_t r = write(w->fd, w->data + done, w->len - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        done += (size_t)r;
    }
    close(w->fd);
    return NULL;
}

/* ---- running a case ------------------------------------------------------------ */

static const char *kind_of(fastsock_result rc)
{
    switch (rc) {
    case FASTSOCK_EOF: return "closed";
    case FASTSOCK_EOFFSET:
    case FASTSOCK_ECOUNT: return "badarg";
    case -ETIMEDOUT: return "timeout";
    case -ECONNRESET: return "reset";
    case -EPIPE: return "peer_gone";
    case -ENOTSOCK:
    case -EBADF: return "badsock";
    case -ESPIPE: return "badarg"; /* a progressive sendfile of a pipe */
    case -ENOMEM: return "nomem";
    case -EAGAIN: return "wouldblock";
    case -EINVAL: return "badarg";
    case FASTSOCK_ETOOLONG: return "toolong";
    default: return rc >= 0 ? "ok" : "other";
    }
}

static int kind_matches(const char *expect, const char *kind)
{
    if (!strcmp(expect, kind))
        return 1;
    return !strcmp(expect, "peer_gone") && !strcmp(kind, "reset");
}

#define FAIL(...) do { snprintf(why, whylen, __VA_ARGS__); goto done; } while (0)

typedef struct steps_seen {
    size_t largest;   /* bytes of the step that moved most */
    unsigned moving;  /* steps that moved data */
} steps_seen;

/* What an event loop does with a progressive transfer: wait until the fd is
 * ready for what the transfer wants, step, again. A poll that times out
 * ends it with -ETIMEDOUT, as a loop's own timeout would. */
static fastsock_result drive_steps(fastsock_xfer *x, int64_t timeout_ms, steps_seen *seen)
{
    while (x->want) {
        struct pollfd p = { x->fd, (short)(x->want == FASTSOCK_WANT_READ ? POLLIN : POLLOUT), 0 };
        int ready = poll(&p, 1, timeout_ms < 0 ? 30000 : (int)timeout_ms);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            return ready == 0 ? -ETIMEDOUT : -errno;
        fastsock_result rc = fastsock_xfer_step(x);
        if (rc < 0)
            return rc;
        if ((size_t)rc > seen->largest)
            seen->largest = (size_t)rc;
        seen->moving += rc > 0;
    }
    return x->error < 0 ? x->error : (fastsock_result)x->done;
}

/* expect, result, result_max, moved and moved_min against what a call did. */
static int check_outcome(const test_case *tc, const char *kind, fastsock_result rc, size_t moved,
                         char *why, size_t whylen)
{
    const char *expect = get(tc, "expect");
    if (!kind_matches(expect, kind))
        FAIL("expected %s, got %s (%zd: %s)", expect, kind, rc, fastsock_strerror(rc));
    if (!strcmp(expect, "ok")) {
        int64_t result = get_int(tc, "result", -1), result_max = get_int(tc, "result_max", -1);
        if (result >= 0 && rc != result)
            FAIL("result %zd, expected %" PRId64, rc, result);
        if (result_max >= 0 && rc > result_max)
            FAIL("result %zd above %" PRId64, rc, result_max);
        if (moved != (size_t)rc)
            FAIL("moved %zu but returned %zd", moved, rc);
    } else {
        int64_t want_moved = get_int(tc, "moved", -1), moved_min = get_int(tc, "moved_min", -1);
        if (want_moved >= 0 && moved != (size_t)want_moved)
            FAIL("moved %zu, expected %" PRId64, moved, want_moved);
        if (moved_min >= 0 && moved < (size_t)moved_min)
            FAIL("moved %zu, expected at least %" PRId64, moved, moved_min);
    }
    return 1;
done:
    return 0;
}

/* After a send: the sink got every byte the call reported sent, all matching. */
static int check_sink(int fd, size_t moved, char *why, size_t whylen)
{
    uint64_t got, match;
    if (sink_answer(fd, &got, &match) < 0)
        FAIL("no answer from the sink");
    if (got != moved || match != got)
        FAIL("sink got %" PRIu64 " (matching %" PRIu64 "), the call reported %zu", got, match, moved);
    return 1;
done:
    return 0;
}

static int run_more(const test_case *tc, char *why, size_t whylen);
static int call_target(const char *sockkind, int fd, int *other);

static int run_case(const test_case *tc, char *why, size_t whylen)
{
    const char *op = get(tc, "op"), *expect = get(tc, "expect");
    if (in_list((const char *const[]){ "sendallv", "recvfile", "readuntil", "find", "split", NULL }, op))
        return run_more(tc, why, whylen);
    const char *sockkind = get(tc, "sock") ? get(tc, "sock") : "fd";
    int is_recv = !strncmp(op, "recv", 4);
    int steps = strstr(op, "_steps") != NULL;
    fastsock_xfer x;
    steps_seen seen = { 0, 0 };
    memset(&x, 0, sizeof x);
    x.file = -1;
    int ok = 0, fd = connect_server(), target = fd, other = -1;
    unsigned char *unit = malloc(FASTSOCK_TEST_UNIT), *buf = NULL, *want = NULL;
    int file = -1, pipe_fds[2] = { -1, -1 };
    pthread_t writer;
    int writer_started = 0;
    pipe_writer pw;
    fastsock_result rc = 0;
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    fastsock_test_unit(req_value(tc, "seed"), unit);
    send_request(fd, get(tc, "req"));

    target = call_target(sockkind, fd, &other);
    const char *timeout = get(tc, "timeout");
    if (timeout)
        ctl.timeout_ms = (int64_t)ceil(strtod(timeout, NULL) * 1000);

    size_t offset = get_size(tc, "offset", 0);
    size_t count = get_size(tc, "count", FASTSOCK_ALL);
    size_t bufsize = get_size(tc, "bufsize", 0);
    int64_t n_signed = get_int(tc, "n", 0);
    int runner_badarg = 0, runner_nomem = 0;
    size_t budget = get_size(tc, "budget", 0);
    if (steps)
        fcntl(target, F_SETFL, fcntl(target, F_GETFL) | O_NONBLOCK);

    if (!strcmp(op, "recv_steps")) {
        if (n_signed < 0) {
            runner_badarg = 1;
        } else if ((buf = malloc((size_t)n_signed ? (size_t)n_signed : 1)) == NULL) {
            runner_nomem = 1;
        } else {
            bufsize = (size_t)n_signed;
            if ((rc = fastsock_xfer_recv_init(&x, target, buf, bufsize, 0, bufsize)) == 0) {
                x.budget = budget;
                x.flags = FASTSOCK_XFER_FRESH;
                rc = drive_steps(&x, ctl.timeout_ms, &seen);
            }
            ctl.moved = x.done;
        }
    } else if (!strcmp(op, "recv_steps_into")) {
        buf = malloc(bufsize ? bufsize : 1);
        memset(buf, SENTINEL, bufsize);
        if ((rc = fastsock_xfer_recv_init(&x, target, buf, bufsize, offset,
                                          get_size(tc, "n", FASTSOCK_ALL))) == 0) {
            x.budget = budget;
            rc = drive_steps(&x, ctl.timeout_ms, &seen);
        }
        ctl.moved = x.done;
    } else if (!strcmp(op, "send_steps")) {
        size_t datalen = get_size(tc, "datalen", 0);
        buf = malloc(datalen ? datalen : 1);
        fastsock_test_fill(unit, 0, buf, datalen);
        if ((rc = fastsock_xfer_send_init(&x, target, buf, datalen, offset, count)) == 0) {
            x.budget = budget;
            rc = drive_steps(&x, ctl.timeout_ms, &seen);
        }
        ctl.moved = x.done;
    } else if (!strcmp(op, "recvall")) {
        if (n_signed < 0) {
            runner_badarg = 1;
        } else if ((buf = malloc((size_t)n_signed ? (size_t)n_signed : 1)) == NULL) {
            runner_nomem = 1;
        } else {
            bufsize = (size_t)n_signed;
            rc = fastsock_recvall(target, buf, bufsize, 0, bufsize, &ctl);
        }
    } else if (is_recv) {
        buf = malloc(bufsize ? bufsize : 1);
        memset(buf, SENTINEL, bufsize);
        size_t n = get_size(tc, "n", FASTSOCK_ALL);
        if (!strcmp(op, "recvall_into"))
            rc = fastsock_recvall(target, buf, bufsize, offset, n, &ctl);
        else
            rc = fastsock_recv(target, buf, bufsize, offset, n, 0, &ctl);
    } else if (!strcmp(op, "send") || !strcmp(op, "sendall")) {
        size_t datalen = get_size(tc, "datalen", 0);
        buf = malloc(datalen ? datalen : 1);
        fastsock_test_fill(unit, 0, buf, datalen);
        if (!strcmp(op, "send"))
            rc = fastsock_send(target, buf, datalen, offset, count, &ctl);
        else
            rc = fastsock_sendall(target, buf, datalen, offset, count, &ctl);
    } else { /* sendfile, sendfile_steps */
        const char *spec = get(tc, "file");
        size_t flen = strcmp(spec, "empty") ? (size_t)strtoull(strchr(spec, ':') + 1, NULL, 10) : 0;
        buf = malloc(flen ? flen : 1);
        fastsock_test_fill(unit, 0, buf, flen);
        if (!strncmp(spec, "pipe:", 5)) {
            if (pipe(pipe_fds) < 0)
                FAIL("pipe: %s", strerror(errno));
            file = pipe_fds[0];
            pw = (pipe_writer){ pipe_fds[1], buf, flen };
            writer_started = pthread_create(&writer, NULL, write_pipe, &pw) == 0;
        } else {
            char path[] = "/tmp/fastsock-sendfile-XXXXXX";
            file = mkstemp(path);
            unlink(path);
            if (file < 0 || write(file, buf, flen) != (ssize_t)flen || lseek(file, 0, SEEK_SET) != 0)
                FAIL("temporary file: %s", strerror(errno));
        }
        if (!steps) {
            rc = fastsock_sendfile(target, file, (int64_t)offset, count, &ctl);
        } else if ((rc = fastsock_xfer_sendfile_init(&x, target, file, (int64_t)offset, count)) == 0) {
            x.budget = budget;
            rc = drive_steps(&x, ctl.timeout_ms, &seen);
            ctl.moved = x.done;
        }
        if (file != pipe_fds[0] && lseek(file, 0, SEEK_CUR) != 0)
            FAIL("the core moved the file's position");
    }

    if (steps) /* the checks below read the socket as a blocking caller */
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    const char *kind = runner_badarg ? "badarg" : runner_nomem ? "nomem" : kind_of(rc);
    size_t moved = ctl.moved;
    if (!check_outcome(tc, kind, rc, moved, why, whylen))
        goto done;
    if (!strcmp(op, "recvall") && get(tc, "cycles_max") && !getenv("FASTSOCK_PORTABLE_BUILD") &&
        fastsock_recvall_cycles() > (unsigned long)get_int(tc, "cycles_max", 0))
        FAIL("%lu recv calls, expected at most %" PRId64, fastsock_recvall_cycles(),
             get_int(tc, "cycles_max", 0));

    if (steps && budget && seen.largest > budget)
        FAIL("a step moved %zu bytes, beyond the budget of %zu", seen.largest, budget);
    if (steps && get(tc, "steps_min") && seen.moving < (unsigned)get_int(tc, "steps_min", 0))
        FAIL("%u steps moved data, expected at least %" PRId64, seen.moving, get_int(tc, "steps_min", 0));

    int refused = !strcmp(expect, "badarg") || !strcmp(expect, "badsock") || !strcmp(expect, "nomem");
    if (is_recv && buf) {
        int fresh = !strcmp(op, "recvall") || !strcmp(op, "recv_steps");
        size_t at = fresh ? 0 : offset;
        want = malloc(moved ? moved : 1);
        fastsock_test_fill(unit, req_value(tc, "off"), want, moved);
        if (memcmp(buf + at, want, moved))
            FAIL("received bytes differ from the stream");
        if (!fresh && !refused)
            for (size_t i = 0; i < bufsize; i++)
                if ((i < at || i >= at + moved) && buf[i] != SENTINEL)
                    FAIL("byte %zu outside [%zu, %zu) was written", i, at, at + moved);
    }
    if (refused && moved != 0)
        FAIL("refused, yet %zu bytes moved", moved);
    if (refused && is_recv) {
        unsigned char first, expected_first;
        fastsock_test_fill(unit, req_value(tc, "off"), &expected_first, 1);
        if (recv(fd, &first, 1, MSG_WAITALL) != 1 || first != expected_first)
            FAIL("a refused receive consumed data");
    }
    if (!is_recv && strcmp(expect, "peer_gone") && !check_sink(fd, moved, why, whylen))
        goto done;
    ok = 1;
done:
    fastsock_xfer_release(&x);
    if (writer_started) {
        close(pipe_fds[0]);
        pthread_join(writer, NULL);
    } else if (file >= 0) {
        close(file);
    }
    if (other >= 0)
        close(other);
    close(fd);
    free(unit);
    free(buf);
    free(want);
    return ok;
}

/* ---- sendallv, recvfile, readuntil, find and split ------------------------------ */

/* Hex bytes ("0d0a") into out, or "empty": their count. */
static size_t hex_bytes(const char *spec, unsigned char *out, size_t cap)
{
    size_t n = 0;
    if (!strcmp(spec, "empty"))
        return 0;
    for (; spec[0] && spec[1] && n < cap; spec += 2) {
        unsigned v;
        sscanf(spec, "%2x", &v);
        out[n++] = (unsigned char)v;
    }
    return n;
}

/* hay=stream:LEN:SEED, hex:BYTES or empty, in a buffer of its own size. */
static unsigned char *make_hay(const char *spec, size_t *len)
{
    if (!strncmp(spec, "stream:", 7)) {
        char *end;
        *len = (size_t)strtoull(spec + 7, &end, 10);
        unsigned char *unit = malloc(FASTSOCK_TEST_UNIT), *hay = malloc(*len ? *len : 1);
        fastsock_test_unit(strtoull(end + 1, NULL, 10), unit);
        fastsock_test_fill(unit, 0, hay, *len);
        free(unit);
        return hay;
    }
    const char *hex = strncmp(spec, "hex:", 4) ? spec : spec + 4;
    unsigned char *hay = malloc(strlen(hex) / 2 + 1);
    *len = hex_bytes(hex, hay, strlen(hex) / 2);
    return hay;
}

/* A plain left-to-right scan, to check fastsock_find's split against. */
static size_t naive_fields(const unsigned char *hay, size_t len, const unsigned char *sep, size_t slen)
{
    size_t fields = 1;
    for (size_t i = 0; i + slen <= len;) {
        if (!memcmp(hay + i, sep, slen)) {
            fields++;
            i += slen;
        } else {
            i++;
        }
    }
    return fields;
}

static int run_search(const test_case *tc, char *why, size_t whylen)
{
    int ok = 0, split = !strcmp(get(tc, "op"), "split");
    size_t len, nlen;
    unsigned char *hay = make_hay(get(tc, "hay"), &len), needle[64];
    nlen = hex_bytes(get(tc, split ? "sep" : "needle"), needle, sizeof needle);
    int64_t from = get_int(tc, "from", 0);
    fastsock_result rc = 0;
    /* What every binding refuses: an empty needle (a split would never end)
     * and a negative start. */
    int badarg = nlen == 0 || from < 0;
    if (!badarg && !split) {
        rc = fastsock_find(hay, len, (size_t)from, needle, nlen);
    } else if (!badarg) {
        size_t at = 0, fields = 1;
        for (fastsock_result hit; (hit = fastsock_find(hay, len, at, needle, nlen)) >= 0; fields++)
            at = (size_t)hit + nlen;
        rc = (fastsock_result)fields;
        if (fields != naive_fields(hay, len, needle, nlen))
            FAIL("%zu fields, a plain scan finds %zu", fields, naive_fields(hay, len, needle, nlen));
    }
    const char *kind = badarg ? "badarg" : "ok";
    if (strcmp(get(tc, "expect"), kind))
        FAIL("expected %s, got %s", get(tc, "expect"), kind);
    if (!badarg && rc != get_int(tc, "result", -2))
        FAIL("result %zd, expected %s", rc, get(tc, "result"));
    if (!badarg && !split && rc >= 0 && memcmp(hay + rc, needle, nlen))
        FAIL("no needle at %zd", rc);
    ok = 1;
done:
    free(hay);
    return ok;
}

/* pieces=64:16777216:2, LEN*K, none, x (no buffer): iovecs over consecutive
 * stream bytes. Returns the count, -1 for an x. */
static long parse_pieces(const char *spec, struct iovec *iov, size_t cap, size_t *total)
{
    size_t n = 0;
    *total = 0;
    if (!strcmp(spec, "none"))
        return 0;
    for (const char *p = spec; *p;) {
        if (*p == 'x')
            return -1;
        char *end;
        size_t plen = (size_t)strtoull(p, &end, 10), times = 1;
        if (*end == '*')
            times = (size_t)strtoull(end + 1, &end, 10);
        for (size_t k = 0; k < times && n < cap; k++) {
            iov[n].iov_base = (void *)(uintptr_t)*total; /* an offset until the data exists */
            iov[n++].iov_len = plen;
            *total += plen;
        }
        p = *end == ':' ? end + 1 : end;
    }
    return (long)n;
}

/* The socket a case hands to the call: the connection, a regular file, or
 * a closed socket's number. *other is a descriptor to close afterwards. */
static int call_target(const char *sockkind, int fd, int *other)
{
    *other = -1;
    if (!strcmp(sockkind, "notsock")) {
        char path[] = "/tmp/fastsock-notsock-XXXXXX";
        *other = mkstemp(path);
        unlink(path);
        return *other;
    }
    if (!strcmp(sockkind, "closed")) {
        int closed = socket(AF_INET, SOCK_STREAM, 0);
        close(closed);
        return closed;
    }
    return fd;
}

/* A temporary file for recvfile: LEN bytes of SENTINEL, opened as spec says. */
static int recvfile_target(const char *spec, size_t *prefill, int pipe_fds[2])
{
    *prefill = 0;
    if (!strcmp(spec, "pipe"))
        return pipe(pipe_fds) < 0 ? -1 : pipe_fds[1];
    const char *colon = strchr(spec, ':');
    *prefill = colon ? (size_t)strtoull(colon + 1, NULL, 10) : 0;
    char path[] = "/tmp/fastsock-recvfile-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    unsigned char *fill = malloc(*prefill ? *prefill : 1);
    memset(fill, SENTINEL, *prefill);
    ssize_t w = write(fd, fill, *prefill);
    free(fill);
    int mode = !strncmp(spec, "append:", 7) ? O_RDWR | O_APPEND : !strncmp(spec, "readonly:", 9) ? O_RDONLY : -1;
    if (mode != -1) {
        close(fd);
        fd = open(path, mode);
    }
    unlink(path);
    if (w != (ssize_t)*prefill || lseek(fd, 0, SEEK_SET) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int run_more(const test_case *tc, char *why, size_t whylen)
{
    const char *op = get(tc, "op"), *expect = get(tc, "expect");
    if (!strcmp(op, "find") || !strcmp(op, "split"))
        return run_search(tc, why, whylen);
    const char *sockkind = get(tc, "sock") ? get(tc, "sock") : "fd";
    int ok = 0, fd = connect_server(), other, file = -1, pipe_fds[2] = { -1, -1 };
    int target = call_target(sockkind, fd, &other);
    unsigned char *unit = malloc(FASTSOCK_TEST_UNIT), *data = NULL, *want = NULL;
    struct iovec *iov = NULL;
    fastsock_reader reader;
    fastsock_reader_init(&reader, target);
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    fastsock_result rc = 0;
    const char *kind = NULL;
    uint64_t off = req_value(tc, "off");
    fastsock_test_unit(req_value(tc, "seed"), unit);
    send_request(fd, get(tc, "req"));
    if (get(tc, "timeout"))
        ctl.timeout_ms = (int64_t)ceil(strtod(get(tc, "timeout"), NULL) * 1000);
    int refused = !strcmp(expect, "badarg") || !strcmp(expect, "badsock") || !strcmp(expect, "badfile");
    size_t moved = 0, consumed = 0; /* consumed: stream bytes the checks have seen */

    if (!strcmp(op, "sendallv")) {
        size_t total, cap = 4096;
        iov = malloc(cap * sizeof *iov);
        long n = parse_pieces(get(tc, "pieces"), iov, cap, &total);
        data = malloc(total ? total : 1);
        fastsock_test_fill(unit, 0, data, total);
        for (long i = 0; i < n; i++)
            iov[i].iov_base = data + (uintptr_t)iov[i].iov_base;
        rc = n < 0 ? 0 : fastsock_sendallv(target, iov, (size_t)n, &ctl);
        kind = n < 0 ? "badarg" : kind_of(rc);
        moved = ctl.moved;
        if (!check_outcome(tc, kind, rc, moved, why, whylen))
            goto done;
        ok = !strcmp(expect, "peer_gone") || check_sink(fd, moved, why, whylen);
        goto done;
    }

    if (!strcmp(op, "recvfile")) {
        const char *spec = get(tc, "file");
        size_t prefill;
        file = recvfile_target(spec, &prefill, pipe_fds);
        if (file < 0)
            FAIL("recvfile's file: %s", strerror(errno));
        size_t offset = get_size(tc, "offset", 0);
        rc = fastsock_recvfile(target, file, (int64_t)offset, get_size(tc, "n", 0), &ctl);
        moved = ctl.moved;
        kind = rc == -EBADF && target == fd ? "badfile" : rc == -ESPIPE ? "badarg" : kind_of(rc);
        if (!check_outcome(tc, kind, rc, moved, why, whylen))
            goto done;
        size_t at = !strncmp(spec, "append:", 7) ? prefill : offset;
        size_t flen = pipe_fds[0] >= 0 ? moved : (size_t)lseek(file, 0, SEEK_END);
        if (pipe_fds[0] < 0 && flen != (at + moved > prefill ? at + moved : prefill) && !refused)
            FAIL("the file holds %zu bytes, expected %zu", flen, at + moved > prefill ? at + moved : prefill);
        data = malloc(flen ? flen : 1);
        want = malloc(moved ? moved : 1);
        ssize_t r = pipe_fds[0] >= 0 ? read(pipe_fds[0], data, flen) : pread(file, data, flen, 0);
        if (r != (ssize_t)flen && !(refused && r < 0))
            FAIL("reading the file back: %s", strerror(errno));
        fastsock_test_fill(unit, off, want, moved);
        if (pipe_fds[0] >= 0)
            at = 0;
        if (moved && memcmp(data + at, want, moved))
            FAIL("the file's bytes differ from the stream");
        for (size_t i = 0; pipe_fds[0] < 0 && !refused && i < flen; i++)
            if ((i < at || i >= at + moved) && data[i] != SENTINEL)
                FAIL("byte %zu of the file, outside [%zu, %zu), was written", i, at, at + moved);
        consumed = moved;
    } else { /* readuntil */
        unsigned char delim[64];
        size_t dlen = hex_bytes(get(tc, "delim"), delim, sizeof delim);
        size_t max = get_size(tc, "max", 0), total = 0;
        int64_t repeat = get_int(tc, "repeat", 1);
        const unsigned char *line = NULL;
        want = malloc(max + 1);
        for (int64_t i = 0; i < repeat; i++) {
            rc = fastsock_reader_until(&reader, delim, dlen, max, &line, &ctl);
            size_t got = rc >= 0 ? (size_t)rc : ctl.moved;
            fastsock_test_fill(unit, off + total, want, got);
            if (got && memcmp(line, want, got))
                FAIL("line %" PRId64 " differs from the stream", i + 1);
            if (rc >= 0 && (got < dlen || memcmp(line + got - dlen, delim, dlen)))
                FAIL("line %" PRId64 " does not end with the delimiter", i + 1);
            total += got;
            if (rc < 0)
                break;
        }
        moved = total;
        if (rc >= 0)
            rc = (fastsock_result)total;
        kind = kind_of(rc);
        if (!check_outcome(tc, kind, rc, moved, why, whylen))
            goto done;
        size_t then = get_size(tc, "then", 0);
        if (then) {
            data = malloc(then);
            fastsock_ctl body = FASTSOCK_CTL_INIT;
            fastsock_result b = fastsock_reader_recvall(&reader, data, then, 0, then, &body);
            free(want);
            want = malloc(then);
            fastsock_test_fill(unit, off + total, want, then);
            if (b != (fastsock_result)then || memcmp(data, want, then))
                FAIL("the %zu bytes after the line(s) differ from the stream (%zd)", then, b);
        }
        consumed = total + then;
    }
    if (refused && moved != 0)
        FAIL("refused, yet %zu bytes moved", moved);
    if (refused) {
        unsigned char first, expected_first;
        fastsock_test_fill(unit, off + consumed, &expected_first, 1);
        if (recv(fd, &first, 1, MSG_WAITALL) != 1 || first != expected_first)
            FAIL("a refused call consumed data");
    }
    ok = 1;
done:
    fastsock_reader_release(&reader);
    if (file >= 0)
        close(file);
    if (pipe_fds[0] >= 0)
        close(pipe_fds[0]);
    if (other >= 0)
        close(other);
    close(fd);
    free(unit);
    free(data);
    free(want);
    free(iov);
    return ok;
}

int main(int argc, char **argv)
{
    const char *server = NULL, *cases = NULL;
    const char *only[64];
    int nonly = 0, list = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--server") && i + 1 < argc) server = argv[++i];
        else if (!strcmp(argv[i], "--cases") && i + 1 < argc) cases = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc && nonly < 64) only[nonly++] = argv[++i];
        else if (!strcmp(argv[i], "--list")) list = 1;
        else {
            fprintf(stderr, "usage: %s --cases FILE (--list | --server PATH [--only NAME]...)\n", argv[0]);
            return 2;
        }
    }
    FILE *f = cases ? fopen(cases, "r") : NULL;
    if (f == NULL || (!list && server == NULL)) {
        fprintf(stderr, "run_cases: need --cases FILE%s\n", list ? "" : " and --server PATH");
        return 2;
    }
    static test_case all[512];
    int ncases = 0;
    char line[1024], err[256];
    while (fgets(line, sizeof line, f)) {
        int r = parse_line(line, &all[ncases], err, sizeof err);
        if (r < 0) {
            fprintf(stderr, "run_cases: %s\n", err);
            return 2;
        }
        if (r > 0 && ++ncases == 512) {
            fprintf(stderr, "run_cases: too many cases\n");
            return 2;
        }
    }
    fclose(f);
    if (list) {
        for (int i = 0; i < ncases; i++)
            printf("%s\n", all[i].name);
        return 0;
    }
    if (start_server(server) < 0) {
        fprintf(stderr, "run_cases: could not start %s\n", server);
        return 2;
    }
    int passed = 0, failed = 0;
    for (int i = 0; i < ncases; i++) {
        int wanted = nonly == 0;
        for (int j = 0; j < nonly; j++)
            wanted |= !strcmp(only[j], all[i].name);
        if (!wanted)
            continue;
        char why[256] = "";
        if (run_case(&all[i], why, sizeof why)) {
            printf("ok %s\n", all[i].name);
            passed++;
        } else {
            printf("FAIL %s: %s\n", all[i].name, why);
            failed++;
        }
        fflush(stdout);
    }
    int quit = connect_server();
    send_request(quit, "quit");
    close(quit);
    wait(NULL);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
