/*
 * fastsock: bulk socket I/O with few copies and few system calls.
 *
 * Every function returns a byte count (>= 0) or a negative errno
 * (-ETIMEDOUT, -ECONNRESET, ...), or one of the FASTSOCK_E* codes below.
 * Whatever it returns, ctl->moved holds the exact number of bytes that
 * moved, so a caller can always report partial progress.
 *
 * Buffers are given as (base, len, offset, count): the core checks the
 * range once, overflow-safe, before any byte moves, so no binding has to
 * get the arithmetic right on its own.
 *
 * Sockets may be blocking or O_NONBLOCK (language runtimes set it behind the
 * user's back); the timeout in ctl bounds the whole operation either way.
 *
 * A socket that another thread closes during a bulk call (recvall, sendall,
 * sendfile): the call works on a duplicate descriptor of its own, so it never
 * reads, writes or changes a file that takes the number meanwhile, and it
 * ends with -EBADF (ctl->moved exact) before its next system call. A system
 * call already blocked in the kernel runs on until data moves or the
 * deadline passes. A bulk call that has to wait needs one spare descriptor:
 * at the limit it returns -EMFILE before it waits, with ctl->moved exact.
 * recvall and sendall of up to 64 KiB first try one non-blocking system call
 * on the caller's number; one that completes in it never waits, makes no
 * other system call, and needs no descriptor. The single-shot fastsock_recv and
 * fastsock_send make one system call on the number they are given: a file
 * that took it answers -ENOTSOCK, but another socket that took it can't be
 * told apart. Closing a descriptor that another thread is using is a race in
 * the program; this only bounds the damage.
 */
#ifndef FASTSOCK_H
#define FASTSOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A byte count (>= 0) or a negative error code. */
typedef ssize_t fastsock_result;

/* Error codes beyond errno, kept far from errno's range as libuv does. */
#define FASTSOCK_EOF     (-4095) /* end of stream before the count was reached */
#define FASTSOCK_EOFFSET (-4094) /* offset lies beyond the buffer */
#define FASTSOCK_ECOUNT  (-4093) /* offset + count lies beyond the buffer */
#define FASTSOCK_ETOOLONG (-4092) /* no delimiter within the maximum length */

/* As a count: everything from offset to the end (of a buffer, or of a file). */
#define FASTSOCK_ALL ((size_t)-1)

/*
 * Called when a system call was interrupted by a signal, or when a blocking
 * call came back short (which is how a signal shows when some data already
 * moved). Return 0 to resume, or a negative errno (normally -EINTR) to stop:
 * the operation then returns that value with ctl->moved set.
 * It is called without whatever lock the binding released.
 */
typedef int (*fastsock_interrupt_fn)(void *arg);

/* ctl->flags */
enum {
    /* Keep an O_NONBLOCK socket non-blocking and wait in poll() between
     * receives, instead of making it blocking for the transfer. Costs more
     * system calls; exists for measurement and for fds shared across threads. */
    FASTSOCK_POLL_ONLY = 1 << 0
};

typedef struct fastsock_ctl {
    int64_t timeout_ms;              /* < 0: no limit; 0: never wait; > 0: bound for the whole call */
    unsigned flags;                  /* FASTSOCK_POLL_ONLY */
    fastsock_interrupt_fn on_interrupt; /* NULL: resume after every interruption */
    void *interrupt_arg;
    size_t moved;                    /* out: bytes moved, exact on success and on error */
} fastsock_ctl;

/* A ctl with no timeout and no hook. */
#define FASTSOCK_CTL_INIT { -1, 0, NULL, NULL, 0 }

/*
 * Receive exactly count bytes into buf[offset, offset + count).
 * Returns count; FASTSOCK_EOF if the stream ended first; -ETIMEDOUT when the
 * deadline passed; -EAGAIN if timeout_ms is 0 and the data was not all there.
 * A socket left O_NONBLOCK by its runtime is made blocking for the transfer
 * (one recv(MSG_WAITALL) instead of a poll/recv loop) and restored after.
 */
