/*
 * Stress and fault tests of the core, on loopback only, each bounded in
 * count and time:
 *   concurrency  64 connections at once, 8 MiB each way through sendall and
 *                recvall (echo), every byte checked; descriptors and RSS
 *                back to their baseline afterwards;
 *   signals      SIGALRM every millisecond during a 256 MiB recvall and a
 *                256 MiB sendfile: data intact, handler and hook ran;
 *   close        another thread closes the socket during a recvall, a
 *                sendall and a sendfile, then opens files in a loop until
 *                one takes the descriptor number: the transfer ends with an
 *                error, its count is exact, the files are untouched;
 *   fds          with no descriptor left, every call still answers cleanly;
 *   timeouts     with the other core busy, a deadline fires within 100 ms.
 * Usage: fastsock-stress-c --server PATH [--only NAME]...
 * Prints one line of figures per test, `ok NAME` or `FAIL NAME: why`.
 */
#include "fastsock.h"
#include "stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

static int failures;
static const char *current;

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL %s: ", current);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
    failures++;
}

#define CHECK(cond, ...)            \
    do {                            \
        if (!(cond)) {              \
            fail(__VA_ARGS__);      \
            return;                 \
        }                           \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the server -------------------------------------------------------------- */

static int server_port;
static pid_t server_pid;

static void start_server(const char *path)
{
    int out[2];
    if (pipe(out) < 0)
        exit(2);
    server_pid = fork();
    if (server_pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        execl(path, path, "--idle-exit", "60", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    FILE *f = fdopen(out[0], "r");
    if (f == NULL || fscanf(f, "PORT %d", &server_port) != 1) {
        fprintf(stderr, "no PORT line from %s\n", path);
        exit(2);
    }
    fclose(f);
}

/* A connection that has sent its request line (',' for spaces, as in the
 * case file). */
static int open_request(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    strcat(line, "\n");
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)server_port) };
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("connect");
        exit(2);
    }
    size_t len = strlen(line);
    if (send(fd, line, len, MSG_NOSIGNAL) != (ssize_t)len) {
        perror("send request");
        exit(2);
    }
    return fd;
}

/* The sink's answer after shutting down writing: got and match. */
static int sink_answer(int fd, unsigned long long *got, unsigned long long *match)
{
    shutdown(fd, SHUT_WR);
    char buf[128];
    size_t n = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + n, sizeof buf - 1 - n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = 0;
    return sscanf(buf, "got=%llu match=%llu", got, match) == 2 ? 0 : -1;
}

