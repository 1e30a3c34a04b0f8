/*
 * The Ruby extension's hand-written C (fastsock/native.so, module
 * Fastsock::Native), called from the actions and typemaps of swig/ruby.i.
 *
 *   rb_args.c       arguments: socket and file objects, Strings, sizes, timeouts
 *   rb_errors.c     a core result -> the Ruby exception, with nbytes/partial
 *   rb_calls.c      the transfers: GVL released for the whole call, the
 *                   target String locked, interrupts run between resumptions
 *   rb_scheduler.c  the same calls inside a non-blocking fiber with
 *                   Fiber.scheduler set: core steps between the scheduler's waits
 *   rb_xfer.c       Fastsock::Receiver and Fastsock::Sender (progressive objects)
 *   rb_protocol.c   sendallv, recvfile, Fastsock::Reader, find and split
 *
 * Internal names are fastsock_rb__*; what swig/ruby.i calls is fastsock_rb_*.
 */
#ifndef FASTSOCK_RB_H
#define FASTSOCK_RB_H

#include <sys/types.h>

#include <ruby.h>

#include "fastsock.h"

/* ---- arguments (rb_args.c) ------------------------------------------------ */

/* The IO behind a socket or file argument, or Qnil for an Integer fd.
 * TypeError for anything else, and for an OpenSSL::SSL::SSLSocket. */
VALUE fastsock_rb__io_of(VALUE v, const char *what);
/* Its fd, after flushing what Ruby holds in the IO's write buffer. */
int fastsock_rb__fd_of(VALUE v, const char *what);
/* Bytes the IO (or Qnil) has read ahead and not yet handed out. */
size_t fastsock_rb__buffered(VALUE io);
/* Moves up to want of them into dst; returns how many. */
size_t fastsock_rb__take_buffered(VALUE io, char *dst, size_t want);
/* Errno::ENOTSOCK (or fstat's error) unless fd is a socket. */
void fastsock_rb__require_socket(int fd, const char *op);
/* A size, offset or count: >= 0; nil_is_all: nil is FASTSOCK_ALL. */
size_t fastsock_rb__size(VALUE v, const char *what, int nil_is_all);
/* recvall's n: NoMemoryError beyond what a String can hold. */
size_t fastsock_rb__nbytes(VALUE v);
/* A file offset (sendfile): an Integer >= 0. */
int64_t fastsock_rb__file_offset(VALUE v);
/* nil: -1 (no limit); 0: never wait; else milliseconds, rounded up. */
int64_t fastsock_rb__timeout_ms(VALUE v);
/* The (void *BUF, size_t LEN) and (const void *DATA, size_t LEN) typemaps:
 * TypeError unless v is a String; writable: FrozenError when frozen. */
void fastsock_rb__string_arg(VALUE v, const char *what, int writable, void **base, size_t *len);

/* ---- one call ------------------------------------------------------------- */

typedef enum {
    FASTSOCK_RB_RECVALL,
    FASTSOCK_RB_RECV,
    FASTSOCK_RB_SEND,
    FASTSOCK_RB_SENDALL,
    FASTSOCK_RB_SENDFILE,
    FASTSOCK_RB_SENDALLV,
    FASTSOCK_RB_RECVFILE,
    FASTSOCK_RB_READUNTIL
} fastsock_rb_op;

struct iovec;

/* Results beyond the core's, for the scheduler path (rb_errors.c raises them):
 * an exception that a scheduler's wait raised (Async::Task#stop, a
 * Thread#raise that reached the fiber ...), recorded so that the call can
 * clean up, then raised again with nbytes and partial; */
#define FASTSOCK_RB_EJUMP (-4000)
/* another fiber is receiving on the socket; */
#define FASTSOCK_RB_EBUSY (-4001)
/* the scheduler ended a wait before the socket was ready and before the
 * call's own deadline: its own timeout, which ruby-async 1.30's io_wait
 * swallows (Task#with_timeout's Async::TimeoutError becomes nil). */
#define FASTSOCK_RB_ESCHED (-4002)

