/*
 * The C reference of the event-loop benchmark's concurrent routes: one
 * thread, one epoll loop, receiving 16 MiB on each of N connections at once
 * into buffers touched beforehand (no page faults), against the same on
 * one connection. What the kernel and this machine give when nothing but
 * recv runs: the bar that the languages' 64-connection aggregates meet.
 *
 *   fastsock-bench-concurrent --port P [--conns 64] [--size 16777216] [--rounds 3]
 *
 * One JSON object per measurement, in bench/eventloop.py's fields.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int gen(int port, size_t n)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("connect");
        exit(2);
    }
    char req[64];
    int len = snprintf(req, sizeof req, "gen len=%zu seed=7\n", n);
    if (send(fd, req, (size_t)len, 0) != len)
        exit(2);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* All conns' bytes through one epoll loop, 1 MiB a recv at most (the
 * languages' step budget); returns MB/s over all of them. */
static double receive_all(int port, int conns, size_t size, char **bufs)
{
    int ep = epoll_create1(0), *fds = calloc((size_t)conns, sizeof *fds);
    size_t *done = calloc((size_t)conns, sizeof *done);
    for (int i = 0; i < conns; i++) {
        fds[i] = gen(port, size);
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    usleep(2000); /* the server's set-up is not the receiver's cost */
    int left = conns;
    double t0 = now();
    struct epoll_event evs[64];
    while (left > 0) {
        int n = epoll_wait(ep, evs, 64, 10000);
        if (n <= 0) {
            fprintf(stderr, "epoll_wait: %s\n", n ? strerror(errno) : "timed out");
            exit(1);
        }
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32;
            for (size_t moved = 0; done[i] < size && moved < (1u << 20);) {
                size_t want = size - done[i] < (1u << 20) - moved ? size - done[i] : (1u << 20) - moved;
                ssize_t got = recv(fds[i], bufs[i] + done[i], want, 0);
                if (got <= 0) {
                    if (got < 0 && errno == EAGAIN)
                        break;
                    fprintf(stderr, "recv: %s\n", got ? strerror(errno) : "end of stream");
                    exit(1);
                }
                done[i] += (size_t)got;
                moved += (size_t)got;
            }
            if (done[i] == size) {
                epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
                close(fds[i]);
                done[i]++; /* counted once */
                left--;
            }
        }
    }
    double dt = now() - t0;
    close(ep);
    free(fds);
    free(done);
    return (double)size * conns / dt / 1e6;
}

int main(int argc, char **argv)
{
    int port = 0, conns = 64, rounds = 3;
    size_t size = 16u << 20;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--conns")) conns = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--size")) size = (size_t)strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
    }
    if (!port || conns < 1) {
        fprintf(stderr, "usage: %s --port P [--conns N] [--size BYTES] [--rounds R]\n", argv[0]);
        return 2;
    }
    char **bufs = malloc((size_t)conns * sizeof *bufs);
    for (int i = 0; i < conns; i++) {
        bufs[i] = malloc(size + 1);
        memset(bufs[i], 0, size + 1);
    }
    for (int round = 0; round < rounds; round++) {
        for (int k = 0; k < 2; k++) {
            int n = (k + round) % 2 ? conns : 1;
            double mbps = receive_all(port, n, size, bufs);
            printf("{\"lang\": \"c\", \"loop\": \"epoll\", \"route\": \"recv_%dconn\", \"size\": %zu, "
                   "\"round\": %d, \"mbps\": %.1f, \"stall_ms\": 0, \"conns\": %d}\n",
                   n, size, round, mbps, n);
            fflush(stdout);
        }
    }
    for (int i = 0; i < conns; i++)
        free(bufs[i]);
    free(bufs);
    return 0;
}