/* ---- process figures ----------------------------------------------------------- */

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own */
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (f == NULL || fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    if (f)
        fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static unsigned char unit_cache[FASTSOCK_TEST_UNIT];
static uint64_t unit_seed = (uint64_t)-1;
static pthread_mutex_t unit_lock = PTHREAD_MUTEX_INITIALIZER;

/* Stream bytes [0, n) of seed: the one copy the tests compare against. */
static unsigned char *stream_copy(uint64_t seed, size_t n)
{
    unsigned char unit[FASTSOCK_TEST_UNIT];
    pthread_mutex_lock(&unit_lock);
    if (unit_seed != seed) {
        fastsock_test_unit(seed, unit_cache);
        unit_seed = seed;
    }
    memcpy(unit, unit_cache, sizeof unit);
    pthread_mutex_unlock(&unit_lock);
    unsigned char *p = malloc(n ? n : 1);
    if (p == NULL)
        return NULL;
    fastsock_test_fill(unit, 0, p, n);
    return p;
}

/* ---- concurrency ------------------------------------------------------------------ */

#define CONNS 64
#define EACH ((size_t)8 << 20)

typedef struct conn {
    int fd;
    const unsigned char *data;
    fastsock_result sent, got;
    int bad;
} conn;

static void *conn_send(void *arg)
{
    conn *c = arg;
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    ctl.timeout_ms = 60000;
    c->sent = fastsock_sendall(c->fd, c->data, EACH, 0, FASTSOCK_ALL, &ctl);
    shutdown(c->fd, SHUT_WR);
    return NULL;
}

static void *conn_recv(void *arg)
{
    conn *c = arg;
    unsigned char *buf = malloc(EACH);
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    ctl.timeout_ms = 60000;
    c->got = buf ? fastsock_recvall(c->fd, buf, EACH, 0, EACH, &ctl) : -ENOMEM;
    c->bad = buf == NULL || memcmp(buf, c->data, EACH) != 0;
    free(buf);
    return NULL;
}

/* One round: every connection open at once, a sender and a receiver each. */
static int concurrency_round(const unsigned char *data, double *secs)
{
    conn c[CONNS];
    pthread_t ts[CONNS], tr[CONNS];
    double t0 = now_s();
    for (int i = 0; i < CONNS; i++) {
        c[i].fd = open_request("echo");
        c[i].data = data;
    }
    for (int i = 0; i < CONNS; i++) {
        pthread_create(&ts[i], NULL, conn_send, &c[i]);
        pthread_create(&tr[i], NULL, conn_recv, &c[i]);
    }
    int bad = 0;
    for (int i = 0; i < CONNS; i++) {
        pthread_join(ts[i], NULL);
        pthread_join(tr[i], NULL);
        close(c[i].fd);
        if (c[i].sent != (fastsock_result)EACH || c[i].got != (fastsock_result)EACH || c[i].bad) {
            fprintf(stderr, "connection %d: sent %zd, got %zd, data %s\n", i, c[i].sent,
                    c[i].got, c[i].bad ? "WRONG" : "ok");
            bad++;
        }
    }
    *secs = now_s() - t0;
    return bad;
}

static void test_concurrency(void)
{
    unsigned char *data = stream_copy(11, EACH);
    CHECK(data != NULL, "no memory for the data");
    int fd0 = count_fds();
    long rss0 = rss_kib();
    double secs;
    /* The first round brings the allocator, the thread stacks and the
     * socket buffers to their working size; the second must not grow them. */
    int bad = concurrency_round(data, &secs);
    malloc_trim(0);
    int fd1 = count_fds();
    long rss1 = rss_kib();
    bad += concurrency_round(data, &secs);
    malloc_trim(0);
    int fd2 = count_fds();
    long rss2 = rss_kib();
    free(data);
    printf("concurrency: %d connections x 2 rounds, %zu MiB each way per connection, "
           "%llu MiB verified; round 2 took %.2f s; fds %d -> %d -> %d; "
           "RSS %ld -> %ld -> %ld KiB (round 2 delta %+ld KiB)\n",
           CONNS, EACH >> 20, (unsigned long long)(2ull * CONNS * EACH >> 20), secs, fd0, fd1,
           fd2, rss0, rss1, rss2, rss2 - rss1);
    CHECK(bad == 0, "%d transfers wrong", bad);
    CHECK(fd1 == fd0 && fd2 == fd0, "descriptors %d -> %d -> %d", fd0, fd1, fd2);
    /* A leak of one buffer per connection would be 512 MiB. */
    CHECK(rss2 - rss1 < 32 * 1024, "RSS grew by %ld KiB in the second round", rss2 - rss1);
}

/* ---- signal storms --------------------------------------------------------------------- */

#define BIG ((size_t)256 << 20)

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

static int hook_calls;

static int count_and_resume(void *arg)
{
    (void)arg;
    hook_calls++;
    return 0;
}

static void storm(int on)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: calls fail with EINTR, as under Python */
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = { { 0, on ? 1000 : 0 }, { 0, on ? 1000 : 0 } };
    setitimer(ITIMER_REAL, &it, NULL);
}