fastsock_result fastsock_recvall(int fd, void *buf, size_t len, size_t offset,
                                 size_t count, fastsock_ctl *ctl);

/*
 * recvall's first try alone, for a binding that keeps its interpreter lock
 * through a call that can't wait, and releases it only to wait: with count
 * up to 64 KiB, one non-blocking recv (beyond that, nothing). Returns 1 when
 * all count bytes came (the receive is done), 0 when not all did (ctl->moved
 * did: finish with fastsock_recvall from offset + ctl->moved, whose
 * recvall_cycles() then counts this try's recv too), or the error that came
 * instead (FASTSOCK_EOF, -ECONNRESET...), with ctl->moved exact.
 */
fastsock_result fastsock_recvall_try(int fd, void *buf, size_t len, size_t offset,
                                     size_t count, fastsock_ctl *ctl);

/*
 * One receive of at most count bytes into buf[offset, ...), waiting until
 * data arrives or the timeout passes. Returns the count, 0 at end of stream,
 * -EAGAIN when timeout_ms is 0 and nothing was there, -ETIMEDOUT.
 * flags are recv(2) flags (MSG_PEEK ...).
 */
fastsock_result fastsock_recv(int fd, void *buf, size_t len, size_t offset,
                              size_t count, int flags, fastsock_ctl *ctl);

/*
 * One send of data[offset, offset + count): waits until the socket is
 * writable, then sends what one system call takes. Returns that count,
 * -EAGAIN when timeout_ms is 0 and nothing could be sent, -EPIPE for a gone
 * peer (never SIGPIPE).
 */
fastsock_result fastsock_send(int fd, const void *data, size_t len,
                              size_t offset, size_t count, fastsock_ctl *ctl);

/*
 * Send all of data[offset, offset + count). Returns count or a negative error.
 * A blocking transfer goes to the kernel in sends of at most 1 MiB: over
 * loopback that ran up to 1.6x faster than one send of everything.
 */
fastsock_result fastsock_sendall(int fd, const void *data, size_t len,
                                 size_t offset, size_t count, fastsock_ctl *ctl);

/*
 * sendall's first try alone, as fastsock_recvall_try is recvall's: with
 * count up to 64 KiB, one non-blocking send (never SIGPIPE; beyond 64 KiB,
 * nothing). Returns 1 when all count bytes went, 0 when not all did
 * (ctl->moved did: finish with fastsock_sendall from offset + ctl->moved),
 * or the error that came instead (-EPIPE...), with ctl->moved exact.
 */
fastsock_result fastsock_sendall_try(int fd, const void *data, size_t len, size_t offset,
                                     size_t count, fastsock_ctl *ctl);

/*
 * Send count bytes of file, from byte offset, with sendfile(2) where the
 * kernel can, else by read and send. count FASTSOCK_ALL, or a count beyond the
 * end, sends to the end of the file. Returns the bytes sent.
 * A seekable file is read at offset and its position is left alone (the
 * bindings set it, since their file objects keep their own); a non-seekable
 * one (pipe) is read from where it is, and offset must be 0 (-ESPIPE).
 */
fastsock_result fastsock_sendfile(int sock, int file, int64_t offset,
                                  size_t count, fastsock_ctl *ctl);

/*
 * Send the buffers iov[0, iovcnt) as one stream, with sendmsg(2) in batches
 * (no join, no slicing): a short send resumes inside the right buffer.
 * Returns the total, or an error with ctl->moved the bytes sent; a total
 * beyond SSIZE_MAX is FASTSOCK_ECOUNT before any byte moves.
 */
struct iovec;
fastsock_result fastsock_sendallv(int fd, const struct iovec *iov, size_t iovcnt,
                                  fastsock_ctl *ctl);