typedef struct fastsock_rb_call {
    fastsock_rb_op op;
    const char *name;        /* "fastsock.recvall": prefixes every message */
    const char *count_name;  /* what the caller calls the count: n or count */
    int fd;
    char *base;              /* the String's bytes, taken under the lock */
    size_t len;
    size_t offset, count;    /* what is still to move */
    int file;                /* sendfile */
    int64_t file_offset;
    int file_seekable;
    int flags;               /* recv(2) flags */
    int file_append;         /* recvfile: written where it stands (O_APPEND, pipe) */
    struct iovec *iov;       /* sendallv: what is still to send, advanced in place */
    size_t iovcnt;
    fastsock_reader *reader; /* readuntil, and the reader's recvall: its look-ahead */
    const void *delim;       /* readuntil */
    size_t dlen, max;
    const unsigned char *line; /* readuntil's result, inside the look-ahead */
    int poll_first;          /* readuntil: the try found nothing, wait before recv */
    int64_t timeout_ms;      /* as given: < 0 none, 0 never wait */
    int64_t deadline;        /* fastsock_deadline(timeout_ms) */
    fastsock_ctl ctl;
    fastsock_result rc;
    size_t total;            /* moved over all resumptions, buffered bytes included */
    int hook_stopped;
    int advise_fresh;        /* recvall's own new String: fresh-memory advice first */
    /* Under a Fiber scheduler (rb_scheduler.c): */
    VALUE scheduler;         /* Fiber.scheduler of a non-blocking fiber, else Qnil */
    int wait_fd;             /* the call's own dup of fd, waited on and stepped; -1 */
    VALUE wait_io;           /* an IO over wait_fd, for the scheduler's io_wait; Qnil */
    dev_t dev;               /* what fd named at the start */
    ino_t ino;
    struct receive_entry *receiving; /* listed as the socket's one bulk receive */
    int jump_state;          /* FASTSOCK_RB_EJUMP: rb_protect's state, to jump again */
} fastsock_rb_call;

/* ---- errors (rb_errors.c) ------------------------------------------------- */

/* Marks exc as a TransferError with nbytes and partial. */
void fastsock_rb__set_transfer(VALUE exc, size_t nbytes, VALUE partial);
/* Raises rc (< 0) of call c: c->total bytes moved, partial the received
 * bytes (recvall) or nil, expected what was asked for. GVL held, no String
 * locked. */
void fastsock_rb__raise(const fastsock_rb_call *c, fastsock_result rc, VALUE partial,
                        size_t expected) __attribute__((noreturn));
/* Looks up the classes lib/fastsock.rb defined before loading the extension. */
void fastsock_rb__errors_init(void);

/* The class of a swallowed scheduler timeout: Async::TimeoutError under
 * ruby-async, else Fastsock::TimeoutError. */
VALUE fastsock_rb__sched_timeout_class(VALUE scheduler);

/* ---- the transfers (rb_calls.c) --------------------------------------------- */

VALUE fastsock_rb_recvall(VALUE sockv, int fd, size_t n, fastsock_ctl *ctl);
fastsock_result fastsock_rb_recv_into(fastsock_rb_op op, const char *name, VALUE sockv,
                                      VALUE strv, int fd, size_t offset, size_t count,
                                      int flags, fastsock_ctl *ctl);
fastsock_result fastsock_rb_send(fastsock_rb_op op, const char *name, VALUE strv, int fd,
                                 size_t offset, size_t count, fastsock_ctl *ctl);
fastsock_result fastsock_rb_sendfile(VALUE filev, int fd, int file,
                                     int64_t offset, size_t count, fastsock_ctl *ctl);
/* The same through a Fastsock::Reader: its look-ahead first, then the socket. */
VALUE fastsock_rb__reader_recvall(fastsock_reader *r, const char *name, VALUE sockv, int fd,
                                  size_t n, fastsock_ctl *ctl);
