/*
 * The C side of the benchmark: the kernel's limit as a plain C program gets
 * it, and the core's own operations, against the loopback server.
 *
 * Rounds are interleaved (A B C A B C ...) so that the machine's drift hits
 * every variant alike; each row reports the median, min and max MB/s, and
 * the peak RSS the variant added, as a multiple of the payload.
 *
 * Output: one CSV row per variant and size:
 *   lang,variant,side,bytes,median_mbps,min_mbps,max_mbps,rss_x
 *
 * With --worker it instead serves bench/run.py's line protocol on stdin
 * (`list`, `run VARIANT BYTES`, `quit`; see bench/README.md), so that the
 * driver can interleave C's rounds with every other language's.
 *
 * A transfer is timed from the moment its request is on the wire until the
 * last byte is in (for sends: until the sink has answered that it read them
 * all); connecting, and freeing a fresh result, are outside the clock, as
 * they are in the other languages' workers.
 */
#include "fastsock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int port;
static unsigned char *hot;       /* preallocated and touched: the best case */
static unsigned char *send_data; /* what the send variants send */
static int data_file = -1;       /* the same bytes, for sendfile */
static double t_start;           /* set once a request is on the wire */
static void *to_free;            /* a fresh result, freed after the clock stops */
static int last_align = -1;      /* page offset of the last receive's destination */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dial(const char *request)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        send(fd, request, strlen(request), 0) != (ssize_t)strlen(request)) {
        perror("bench: connect");
        exit(2);
    }
    t_start = now_s();
    return fd;
}

static void die_if(int bad, const char *what)
{
    if (bad) {
        fprintf(stderr, "bench: %s failed: %s\n", what, strerror(errno));
        exit(2);
    }
}

/* Waits for the sink's answer, which comes once it has read everything. */
static void finish_send(int fd, size_t n)
{
    shutdown(fd, SHUT_WR);
    char answer[128] = { 0 };
    size_t got = 0;
    ssize_t r;
    while ((r = recv(fd, answer + got, sizeof answer - 1 - got, 0)) > 0)
        got += (size_t)r;
    unsigned long long count = 0;
    die_if(sscanf(answer, "got=%llu", &count) != 1 || count != n, "sink count");
}

/* Peak RSS since the last reset, in bytes (Linux: clear_refs 5 resets it). */
static void reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static long rss_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    size_t flen = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, flen))
            kib = atol(line + flen + 1);
    if (f)
        fclose(f);
    return kib;
}

static char request[128];

/* The clock starts once data is there: the server's own set-up for a
 * request is not the receiving side's cost. */
static int open_gen(size_t n)
{
    snprintf(request, sizeof request, "gen len=%zu seed=1\n", n);
    int fd = dial(request);
    struct pollfd p = { fd, POLLIN, 0 };
    while (poll(&p, 1, -1) < 0 && errno == EINTR)
        ;
    t_start = now_s();
    return fd;
}

static void recv_waitall_into(unsigned char *buf, size_t n)
{
    last_align = (int)((uintptr_t)buf % 4096);
    int fd = open_gen(n);
    for (size_t done = 0; done < n;) {
        ssize_t r = recv(fd, buf + done, n - done, MSG_WAITALL);
        die_if(r <= 0, "recv");
        done += (size_t)r;
    }
    close(fd);
}

static void c_recv_waitall_hot(size_t n) { recv_waitall_into(hot, n); }

/* Fresh results are allocated before the request goes out, as a binding
 * allocates its result before the first receive. */
static unsigned char *fresh(size_t n)
{
    unsigned char *buf = malloc(n ? n : 1);
    die_if(buf == NULL, "malloc");
    to_free = buf;
    return buf;
}

static void c_recv_waitall_fresh(size_t n) { recv_waitall_into(fresh(n), n); }

/* The alignment control: the same hot buffer, its start moved within the
 * page to where glibc puts large blocks (16) and where a Python bytes
 * object's data lands (48); see bench/README.md. */
static void c_recv_waitall_hot16(size_t n) { recv_waitall_into(hot + 16, n); }
static void c_recv_waitall_hot48(size_t n) { recv_waitall_into(hot + 48, n); }

/* What each way through the page-fault wall buys: huge pages alone,
 * pre-faulting alone (its cost inside the clock, as a binding pays it), and
 * both, which is what fastsock_advise_fresh does. */
static void advise_huge(unsigned char *buf, size_t n)
{
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t start = ((uintptr_t)buf + huge - 1) & ~(huge - 1);
    uintptr_t end = ((uintptr_t)buf + n) & ~(huge - 1);
    if (end > start)
        madvise((void *)start, end - start, MADV_HUGEPAGE);
}