/*
 * Receive exactly count bytes from sock into file, written from byte offset
 * on: with splice(2) through a pipe, so the bytes never pass through user
 * space; by recv and write where splice can't serve (not Linux, the portable
 * build, a file opened O_APPEND, a pipe or terminal). A seekable file is
 * written at offset and its position left alone (the bindings set it, as for
 * sendfile); an O_APPEND or non-seekable one is written where it stands, and
 * offset must be 0 (-ESPIPE). Returns count; FASTSOCK_EOF if the stream
 * ended first; -EBADF for a file not open for writing. ctl->moved counts
 * the bytes written to the file, which stay written whatever the outcome.
 */
fastsock_result fastsock_recvfile(int sock, int file, int64_t offset, size_t count,
                                  fastsock_ctl *ctl);

/* ---- reading a protocol: a line or header block, then a body -----------------
 *
 * A reader owns a look-ahead buffer over one socket. fastsock_reader_until
 * reads up to and including a delimiter with as few system calls as the data
 * allows (one recv of whatever is there, 16 KiB at first); what it read past
 * the delimiter stays in the look-ahead, and fastsock_reader_recvall hands it
 * to the next body before receiving the rest straight into the caller's
 * memory. Whatever comes after the delimiter is therefore the reader's, not
 * the socket's: read it through the reader (fastsock_reader_buffered says how
 * much it holds). The state lives in the caller's memory; the look-ahead is
 * allocated on the first read and grows to about the longest line asked for.
 */
typedef struct fastsock_reader {
    int fd;
    unsigned char *buf;   /* the look-ahead */
    size_t cap;
    size_t start, end;    /* the bytes read and not yet handed out: buf[start, end) */
} fastsock_reader;

/* Allocates nothing; fastsock_reader_release frees the look-ahead. */
void fastsock_reader_init(fastsock_reader *r, int fd);
void fastsock_reader_release(fastsock_reader *r);

/* Bytes read from the socket and not yet handed out. */
size_t fastsock_reader_buffered(const fastsock_reader *r);

/*
 * Reads until the first delim[0, dlen) within max bytes (the delimiter
 * included) and hands that line out: returns its length, delimiter included,
 * with *line pointing at it inside the look-ahead, valid until the reader's
 * next call. The timeout bounds the whole call; 0 never waits.
 * - No delimiter within max bytes: FASTSOCK_ETOOLONG, nothing handed out
 *   (the bytes stay buffered, ctl->moved is 0).
 * - The stream ends first: FASTSOCK_EOF, with *line and ctl->moved the
 *   partial line, which is handed out.
 * - -ETIMEDOUT, -EAGAIN, -ECONNRESET...: nothing handed out; what came stays
 *   buffered, so a later call goes on where this one stopped.
 * - dlen 0 or max < dlen: -EINVAL. -ENOMEM when the look-ahead can't grow.
 */
fastsock_result fastsock_reader_until(fastsock_reader *r, const void *delim, size_t dlen,
                                      size_t max, const unsigned char **line, fastsock_ctl *ctl);

/*
 * Exactly count bytes into buf[offset, offset + count): the buffered bytes
 * first, then fastsock_recvall on the socket for the rest. Results as
 * fastsock_recvall's; ctl->moved counts the bytes of both.
 */
fastsock_result fastsock_reader_recvall(fastsock_reader *r, void *buf, size_t len, size_t offset,
                                        size_t count, fastsock_ctl *ctl);

/* ---- searching received data without copying it ---------------------------- */

/* The offset of the first needle[0, nlen) in hay[from, len), or -1 when there
 * is none or from lies beyond len. An empty needle is found at from. */
fastsock_result fastsock_find(const void *hay, size_t len, size_t from, const void *needle,
                              size_t nlen);