static void test_signals(void)
{
    unsigned char *want = stream_copy(7, BIG);
    unsigned char *buf = malloc(BIG);
    CHECK(want && buf, "no memory");

    int fd = open_request("gen len=%zu seed=7", BIG);
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    ctl.on_interrupt = count_and_resume;
    alarms = 0;
    hook_calls = 0;
    double t0 = now_s();
    storm(1);
    fastsock_result rc = fastsock_recvall(fd, buf, BIG, 0, BIG, &ctl);
    storm(0);
    double secs = now_s() - t0;
    int recv_alarms = alarms, recv_hooks = hook_calls;
    close(fd);
    int same = rc == (fastsock_result)BIG && memcmp(buf, want, BIG) == 0;
    printf("signals: recvall 256 MiB in %.2f s under %d SIGALRMs, hook called %d times, %s\n",
           secs, recv_alarms, recv_hooks, same ? "data intact" : "DATA WRONG");
    CHECK(same, "recvall returned %zd (%s)", rc, fastsock_strerror(rc));
    /* The portable path receives with MSG_DONTWAIT and waits in poll, so
     * few signals land inside a system call there; the handler must run. */
    CHECK(recv_alarms > 10 && (recv_hooks > 0 || fastsock_portable_build()),
          "the storm did not reach the call");

    char path[] = "/tmp/fastsock-stress-XXXXXX";
    int file = mkstemp(path);
    CHECK(file >= 0, "mkstemp");
    unlink(path);
    CHECK(write(file, want, BIG) == (ssize_t)BIG, "writing the file");
    fd = open_request("sink seed=7 off=0");
    alarms = 0;
    hook_calls = 0;
    t0 = now_s();
    storm(1);
    rc = fastsock_sendfile(fd, file, 0, FASTSOCK_ALL, &ctl);
    storm(0);
    secs = now_s() - t0;
    unsigned long long got = 0, match = 0;
    int answered = sink_answer(fd, &got, &match);
    close(fd);
    close(file);
    printf("signals: sendfile 256 MiB in %.2f s under %d SIGALRMs, hook called %d times, "
           "sink got %llu, matching %llu\n", secs, (int)alarms, hook_calls, got, match);
    CHECK(rc == (fastsock_result)BIG && answered == 0 && got == BIG && match == BIG,
          "sendfile returned %zd (%s), the sink got %llu (%llu matching)", rc,
          fastsock_strerror(rc), got, match);
    CHECK(alarms > 10, "the storm did not reach the call");
    free(want);
    free(buf);
}

/* ---- close during a transfer ------------------------------------------------------------ */

/*
 * What can be promised: the core calls only socket operations on the
 * descriptor (recv, send, sendfile, setsockopt, fcntl to put O_NONBLOCK
 * back). After another thread closed it, and the number went to a new file,
 * those must not read, write or change that file.
 */
typedef struct victim {
    int fd;
    int kind; /* 0 recvall, 1 sendall, 2 sendfile */
    int file;
    fastsock_result rc;
    size_t moved;
} victim;

static void *run_victim(void *arg)
{
    victim *v = arg;
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    ctl.timeout_ms = 1500;
    size_t n = (size_t)64 << 20;
    unsigned char *buf = calloc(1, n);
    if (v->kind == 0)
        v->rc = fastsock_recvall(v->fd, buf, n, 0, n, &ctl);
    else if (v->kind == 1)
        v->rc = fastsock_sendall(v->fd, buf, n, 0, n, &ctl);
    else
        v->rc = fastsock_sendfile(v->fd, v->file, 0, n, &ctl);
    v->moved = ctl.moved;
    free(buf);
    return NULL;
}

/* The far end: trickles for a receive, drains slowly for a send; counts
 * what crossed. */
typedef struct far_end {
    int fd;
    int sending;
    size_t bytes;
} far_end;