static void c_recv_waitall_fresh_thp(size_t n)
{
    unsigned char *buf = fresh(n);
    advise_huge(buf, n);
    recv_waitall_into(buf, n);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Faults every page in before the data comes; inside the clock, which
 * starts when the request is on the wire. */
static void recv_prefaulted(unsigned char *buf, size_t n)
{
    uintptr_t start = ((uintptr_t)buf + 4095) & ~(uintptr_t)4095;
    uintptr_t end = ((uintptr_t)buf + n) & ~(uintptr_t)4095;
    last_align = (int)((uintptr_t)buf % 4096);
    int fd = open_gen(n);
    if (end > start && madvise((void *)start, end - start, MADV_POPULATE_WRITE) < 0)
        memset(buf, 0, n); /* kernels before 5.14 */
    for (size_t done = 0; done < n;) {
        ssize_t r = recv(fd, buf + done, n - done, MSG_WAITALL);
        die_if(r <= 0, "recv");
        done += (size_t)r;
    }
    close(fd);
}

static void c_recv_waitall_fresh_prefault(size_t n) { recv_prefaulted(fresh(n), n); }

static void c_recv_waitall_fresh_thp_prefault(size_t n)
{
    unsigned char *buf = fresh(n);
    advise_huge(buf, n);
    recv_prefaulted(buf, n);
}

static void c_recv_64k_hot(size_t n)
{
    last_align = 0;
    int fd = open_gen(n);
    for (size_t done = 0; done < n;) {
        size_t want = n - done < 65536 ? n - done : 65536;
        ssize_t r = recv(fd, hot + done, want, 0);
        die_if(r <= 0, "recv");
        done += (size_t)r;
    }
    close(fd);
}

static void core_recvall_flags(unsigned char *buf, size_t n, int nonblock, unsigned flags)
{
    last_align = (int)((uintptr_t)buf % 4096);
    int fd = open_gen(n);
    if (nonblock)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    ctl.flags = flags;
    die_if(fastsock_recvall(fd, buf, n, 0, n, &ctl) != (fastsock_result)n, "fastsock_recvall");
    close(fd);
}

static void core_recvall_into(unsigned char *buf, size_t n) { core_recvall_flags(buf, n, 0, 0); }

static void fastsock_recvall_hot(size_t n) { core_recvall_into(hot, n); }

static void fastsock_recvall_fresh(size_t n) { core_recvall_into(fresh(n), n); }

/* The system-call target: an O_NONBLOCK socket, made blocking for the
 * transfer (the default) or polled (FASTSOCK_POLL_ONLY). */
static void fastsock_recvall_nonblock(size_t n) { core_recvall_flags(hot, n, 1, 0); }
static void fastsock_recvall_poll_only(size_t n)
{
    core_recvall_flags(hot, n, 1, FASTSOCK_POLL_ONLY);
}

/* 64-byte messages: the per-call cost of the core against a bare recv. */
static void c_recv_64(size_t n)
{
    int fd = open_gen(n);
    unsigned char small[64];
    for (size_t done = 0; done < n;) {
        ssize_t r = recv(fd, small, sizeof small, 0);
        die_if(r <= 0, "recv");
        done += (size_t)r;
    }
    close(fd);
}

static void fastsock_recv_64(size_t n)
{
    int fd = open_gen(n);
    unsigned char small[64];
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    for (size_t done = 0; done < n;) {
        fastsock_result r = fastsock_recv(fd, small, sizeof small, 0, sizeof small, 0, &ctl);
        die_if(r <= 0, "fastsock_recv");
        done += (size_t)r;
    }
    close(fd);
}

/* What the driver's "sink OPTIONS" command set: more of the sink's request
 * (step=16384, a reader that takes 16 KiB a call). */
static char sink_extra[128];

static int open_sink(void)
{
    char req[192];
    snprintf(req, sizeof req, "sink seed=1 off=0%s%s\n", sink_extra[0] ? " " : "", sink_extra);
    return dial(req);
}

static void c_send(size_t n)
{
    int fd = open_sink();
    for (size_t done = 0; done < n;) {
        ssize_t r = send(fd, send_data + done, n - done, MSG_NOSIGNAL);
        die_if(r <= 0, "send");
        done += (size_t)r;
    }
    finish_send(fd, n);
    close(fd);
}

static void fastsock_sendall_(size_t n)
{
    int fd = open_sink();
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    die_if(fastsock_sendall(fd, send_data, n, 0, n, &ctl) != (fastsock_result)n, "fastsock_sendall");
    finish_send(fd, n);
    close(fd);
}

static void c_sendfile(size_t n)
{
    int fd = open_sink();
    off_t off = 0;
    while ((size_t)off < n) {
        ssize_t r = sendfile(fd, data_file, &off, n - (size_t)off);
        die_if(r <= 0, "sendfile");
    }
    finish_send(fd, n);
    close(fd);
}

static void fastsock_sendfile_(size_t n)
{
    int fd = open_sink();
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    die_if(fastsock_sendfile(fd, data_file, 0, n, &ctl) != (fastsock_result)n, "fastsock_sendfile");
    finish_send(fd, n);
    close(fd);
}

/* As the bindings do it; the advice's cost is inside the clock. */
static void fastsock_recvall_fresh_advised(size_t n)
{
    unsigned char *buf = fresh(n);
    last_align = (int)((uintptr_t)buf % 4096);
    int fd = open_gen(n);
    fastsock_advise_fresh(buf, n);
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    die_if(fastsock_recvall(fd, buf, n, 0, n, &ctl) != (fastsock_result)n, "fastsock_recvall");
    close(fd);
}

typedef struct variant {
    const char *name, *side;
    void (*run)(size_t n);
} variant;

static const variant variants[] = {
    { "recv_waitall_hot", "recv", c_recv_waitall_hot },
    { "recv_waitall_fresh", "recv", c_recv_waitall_fresh },
    { "recv_waitall_hot_pg16", "recv", c_recv_waitall_hot16 },
    { "recv_waitall_hot_pg48", "recv", c_recv_waitall_hot48 },
    { "recv_waitall_fresh_thp", "recv", c_recv_waitall_fresh_thp },
    { "recv_waitall_fresh_prefault", "recv", c_recv_waitall_fresh_prefault },
    { "recv_waitall_fresh_thp_prefault", "recv", c_recv_waitall_fresh_thp_prefault },
    { "recv_64k_loop_hot", "recv", c_recv_64k_hot },
    { "fastsock_recvall_hot", "recv", fastsock_recvall_hot },
    { "fastsock_recvall_fresh", "recv", fastsock_recvall_fresh },
    { "fastsock_recvall_fresh_advised", "recv", fastsock_recvall_fresh_advised },
    { "fastsock_recvall_nonblock", "recv", fastsock_recvall_nonblock },
    { "fastsock_recvall_poll_only", "recv", fastsock_recvall_poll_only },
    { "send", "send", c_send },
    { "fastsock_sendall", "send", fastsock_sendall_ },
    { "sendfile", "send", c_sendfile },
    { "fastsock_sendfile", "send", fastsock_sendfile_ },
    { "recv_64", "msg", c_recv_64 },
    { "fastsock_recv_64", "msg", fastsock_recv_64 },
};
#define NVARIANTS (sizeof variants / sizeof variants[0])

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int start_server(const char *path)
{
    int out[2];
    die_if(pipe(out) < 0, "pipe");
    pid_t pid = fork();
    die_if(pid < 0, "fork");
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        execl(path, path, "--idle-exit", "30", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    FILE *f = fdopen(out[0], "r");
    int p = 0;
    die_if(f == NULL || fscanf(f, "PORT %d", &p) != 1, "server start");
    fclose(f);
    return p;
}

/* One timed transfer: seconds, and the peak RSS it added in bytes. */
static double time_one(const variant *v, size_t n, long *added_bytes)
{
    reset_peak_rss();
    long before = rss_kib("VmRSS:");
    last_align = -1;
    v->run(n);
    double dt = now_s() - t_start;
    *added_bytes = (rss_kib("VmHWM:") - before) * 1024;
    free(to_free);
    to_free = NULL;
    return dt;
}

static void prepare(size_t max)
{
    /* Page-aligned, so that no variant pays for a misaligned copy the others
     * don't; 64 bytes over, for the alignment control's offsets. */
    size_t cap = (max + 64 + 4095) / 4096 * 4096;
    hot = aligned_alloc(4096, cap);
    send_data = aligned_alloc(4096, cap);
    die_if(hot == NULL || send_data == NULL, "allocation");
    memset(hot, 1, cap);
    for (size_t i = 0; i < max; i++)
        send_data[i] = (unsigned char)(i * 131 + 7);
    char path[] = "/tmp/fastsock-bench-XXXXXX";
    data_file = mkstemp(path);
    die_if(data_file < 0, "data file");
    unlink(path);
    for (size_t done = 0; done < max;) {
        ssize_t w = write(data_file, send_data + done, max - done);
        die_if(w <= 0, "data file");
        done += (size_t)w;
    }
}

/* bench/run.py's line protocol. */
static int worker(size_t max)
{
    prepare(max);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        char cmd[32] = "", name[128] = "";
        unsigned long long n = 0;
        if (sscanf(line, "%31s %127s %llu", cmd, name, &n) < 1)
            continue;
        if (!strcmp(cmd, "quit"))
            break;
        if (!strcmp(cmd, "pid")) {
            printf("%ld\n", (long)getpid());
        } else if (!strcmp(cmd, "sink")) {
            const char *rest = line + strlen("sink");
            rest += strspn(rest, " ");
            snprintf(sink_extra, sizeof sink_extra, "%.*s", (int)strcspn(rest, "\n"), rest);
            printf("ok\n");
        } else if (!strcmp(cmd, "list")) {
            for (size_t v = 0; v < NVARIANTS; v++)
                printf("%s%s:%s", v ? " " : "", variants[v].name, variants[v].side);
            printf("\n");
        } else if (!strcmp(cmd, "run")) {
            const variant *v = NULL;
            for (size_t i = 0; i < NVARIANTS; i++)
                if (!strcmp(variants[i].name, name))
                    v = &variants[i];
            if (v == NULL || n > max) {
                printf("err no variant %s or size %llu beyond --max\n", name, n);
                continue;
            }
            long added;
            double dt = time_one(v, (size_t)n, &added);
            printf("ok %.9f %ld %d\n", dt, added, last_align);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *server = NULL, *only = NULL;
    size_t sizes[16], max = 0;
    int nsizes = 0, rounds = 5, as_worker = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--server") && i + 1 < argc)
            server = argv[++i];
        else if (!strcmp(argv[i], "--worker"))
            as_worker = 1;
        else if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--max") && i + 1 < argc)
            max = (size_t)strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--size") && i + 1 < argc && nsizes < 16)
            sizes[nsizes++] = (size_t)strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr,
                    "usage: %s --server PATH [--size BYTES]... [--rounds N] [--only SUBSTRING]\n"
                    "       %s --worker --port PORT --max BYTES\n",
                    argv[0], argv[0]);
            return 2;
        }
    }
    if (as_worker) {
        if (port <= 0 || max == 0) {
            fprintf(stderr, "bench: --worker needs --port and --max\n");
            return 2;
        }
        return worker(max);
    }
    if (server == NULL || rounds < 1) {
        fprintf(stderr, "bench: need --server PATH\n");
        return 2;
    }
    if (nsizes == 0)
        sizes[nsizes++] = (size_t)256 << 20;
    for (int s = 0; s < nsizes; s++)
        max = sizes[s] > max ? sizes[s] : max;
    port = start_server(server);
    prepare(max);

    printf("lang,variant,side,bytes,median_mbps,min_mbps,max_mbps,rss_x\n");
    for (int s = 0; s < nsizes; s++) {
        size_t n = sizes[s];
        double mbps[NVARIANTS][64];
        long rss_added[NVARIANTS] = { 0 };
        int r_max = rounds > 64 ? 64 : rounds;
        for (size_t v = 0; v < NVARIANTS; v++)
            if (!only || strstr(variants[v].name, only))
                (void)time_one(&variants[v], n, &rss_added[v]); /* warm-up */
        memset(rss_added, 0, sizeof rss_added);
        for (int r = 0; r < r_max; r++) {
            for (size_t v = 0; v < NVARIANTS; v++) {
                if (only && !strstr(variants[v].name, only))
                    continue;
                long added;
                double dt = time_one(&variants[v], n, &added);
                if (added > rss_added[v])
                    rss_added[v] = added;
                mbps[v][r] = (double)n / 1e6 / dt;
            }
        }
        for (size_t v = 0; v < NVARIANTS; v++) {
            if (only && !strstr(variants[v].name, only))
                continue;
            qsort(mbps[v], (size_t)r_max, sizeof(double), cmp_double);
            printf("c,%s,%s,%zu,%.0f,%.0f,%.0f,%.2f\n", variants[v].name, variants[v].side, n,
                   mbps[v][r_max / 2], mbps[v][0], mbps[v][r_max - 1],
                   (double)rss_added[v] / (double)n);
            fflush(stdout);
        }
    }
    int q = dial("quit\n");
    close(q);
    wait(NULL);
    return 0;
}