/*
 * For a buffer just allocated and not yet touched, that a receive will fill:
 * asks the kernel to back it with huge pages where it can, so that filling it
 * takes one page fault per 2 MiB instead of one per 4 KiB, and faults it in
 * now (MADV_POPULATE_WRITE), which costs far less than faulting inside the
 * receive's copy -- unless faulting turns out slow (memory a VM's host has
 * taken back): then it stops and leaves the rest to the receive, in 4 KiB
 * pages. Its contents are unspecified afterwards. A no-op for
 * buffers under 2 MiB and where the platform has no such advice. Bindings
 * call it on their fresh recvall results, without their interpreter lock.
 */
void fastsock_advise_fresh(void *buf, size_t len);

/* ---- deadlines and error kinds, for the bindings' own wait loops ------------ */

/* Monotonic clock, milliseconds. */
int64_t fastsock_now_ms(void);

/* The deadline of a timeout: -1 for none (timeout_ms < 0), else
 * fastsock_now_ms() + timeout_ms. */
int64_t fastsock_deadline(int64_t timeout_ms);

/* Milliseconds left until a deadline: -1 for none, 0 once it has passed. */
int64_t fastsock_remaining_ms(int64_t deadline);

/* What a result means to a caller, so that every binding maps the same
 * results to the same family of its own errors. */
typedef enum fastsock_error_kind {
    FASTSOCK_KIND_OK = 0,     /* a count */
    FASTSOCK_KIND_CLOSED,     /* FASTSOCK_EOF: the peer ended the stream first */
    FASTSOCK_KIND_TIMEOUT,    /* -ETIMEDOUT: the deadline passed */
    FASTSOCK_KIND_WOULDBLOCK, /* -EAGAIN: never-wait mode and nothing could move */
    FASTSOCK_KIND_RANGE,      /* FASTSOCK_EOFFSET, FASTSOCK_ECOUNT: bad arguments */
    FASTSOCK_KIND_PEER_GONE,  /* -EPIPE, -ECONNRESET: the peer is gone */
    FASTSOCK_KIND_BADSOCK,    /* -EBADF, -ENOTSOCK: not an open socket */
    FASTSOCK_KIND_TOOLONG,    /* FASTSOCK_ETOOLONG: no delimiter within the maximum */
    FASTSOCK_KIND_OTHER       /* any other negative errno */
} fastsock_error_kind;

fastsock_error_kind fastsock_classify(fastsock_result rc);

/* ---- progressive transfers (event loops) -------------------------------------
 *
 * A transfer that a non-blocking caller steps each time its fd is ready:
 * an event loop's reader or writer callback, a fiber scheduler's io_wait, a
 * cqueues pollable. A step never waits: it makes the system calls that move
 * data until the kernel has nothing more for now (EAGAIN, or a short
 * return, which on a stream socket says the same a call earlier), the
 * transfer completes or fails, or the step has moved `budget` bytes, so
 * that one connection cannot starve the others of its loop. Readiness must
 * be level-triggered (asyncio, uvloop, Ruby's io_wait and cqueues all are).
 *
 * The state lives in the caller's memory; a step allocates nothing. The
 * sendfile kind allocates one bounce buffer, once, if it has to fall back
 * to read and send: fastsock_xfer_release frees it. The socket may be
 * blocking or not: recv and send are MSG_DONTWAIT, and sendfile(2), which
 * takes no flags, runs with O_NONBLOCK set for the step when the socket
 * lacks it. The file of a sendfile must be seekable (a regular file): a
 * pipe could leave a step waiting on the pipe, which no loop is watching.
 */

/* What a transfer waits for before its next step: poll's events as the
 * bits selectors use (EVENT_READ 1, EVENT_WRITE 2); 0 once it has ended. */
#define FASTSOCK_WANT_READ  1u
#define FASTSOCK_WANT_WRITE 2u

/* Bytes one step moves at most, unless the caller sets budget: about a
 * millisecond of a loopback copy on the project's machine. */
#define FASTSOCK_XFER_BUDGET ((size_t)1 << 20)