static void *run_far_end(void *arg)
{
    far_end *f = arg;
    char buf[4096];
    memset(buf, 'x', sizeof buf);
    for (;;) {
        ssize_t r = f->sending ? send(f->fd, buf, 1024, MSG_NOSIGNAL) : recv(f->fd, buf, sizeof buf, 0);
        if (r <= 0)
            break;
        f->bytes += (size_t)r;
        usleep(1000);
    }
    if (!f->sending) /* what remains in the pipe was sent too */
        for (ssize_t r; (r = recv(f->fd, buf, sizeof buf, 0)) > 0;)
            f->bytes += (size_t)r;
    return NULL;
}

/* A connected loopback TCP pair: sv[0] the near end, sv[1] the far end. */
static void tcp_pair(int sv[2])
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = 0 };
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&addr, &len) < 0) {
        perror("listen");
        exit(2);
    }
    sv[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(sv[0], (struct sockaddr *)&addr, sizeof addr) < 0 ||
        (sv[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0) {
        perror("connect");
        exit(2);
    }
    close(l);
}

static void close_during(int kind)
{
    static const char *names[] = { "recvall", "sendall", "sendfile" };
    /* TCP, as users have: an AF_UNIX send restarts SO_SNDTIMEO for every
     * buffer it waits for, so its deadline would not end the transfer. */
    int sv[2];
    tcp_pair(sv);
    /* The runtimes leave sockets O_NONBLOCK: the core then changes the
     * flags for the transfer and must put them back on the socket only. */
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    int small = 16384;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    char path[] = "/tmp/fastsock-close-XXXXXX";
    int file = mkstemp(path);
    unlink(path);
    if (ftruncate(file, (off_t)64 << 20) != 0)
        fail("ftruncate");
    victim v = { sv[0], kind, file, 0, 0 };
    far_end f = { sv[1], kind == 0, 0 };
    pthread_t tv, tf;
    pthread_create(&tf, NULL, run_far_end, &f);
    pthread_create(&tv, NULL, run_victim, &v);
    usleep(100 * 1000);
    /* Close it under the transfer, then take the number with new files:
     * writable, O_APPEND, holding a known byte, positioned at 0. */
    int target = sv[0];
    close(sv[0]);
    enum { MAX_FILES = 256 };
    int files[MAX_FILES], nfiles = 0, took = 0;
    char fpath[64];
    snprintf(fpath, sizeof fpath, "/tmp/fastsock-close-victim-%d", (int)getpid());
    while (nfiles < MAX_FILES) {
        int nf = open(fpath, O_RDWR | O_CREAT | O_APPEND, 0600);
        if (nf < 0)
            break;
        if (nfiles == 0 && write(nf, "k", 1) != 1)
            fail("write");
        lseek(nf, 0, SEEK_SET);
        files[nfiles++] = nf;
        if (nf == target) {
            took = 1;
            break;
        }
    }
    /* Once the transfer has returned, the socket's last reference is gone:
     * the far end sees the end (or EPIPE) after draining what was sent. */
    pthread_join(tv, NULL);
    pthread_join(tf, NULL);
    struct stat st;
    fstat(files[0], &st);
    int touched = st.st_size != 1;
    for (int i = 0; i < nfiles; i++) {
        int fl = fcntl(files[i], F_GETFL);
        if (lseek(files[i], 0, SEEK_CUR) != 0 || !(fl & O_APPEND) || (fl & O_NONBLOCK))
            touched = 1;
        close(files[i]);
    }
    unlink(fpath);
    close(sv[1]);
    close(file);
    printf("close: %s ended with %zd (%s) after %zu bytes, the far end counted %zu; "
           "fd %d %s by a new file; new files %s\n",
           names[kind], v.rc, fastsock_strerror(v.rc), v.moved, f.bytes, target,
           took ? "taken" : "NOT taken", touched ? "TOUCHED" : "untouched");
    CHECK(took, "no new file took descriptor %d", target);
    CHECK(v.rc < 0, "the transfer did not end with an error");
    CHECK(!touched, "the new file was read, written or its flags changed");
    /* A send counts what the kernel took, which the far end drained to the
     * end; a receive can't have more than the far end sent. */
    CHECK(kind == 0 ? v.moved <= f.bytes : v.moved == f.bytes, "moved %zu, the far end counted %zu",
          v.moved, f.bytes);
}

static void test_close(void)
{
    for (int kind = 0; kind < 3; kind++)
        close_during(kind);
}

/* ---- out of descriptors -------------------------------------------------------------------- */

static void test_fds(void)
{
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    int pp[2];
    if (pipe(pp) != 0)
        fail("pipe");
    /* The pipe is ready before the descriptors run out. */
    if (write(pp[1], "pipe!", 5) != 5)
        fail("write");
    close(pp[1]);
    struct rlimit old, lim;
    getrlimit(RLIMIT_NOFILE, &old);
    lim = old;
    lim.rlim_cur = 256;
    setrlimit(RLIMIT_NOFILE, &lim);
    int hog[256], nhog = 0;
    while (nhog < 256 && (hog[nhog] = dup(sv[1])) >= 0)
        nhog++;
    int exhausted = dup(sv[1]) < 0 && errno == EMFILE;

    char buf[4096];
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    ctl.timeout_ms = 2000;
    fastsock_result s = fastsock_sendall(sv[0], "hello", 5, 0, 5, &ctl);
    fastsock_result r = fastsock_recvall(sv[1], buf, sizeof buf, 0, 5, &ctl);
    fastsock_result f = fastsock_sendfile(sv[0], pp[0], 0, FASTSOCK_ALL, &ctl);
    fastsock_result r2 = fastsock_recvall(sv[1], buf + 5, sizeof buf - 5, 0, 5, &ctl);
    for (int i = 0; i < nhog; i++)
        close(hog[i]);
    setrlimit(RLIMIT_NOFILE, &old);
    close(pp[0]);
    close(sv[0]);
    close(sv[1]);
    printf("fds: %d descriptors taken up to the limit; sendall %zd, recvall %zd, "
           "sendfile(pipe) %zd, recvall %zd\n", nhog, s, r, f, r2);
    CHECK(exhausted, "could not exhaust the descriptors");
    /* Each call either works or answers EMFILE, never anything worse. */
    fastsock_result rs[] = { s, r, f, r2 };
    for (int i = 0; i < 4; i++)
        CHECK(rs[i] == 5 || rs[i] == -EMFILE, "call %d returned %zd (%s)", i, rs[i],
              fastsock_strerror(rs[i]));
    if (s == 5 && r == 5 && f == 5 && r2 == 5)
        CHECK(memcmp(buf, "hellopipe!", 10) == 0, "data wrong");
}

/* ---- timeouts under load ------------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_timeouts(void)
{
    /* The other core: a process spinning for the whole test. */
    pid_t hog = fork();
    if (hog == 0) {
        alarm(30);
        for (volatile unsigned long i = 0;; i++)
            ;
    }
    enum { RUNS = 7 };
    double late[RUNS];
    const int timeout_ms = 200;
    int bad = 0;
    for (int i = 0; i < RUNS; i++) {
        int fd = open_request("gen len=1000000 stall=1000 stall_ms=5000 seed=1");
        unsigned char buf[4096];
        fastsock_ctl ctl = FASTSOCK_CTL_INIT;
        ctl.timeout_ms = timeout_ms;
        ctl.flags = i % 2 ? FASTSOCK_POLL_ONLY : 0; /* both the SO_RCVTIMEO and the poll path */
        double t0 = now_s();
        fastsock_result rc = fastsock_recvall(fd, buf, sizeof buf, 0, sizeof buf, &ctl);
        late[i] = (now_s() - t0) * 1000 - timeout_ms;
        if (rc != -ETIMEDOUT || ctl.moved != 1000)
            bad++;
        close(fd);
    }
    /* A reader that is slow but never stalls: the kernel restarts a socket's
     * send timeout whenever it makes progress, so only the core's own
     * deadline ends these. */
    double slow_late[2];
    for (int kind = 0; kind < 2; kind++) {
        int sv[2];
        tcp_pair(sv);
        int small = 16384;
        setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        far_end f = { sv[1], 0, 0 };
        pthread_t tf;
        pthread_create(&tf, NULL, run_far_end, &f);
        size_t n = (size_t)64 << 20;
        char path[] = "/tmp/fastsock-slow-XXXXXX";
        int file = mkstemp(path);
        unlink(path);
        unsigned char *data = calloc(1, n);
        if (ftruncate(file, (off_t)n) != 0 || data == NULL)
            fail("no file or memory");
        fastsock_ctl ctl = FASTSOCK_CTL_INIT;
        ctl.timeout_ms = timeout_ms;
        double t0 = now_s();
        fastsock_result rc = kind ? fastsock_sendfile(sv[0], file, 0, n, &ctl)
                                  : fastsock_sendall(sv[0], data, n, 0, n, &ctl);
        slow_late[kind] = (now_s() - t0) * 1000 - timeout_ms;
        close(sv[0]);
        pthread_join(tf, NULL);
        close(sv[1]);
        close(file);
        free(data);
        if (rc != -ETIMEDOUT || ctl.moved != f.bytes)
            bad++;
    }
    kill(hog, SIGKILL);
    waitpid(hog, NULL, 0);
    printf("timeouts: to a slow reader, sendall fired %+.1f ms and sendfile %+.1f ms after "
           "a %d ms deadline\n", slow_late[0], slow_late[1], timeout_ms);
    CHECK(slow_late[0] < 100 && slow_late[1] < 100, "a send to a slow reader outlasted its deadline");
    qsort(late, RUNS, sizeof late[0], cmp_double);
    printf("timeouts: %d recvalls with a %d ms deadline, other core busy: fired %+.1f ms "
           "(median), %+.1f .. %+.1f ms after it\n",
           RUNS, timeout_ms, late[RUNS / 2], late[0], late[RUNS - 1]);
    CHECK(bad == 0, "%d calls did not time out with the 1000 bytes that came", bad);
    CHECK(late[0] > -1.5 && late[RUNS - 1] < 100, "outside [-1, +100] ms of the deadline");
}