fastsock_result fastsock_rb__reader_recvall_into(fastsock_reader *r, const char *name,
                                                 VALUE sockv, VALUE strv, int fd, size_t offset,
                                                 size_t count, fastsock_ctl *ctl);
/* A call's state before run: no file, no scheduler, the deadline started. */
void fastsock_rb__begin(fastsock_rb_call *c, fastsock_rb_op op, const char *name, int fd,
                        int64_t timeout_ms);
/* Runs call c to its end (c->rc, c->total), GVL released, interrupts run
 * between resumptions; readuntil waits through a Fiber scheduler instead. */
void fastsock_rb__run(fastsock_rb_call *c);
/* One try of a single-shot call (recv_into, send, readuntil) that never
 * waits, GVL held; adds what moved to c->total. */
fastsock_result fastsock_rb__try_now(fastsock_rb_call *c);
/* recv calls of this thread's last recvall/recvall_into. */
unsigned long fastsock_rb_recvall_cycles(void);
/* Moves a fresh String's bytes out of the object (see rb_calls.c). */
void fastsock_rb__unembed(VALUE str);
/* Reserves malloc'd room for end bytes without changing the bytesize, as
 * IO#read(len, outbuf) grows its outbuf; NoMemoryError, FrozenError. */
void fastsock_rb__reserve(VALUE str, size_t end);
/* Counts the recv calls of a recvall that the scheduler path made. */
void fastsock_rb__add_cycles(unsigned long n);

/* sendfile and recvfile leave the file as a Ruby program expects it, also
 * after an error or an interrupt: rb_ensure's data for that. */
typedef struct fastsock_rb_file_job {
    fastsock_rb_call *call;
    VALUE file_io;     /* the File, or Qnil for an Integer fd */
    int64_t start;     /* the offset the call began at */
    int restore_flags; /* the file's O_NONBLOCK was cleared: put it back */
    int file_flags;
} fastsock_rb_file_job;
/* Ruby 3 makes pipes O_NONBLOCK, and the core reads (sendfile) and writes
 * (recvfile) them with plain read()/write(): a pipe momentarily empty or
 * full would fail with EAGAIN instead of waiting. Blocking, they are
 * interrupted like the socket calls (the unblocking function's signal, then
 * the hook). Clears O_NONBLOCK of the call's unseekable file. */
void fastsock_rb__file_blocking(fastsock_rb_file_job *j);
/* rb_ensure's second function: the file's flags back, and its position
 * start + bytes moved (an appending file: where the kernel left it, its
 * end); an IO is told, which drops its stale read buffer. */
VALUE fastsock_rb__file_position(VALUE job);

/* Ruby turns transparent huge pages off for the whole process (prctl, for
 * copy-on-write after fork), which voids the fresh-memory advice. Lifts
 * that ban while a fresh buffer of len bytes faults in; returns whether
 * fastsock_rb__thp_restore must put it back. Without the GVL is fine. */
int fastsock_rb__thp_lift(size_t len);
void fastsock_rb__thp_restore(int lifted);

/* ---- Fiber scheduler (rb_scheduler.c) ---------------------------------------- */

/* Fiber.scheduler when the current fiber is non-blocking, else Qnil. */
VALUE fastsock_rb__scheduler(void);
/* Whether a bulk receive under a scheduler is in progress on fd's socket. */
int fastsock_rb__receive_busy(int fd);
/* Runs call c to its end (c->rc, c->total) stepping the core between waits
 * through c->scheduler. */
void fastsock_rb__sched_run(fastsock_rb_call *c);

/* ---- Receiver and Sender (rb_xfer.c) ---------------------------------------- */

void fastsock_rb__xfer_init(VALUE mFastsock);

/* ---- sendallv, recvfile, Reader, find, split (rb_protocol.c) ------------------ */

void fastsock_rb__protocol_init(VALUE mFastsock, VALUE mNative);
/* After an interruption that moved bytes: what is left of a sendallv. */
void fastsock_rb__iov_advance(fastsock_rb_call *c, size_t moved);

/* swig/ruby.i's %init. */
void fastsock_rb_init(void);

#endif