/* fastsock_xfer.flags */
enum {
    /* The receive's memory is fresh (just allocated, never touched): each
     * step advises and pre-faults the part it is about to fill, as
     * fastsock_advise_fresh does for a whole buffer, a step's worth at a
     * time, so no single step pays for all of it. */
    FASTSOCK_XFER_FRESH = 1u << 0
};

typedef enum fastsock_xfer_kind {
    FASTSOCK_XFER_RECV = 1, /* exactly count bytes into base[0, count) */
    FASTSOCK_XFER_SEND,     /* base[0, count) */
    FASTSOCK_XFER_SENDFILE  /* count bytes of file from file_offset */
} fastsock_xfer_kind;

typedef struct fastsock_xfer {
    /* Set by the init functions. The caller may change budget and flags
     * between steps, and nothing else. */
    fastsock_xfer_kind kind;
    int fd;
    char *base;            /* where the transfer's byte 0 goes or comes from */
    size_t count;          /* bytes the transfer moves in all */
    int file;              /* sendfile: the source, and where its bytes start */
    int64_t file_offset;
    size_t budget;         /* bytes one step moves at most; 0: FASTSOCK_XFER_BUDGET */
    unsigned flags;

    /* Progress: read them, never write them. */
    size_t done;           /* bytes moved so far, exact at every moment */
    unsigned long cycles;  /* data-moving system calls made (recv, send, sendfile, read) */
    unsigned want;         /* FASTSOCK_WANT_*: wait for this, then step; 0 once ended */
    fastsock_result error; /* 0, or what ended it: FASTSOCK_EOF, -ECONNRESET, ... */

    /* Private. */
    size_t advised;        /* FRESH: bytes from base advised so far */
    int advise_stopped;    /* FRESH: faulting turned out slow, the kernel faults the rest */
    int file_copying;      /* sendfile(2) can't serve this pair: read and send */
    char *bounce;          /* the copying fallback's buffer */
    size_t bounce_cap, bounce_at, bounce_len;
} fastsock_xfer;

/*
 * Each init checks the range as the blocking calls do, overflow-safe, before
 * any byte moves, and returns 0 or the same errors (FASTSOCK_EOFFSET,
 * FASTSOCK_ECOUNT; sendfile also -EBADF, -ESPIPE, -ENOTSOCK and -EINVAL for
 * a negative offset). The transfer then wants to read (recv) or write.
 * sendfile clamps count to the end of a regular file, as fastsock_sendfile
 * does, and leaves the file's position alone. Nothing is allocated.
 */
fastsock_result fastsock_xfer_recv_init(fastsock_xfer *x, int fd, void *buf, size_t len,
                                        size_t offset, size_t count);
fastsock_result fastsock_xfer_send_init(fastsock_xfer *x, int fd, const void *data, size_t len,
                                        size_t offset, size_t count);
fastsock_result fastsock_xfer_sendfile_init(fastsock_xfer *x, int sock, int file,
                                            int64_t offset, size_t count);

/*
 * One step. Returns the bytes it moved (>= 0), or, when the transfer failed
 * in it, the error (also left in x->error; x->done stays exact, this step's
 * bytes included). The transfer has ended when x->want is 0: complete if
 * x->error is 0 (then x->done == x->count). A step after
 * the end moves nothing and returns x->error.
 */
fastsock_result fastsock_xfer_step(fastsock_xfer *x);

/* Frees what the transfer allocated (the sendfile fallback's buffer); the
 * state may be dropped afterwards. Safe on any initialised state, twice too. */
void fastsock_xfer_release(fastsock_xfer *x);

/* recv system calls made by this thread's last fastsock_recvall. */
unsigned long fastsock_recvall_cycles(void);

/* A message for any result above; never NULL. */
const char *fastsock_strerror(fastsock_result err);

/* Nonzero when this build was forced onto the portable paths
 * (no MSG_WAITALL, no MSG_NOSIGNAL, no sendfile). */
int fastsock_portable_build(void);

#ifdef __cplusplus
}
#endif

#endif /* FASTSOCK_H */