/* ---- main ------------------------------------------------------------------------------------------ */

static const struct {
    const char *name;
    void (*fn)(void);
} tests[] = {
    { "concurrency", test_concurrency },
    { "signals", test_signals },
    { "close", test_close },
    { "fds", test_fds },
    { "timeouts", test_timeouts },
};

int main(int argc, char **argv)
{
    const char *server = NULL;
    const char *only[8];
    int nonly = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--server") && i + 1 < argc)
            server = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc && nonly < 8)
            only[nonly++] = argv[++i];
        else {
            fprintf(stderr, "usage: %s --server PATH [--only NAME]...\n", argv[0]);
            return 2;
        }
    }
    if (server == NULL) {
        fprintf(stderr, "--server is required\n");
        return 2;
    }
    signal(SIGPIPE, SIG_DFL); /* the contract: never SIGPIPE */
    /* Large buffers always mapped and unmapped: with glibc's sliding
     * threshold they would stay in the heap, and RSS would measure the
     * allocator's caching instead of what the core leaves behind. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    start_server(server);
    for (size_t t = 0; t < sizeof tests / sizeof tests[0]; t++) {
        int run = nonly == 0;
        for (int i = 0; i < nonly; i++)
            run |= !strcmp(only[i], tests[t].name);
        if (!run)
            continue;
        current = tests[t].name;
        int before = failures;
        tests[t].fn();
        if (failures == before)
            printf("ok %s\n", tests[t].name);
        fflush(stdout);
    }
    int q = open_request("quit");
    close(q);
    waitpid(server_pid, NULL, 0);
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
