/*
 * The C limits of the protocol benchmark (bench/protocol.py): socket to
 * file with a plain splice(2) loop (what fastsock_recvfile must come close
 * to) and with recv + write, beside fastsock_recvfile itself, in the same
 * process and rounds.
 *
 *   fastsock-bench-protocol --port P --size N --rounds R --dir DIR
 *
 * One JSON object per measurement on stdout, as the languages' protocol
 * scripts print them (bench "recvfile_shm" or "recvfile_disk" by --dir).
 */
#include "fastsock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double status_mb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double mb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, strlen(field)))
            mb = strtod(line + strlen(field), NULL) / 1024;
    if (f)
        fclose(f);
    return mb;
}

static double reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
    return status_mb("VmRSS:");
}

static int gen(int port, size_t n, unsigned seed)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("connect");
        exit(2);
    }
    char req[96];
    int len = snprintf(req, sizeof req, "gen len=%zu seed=%u\n", n, seed);
    if (send(fd, req, (size_t)len, 0) != len)
        exit(2);
    return fd;
}

/* The plain splice loop a C programmer writes: socket -> pipe -> file. */
static ssize_t splice_loop(int sock, int file, size_t n)
{
    int p[2];
    if (pipe(p) < 0)
        return -1;
    fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    size_t done = 0;
    loff_t off = 0;
    while (done < n) {
        ssize_t in = splice(sock, NULL, p[1], NULL, n - done, SPLICE_F_MOVE | SPLICE_F_MORE);
        if (in <= 0)
            break;
        for (ssize_t left = in; left > 0;) {
            ssize_t out = splice(p[0], NULL, file, &off, (size_t)left, SPLICE_F_MOVE);
            if (out <= 0)
                goto out;
            left -= out;
        }
        done += (size_t)in;
    }
out:
    close(p[0]);
    close(p[1]);
    return (ssize_t)done;
}

static ssize_t recv_write_loop(int sock, int file, size_t n)
{
    static char buf[1 << 20];
    size_t done = 0;
    while (done < n) {
        size_t want = n - done < sizeof buf ? n - done : sizeof buf;
        ssize_t got = recv(sock, buf, want, 0);
        if (got <= 0)
            break;
        if (write(file, buf, (size_t)got) != got)
            break;
        done += (size_t)got;
    }
    return (ssize_t)done;
}

int main(int argc, char **argv)
{
    int port = 0, rounds = 3;
    size_t size = 256u << 20;
    const char *dir = "/dev/shm";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--size")) size = (size_t)strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--dir")) dir = argv[i + 1];
    }
    if (!port) {
        fprintf(stderr, "usage: %s --port P [--size N] [--rounds R] [--dir DIR]\n", argv[0]);
        return 2;
    }
    const char *bench = strcmp(dir, "/dev/shm") ? "recvfile_disk" : "recvfile_shm";
    const char *routes[] = { "c_splice_loop", "c_recv_write", "c_fastsock_recvfile" };
    for (int round = 0; round < rounds; round++) {
        for (int k = 0; k < 3; k++) {
            int r = (k + round) % 3;
            char path[512];
            snprintf(path, sizeof path, "%s/fastsock-bench-XXXXXX", dir);
            int file = mkstemp(path);
            if (file < 0) {
                perror(path);
                return 2;
            }
            int sock = gen(port, size, 7);
            double base = reset_peak(), t0 = now();
            ssize_t got;
            if (r == 0) {
                got = splice_loop(sock, file, size);
            } else if (r == 1) {
                got = recv_write_loop(sock, file, size);
            } else {
                fastsock_ctl ctl = FASTSOCK_CTL_INIT;
                got = fastsock_recvfile(sock, file, 0, size, &ctl);
            }
            double dt = now() - t0;
            if (got != (ssize_t)size) {
                fprintf(stderr, "%s: %zd of %zu bytes\n", routes[r], got, size);
                return 1;
            }
            printf("{\"lang\": \"c\", \"bench\": \"%s\", \"route\": \"%s\", \"size\": %zu, \"round\": %d, "
                   "\"rate\": %.1f, \"unit\": \"MB/s\", \"rss_peak_mb\": %.1f, \"rss_base_mb\": %.1f}\n",
                   bench, routes[r], size, round, (double)size / dt / 1e6, status_mb("VmHWM:"), base);
            fflush(stdout);
            close(sock);
            close(file);
            unlink(path);
        }
    }
    return 0;
}
