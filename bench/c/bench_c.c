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
 */
#include "fastsock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int port;
static unsigned char *hot;       /* preallocated and touched: the best case */
static unsigned char *send_data; /* what the send variants send */
static int data_file = -1;       /* the same bytes, for sendfile */

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

static int open_gen(size_t n)
{
    snprintf(request, sizeof request, "gen len=%zu seed=1\n", n);
    return dial(request);
}

static void recv_waitall_into(unsigned char *buf, size_t n)
{
    int fd = open_gen(n);
    for (size_t done = 0; done < n;) {
        ssize_t r = recv(fd, buf + done, n - done, MSG_WAITALL);
        die_if(r <= 0, "recv");
        done += (size_t)r;
    }
    close(fd);
}

static void c_recv_waitall_hot(size_t n) { recv_waitall_into(hot, n); }

static void c_recv_waitall_fresh(size_t n)
{
    unsigned char *buf = malloc(n);
    die_if(buf == NULL, "malloc");
    recv_waitall_into(buf, n);
    free(buf);
}

static void c_recv_64k_hot(size_t n)
{
    int fd = open_gen(n);
    for (size_t done = 0; done < n;) {
        size_t want = n - done < 65536 ? n - done : 65536;
        ssize_t r = recv(fd, hot + done, want, 0);
        die_if(r <= 0, "recv");
        done += (size_t)r;
    }
    close(fd);
}

static void core_recvall_into(unsigned char *buf, size_t n)
{
    int fd = open_gen(n);
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    die_if(fastsock_recvall(fd, buf, n, 0, n, &ctl) != (fastsock_result)n, "fastsock_recvall");
    close(fd);
}

static void fastsock_recvall_hot(size_t n) { core_recvall_into(hot, n); }

static void fastsock_recvall_fresh(size_t n)
{
    unsigned char *buf = malloc(n);
    die_if(buf == NULL, "malloc");
    core_recvall_into(buf, n);
    free(buf);
}

static int open_sink(void) { return dial("sink seed=1 off=0\n"); }

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

static void fastsock_recvall_fresh_thp(size_t n)
{
    unsigned char *buf = malloc(n);
    die_if(buf == NULL, "malloc");
    fastsock_advise_fresh(buf, n);
    core_recvall_into(buf, n);
    free(buf);
}

typedef struct variant {
    const char *name, *side;
    void (*run)(size_t n);
} variant;

static const variant variants[] = {
    { "recv_waitall_hot", "recv", c_recv_waitall_hot },
    { "recv_waitall_fresh", "recv", c_recv_waitall_fresh },
    { "recv_64k_loop_hot", "recv", c_recv_64k_hot },
    { "fastsock_recvall_hot", "recv", fastsock_recvall_hot },
    { "fastsock_recvall_fresh", "recv", fastsock_recvall_fresh },
    { "fastsock_recvall_fresh_thp", "recv", fastsock_recvall_fresh_thp },
    { "send", "send", c_send },
    { "fastsock_sendall", "send", fastsock_sendall_ },
    { "sendfile", "send", c_sendfile },
    { "fastsock_sendfile", "send", fastsock_sendfile_ },
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

int main(int argc, char **argv)
{
    const char *server = NULL, *only = NULL;
    size_t sizes[16];
    int nsizes = 0, rounds = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--server") && i + 1 < argc)
            server = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--size") && i + 1 < argc && nsizes < 16)
            sizes[nsizes++] = (size_t)strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s --server PATH [--size BYTES]... [--rounds N] [--only SUBSTRING]\n", argv[0]);
            return 2;
        }
    }
    if (server == NULL || rounds < 1) {
        fprintf(stderr, "bench: need --server PATH\n");
        return 2;
    }
    if (nsizes == 0)
        sizes[nsizes++] = (size_t)256 << 20;
    size_t max = 0;
    for (int s = 0; s < nsizes; s++)
        max = sizes[s] > max ? sizes[s] : max;
    port = start_server(server);
    /* Page-aligned, so that no variant pays for a misaligned copy the others don't. */
    hot = aligned_alloc(4096, (max + 4095) / 4096 * 4096);
    send_data = aligned_alloc(4096, (max + 4095) / 4096 * 4096);
    die_if(hot == NULL || send_data == NULL, "allocation");
    memset(hot, 1, max);
    for (size_t i = 0; i < max; i++)
        send_data[i] = (unsigned char)(i * 131 + 7);
    char path[] = "/tmp/fastsock-bench-XXXXXX";
    data_file = mkstemp(path);
    unlink(path);
    die_if(data_file < 0 || write(data_file, send_data, max) != (ssize_t)max, "data file");

    printf("lang,variant,side,bytes,median_mbps,min_mbps,max_mbps,rss_x\n");
    for (int s = 0; s < nsizes; s++) {
        size_t n = sizes[s];
        double mbps[NVARIANTS][64];
        long rss_added[NVARIANTS] = { 0 };
        int r_max = rounds > 64 ? 64 : rounds;
        for (size_t v = 0; v < NVARIANTS; v++)
            if (!only || strstr(variants[v].name, only))
                variants[v].run(n); /* warm-up, not timed */
        for (int r = 0; r < r_max; r++) {
            for (size_t v = 0; v < NVARIANTS; v++) {
                if (only && !strstr(variants[v].name, only))
                    continue;
                reset_peak_rss();
                long before = rss_kib("VmRSS:");
                double t0 = now_s();
                variants[v].run(n);
                double dt = now_s() - t0;
                long added = rss_kib("VmHWM:") - before;
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
                   (double)rss_added[v] * 1024.0 / (double)n);
            fflush(stdout);
        }
    }
    int q = dial("quit\n");
    close(q);
    wait(NULL);
    return 0;
}
