/*
 * Receiver and Sender: the core's progressive transfers (fastsock_xfer) as
 * Python objects, for any event loop. The loop waits for the event an
 * object wants (.want, as selectors' EVENT_READ/EVENT_WRITE), then calls
 * step(), which never waits and moves at most .budget bytes.
 *
 * A fresh Receiver fills a bytes object that it alone holds until the last
 * byte is in: no Python code can see its uninitialized memory, and result()
 * hands out that very object, no copy. If the stream fails first, the object
 * is shrunk in place to the bytes that came (what recvall does) and becomes
 * the exception's .partial.
 */
#include "fastsock_py.h"

#include <errno.h>
#include <structmember.h>

/* Steps that may move more than this run without the GIL: another thread
 * gets the interpreter while the kernel copies; smaller ones (a message)
 * would pay more for the switch than they move. */
#define FASTSOCK_PY_XFER_NOGIL_BYTES ((size_t)64 * 1024)
/* A fresh result this large gets the core's fresh-memory advice a step at a
 * time (below it the core gives none anyway)... */
#define FASTSOCK_PY_XFER_FRESH_BYTES ((size_t)2 << 20)
/* ...while a step may move more than the core's default budget: the advice
 * faults in a whole huge page (2 MiB) ahead of the receive, which a smaller
 * step pays for alone. Measured on the project's VM (fastsock.aio, 256 MiB
 * fresh): with the advice at 1-2 MiB steps the loop's worst stall was 4-5 ms
 * (one huge page of memory the host had taken back), without it at 512 KiB
 * steps 0.7-1 ms at the same MB/s; 64 connections advising 2 MiB each in one
 * loop iteration froze it for 30-150 ms, faulting as the receive goes kept
 * it near 10 ms. A caller who raises the budget asks for throughput. */
#define FASTSOCK_PY_XFER_ADVISE_BUDGET (FASTSOCK_XFER_BUDGET + 1)

typedef struct fastsock_py_xfer {
    PyObject_HEAD
    fastsock_xfer x;
    PyObject *sock;     /* the socket object (or int): its fd must stay open */
    PyObject *target;   /* the fresh bytes, the caller's buffer, the data or the file */
    Py_buffer view;     /* held while the transfer runs: the memory can't move */
    int has_view;
    int fresh;          /* target is this Receiver's own bytes object */
    int handed_out;     /* the fresh bytes (complete or partial) went to Python */
    int advise;         /* a large fresh result: FASTSOCK_XFER_FRESH while steps are large */
    int closed;         /* close() ended it before it was over: no more steps */
    int stepping;       /* a step runs without the GIL: its memory must stay put */
    const char *fn;     /* the blocking call it mirrors, for messages */
} fastsock_py_xfer;

static PyTypeObject *fastsock_py_receiver_type;
static PyTypeObject *fastsock_py_sender_type;

static void fastsock_py_xfer_release_view(fastsock_py_xfer *self)
{
    if (self->has_view) {
        self->has_view = 0;
        PyBuffer_Release(&self->view);
    }
}

/* The transfer ended (complete or failed): what it held for the transfer
 * goes back, so a bytearray can be resized again, a file's bounce buffer
 * freed. */
static void fastsock_py_xfer_finish(fastsock_py_xfer *self)
{
    fastsock_py_xfer_release_view(self);
    fastsock_xfer_release(&self->x);
}

static int fastsock_py_xfer_budget(PyObject *obj, fastsock_xfer *x)
{
    if (obj == NULL || obj == Py_None)
        return 0;
    PyObject *num = PyNumber_Index(obj);
    if (num == NULL)
        return -1;
    int sign = _PyLong_Sign(num);
    size_t budget = sign > 0 ? PyLong_AsSize_t(num) : 0;
    Py_DECREF(num);
    if (budget == (size_t)-1 && PyErr_Occurred())
        return -1;
    if (budget == 0) {
        PyErr_SetString(PyExc_ValueError, "budget must be a positive number of bytes");
        return -1;
    }
    x->budget = budget;
    return 0;
}

/* Set up common to every kind: the socket object (refusing TLS) and its fd. */
static fastsock_py_xfer *fastsock_py_xfer_new(PyTypeObject *type, PyObject *sock, int *fd,
                                              const char *fn)
{
    fastsock_py_call call = FASTSOCK_PY_CALL_INIT;
    if (fastsock_py_socket(sock, fd, &call, fn) < 0)
        return NULL;
    fastsock_py_xfer *self = (fastsock_py_xfer *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(sock);
    self->sock = sock;
    self->fn = fn;
    return self;
}

/* The end of every constructor, given what the core's init returned: a
 * transfer with nothing to move is complete already. Steals self. */
static PyObject *fastsock_py_xfer_started(fastsock_py_xfer *self, fastsock_result rc)
{
    if (rc < 0) {
        fastsock_py_raise_moved(rc, self->fn, 0, 0, NULL);
        Py_DECREF(self);
        return NULL;
    }
    if (self->x.want == 0)
        fastsock_py_xfer_finish(self);
    return (PyObject *)self;
}

/* Receiver(sock, n=None, *, buffer=None, offset=0, budget=None); arguments
 * not given are NULL. */
static PyObject *fastsock_py_receiver_make(PyTypeObject *type, PyObject *sock, PyObject *n_obj,
                                           PyObject *buffer, PyObject *offset_obj, PyObject *budget_obj)
{
    if (n_obj == NULL)
        n_obj = Py_None;
    if (buffer == NULL)
        buffer = Py_None;
    int into = buffer != Py_None;
    const char *fn = into ? "recvall_into" : "recvall";
    if (!into && n_obj == Py_None) {
        PyErr_SetString(PyExc_TypeError, "Receiver() needs n, the number of bytes, or a buffer");
        return NULL;
    }
    if (!into && offset_obj != NULL) {
        PyErr_SetString(PyExc_TypeError, "Receiver() takes an offset only with a buffer");
        return NULL;
    }
    int fd;
    fastsock_py_xfer *self = fastsock_py_xfer_new(type, sock, &fd, fn);
    if (self == NULL)
        return NULL;
    if (fastsock_py_xfer_budget(budget_obj, &self->x) < 0)
        goto fail;
    fastsock_result rc;
    if (into) {
        fastsock_py_call call = FASTSOCK_PY_CALL_INIT;
        size_t offset = 0, count = FASTSOCK_ALL;
        if (fastsock_py_buffer(buffer, &self->view, 1, fn, &call) < 0)
            goto fail;
        self->has_view = 1;
        if ((offset_obj != NULL && fastsock_py_size(offset_obj, &offset, 0, fn) < 0) ||
            fastsock_py_size(n_obj, &count, 1, fn) < 0)
            goto fail;
        Py_INCREF(buffer);
        self->target = buffer;
        size_t budget = self->x.budget;
        rc = fastsock_xfer_recv_init(&self->x, fd, self->view.buf, (size_t)self->view.len, offset, count);
        self->x.budget = budget;
    } else {
        PyObject *num = PyNumber_Index(n_obj);
        if (num == NULL)
            goto fail;
        int sign = _PyLong_Sign(num);
        Py_ssize_t n = PyLong_AsSsize_t(num);
        Py_DECREF(num);
        if (sign < 0) {
            PyErr_SetString(PyExc_ValueError, "Receiver() argument 'n' must not be negative");
            goto fail;
        }
        if (n == -1 && PyErr_Occurred()) {
            if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_MemoryError, "Receiver() cannot allocate %R bytes", n_obj);
            }
            goto fail;
        }
        /* Not zero-filled, and large ones are an untouched mapping: the
         * pages fault in as the steps fill them (with FASTSOCK_XFER_FRESH's
         * advice for large steps, see FASTSOCK_PY_XFER_ADVISE_BUDGET),
         * never in one piece on the loop's thread. */
        self->target = PyBytes_FromStringAndSize(NULL, n);
        if (self->target == NULL)
            goto fail;
        self->fresh = 1;
        size_t budget = self->x.budget;
        rc = fastsock_xfer_recv_init(&self->x, fd, PyBytes_AS_STRING(self->target), (size_t)n, 0,
                                     (size_t)n);
        self->x.budget = budget;
        self->advise = (size_t)n >= FASTSOCK_PY_XFER_FRESH_BYTES;
    }
    return fastsock_py_xfer_started(self, rc);
fail:
    Py_DECREF(self);
    return NULL;
}

static PyObject *fastsock_py_receiver_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *names[] = { "sock", "n", "buffer", "offset", "budget", NULL };
    PyObject *sock, *n_obj = NULL, *buffer = NULL, *offset_obj = NULL, *budget_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O$OOO:Receiver", names, &sock, &n_obj, &buffer,
                                     &offset_obj, &budget_obj))
        return NULL;
    return fastsock_py_receiver_make(type, sock, n_obj, buffer, offset_obj, budget_obj);
}

static fastsock_py_params fastsock_py_receiver_params = {
    "Receiver", 2, 1, 3, { "sock", "n", "buffer", "offset", "budget" }, { NULL }
};

/* The same through vectorcall: a selectors loop may make one per message,
 * and PyArg_ParseTupleAndKeywords was half of a Receiver(sock, 64,
 * buffer=buf)'s cost. */
static PyObject *fastsock_py_receiver_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf,
                                                 PyObject *kwnames)
{
    PyObject *arg[FASTSOCK_PY_MAX_PARAMS];
    if (fastsock_py_parse(&fastsock_py_receiver_params, args, PyVectorcall_NARGS(nargsf), kwnames, arg) < 0)
        return NULL;
    return fastsock_py_receiver_make((PyTypeObject *)type, arg[0], arg[1], arg[2], arg[3], arg[4]);
}

/* Sender(sock, data, offset=0, count=None, *, budget=None); arguments not
 * given are NULL. */
static PyObject *fastsock_py_sender_make(PyTypeObject *type, PyObject *sock, PyObject *data,
                                         PyObject *offset_obj, PyObject *count_obj, PyObject *budget_obj)
{
    if (count_obj == NULL)
        count_obj = Py_None;
    const char *fn = "sendall";
    int fd;
    fastsock_py_xfer *self = fastsock_py_xfer_new(type, sock, &fd, fn);
    if (self == NULL)
        return NULL;
    fastsock_py_call call = FASTSOCK_PY_CALL_INIT;
    size_t offset = 0, count = FASTSOCK_ALL;
    if (fastsock_py_xfer_budget(budget_obj, &self->x) < 0 ||
        fastsock_py_buffer(data, &self->view, 0, fn, &call) < 0)
        goto fail;
    self->has_view = 1;
    Py_INCREF(data);
    self->target = data;
    if ((offset_obj != NULL && fastsock_py_size(offset_obj, &offset, 0, fn) < 0) ||
        fastsock_py_size(count_obj, &count, 1, fn) < 0)
        goto fail;
    size_t budget = self->x.budget;
    fastsock_result rc = fastsock_xfer_send_init(&self->x, fd, self->view.buf, (size_t)self->view.len,
                                                 offset, count);
    self->x.budget = budget;
    return fastsock_py_xfer_started(self, rc);
fail:
    Py_DECREF(self);
    return NULL;
}

static PyObject *fastsock_py_sender_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *names[] = { "sock", "data", "offset", "count", "budget", NULL };
    PyObject *sock, *data, *offset_obj = NULL, *count_obj = NULL, *budget_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|OO$O:Sender", names, &sock, &data, &offset_obj,
                                     &count_obj, &budget_obj))
        return NULL;
    return fastsock_py_sender_make(type, sock, data, offset_obj, count_obj, budget_obj);
}

static fastsock_py_params fastsock_py_sender_params = {
    "Sender", 4, 2, 1, { "sock", "data", "offset", "count", "budget" }, { NULL }
};

static PyObject *fastsock_py_sender_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf,
                                               PyObject *kwnames)
{
    PyObject *arg[FASTSOCK_PY_MAX_PARAMS];
    if (fastsock_py_parse(&fastsock_py_sender_params, args, PyVectorcall_NARGS(nargsf), kwnames, arg) < 0)
        return NULL;
    return fastsock_py_sender_make((PyTypeObject *)type, arg[0], arg[1], arg[2], arg[3], arg[4]);
}

/* Sender.from_file(sock, file, offset=0, count=None, *, budget=None) */
static PyObject *fastsock_py_sender_from_file(PyObject *cls, PyObject *args, PyObject *kwds)
{
    static char *names[] = { "sock", "file", "offset", "count", "budget", NULL };
    PyObject *sock, *file, *offset_obj = NULL, *count_obj = Py_None, *budget_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|OO$O:from_file", names, &sock, &file, &offset_obj,
                                     &count_obj, &budget_obj))
        return NULL;
    const char *fn = "sendfile";
    int fd, file_fd;
    int64_t offset = 0;
    size_t count = FASTSOCK_ALL;
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, fastsock_py_sender_type)) {
        PyErr_SetString(PyExc_TypeError, "from_file() is a Sender constructor");
        return NULL;
    }
    fastsock_py_xfer *self = fastsock_py_xfer_new((PyTypeObject *)cls, sock, &fd, fn);
    if (self == NULL)
        return NULL;
    if (fastsock_py_xfer_budget(budget_obj, &self->x) < 0 ||
        fastsock_py_fd(file, &file_fd, fn, "file") < 0 ||
        (offset_obj != NULL && fastsock_py_file_offset(offset_obj, &offset, fn) < 0) ||
        fastsock_py_size(count_obj, &count, 1, fn) < 0)
        goto fail;
    Py_INCREF(file);
    self->target = file;
    size_t budget = self->x.budget;
    fastsock_result rc = fastsock_xfer_sendfile_init(&self->x, fd, file_fd, offset, count);
    self->x.budget = budget;
    if (rc == -ESPIPE) {
        /* Reading a pipe could block the step, and no loop watches the pipe. */
        PyErr_SetString(PyExc_ValueError,
                        "Sender.from_file() needs a regular file: a pipe or a socket as the source "
                        "could block the event loop; use the blocking fastsock.sendfile()");
        goto fail;
    }
    return fastsock_py_xfer_started(self, rc);
fail:
    Py_DECREF(self);
    return NULL;
}

static int fastsock_py_xfer_traverse(fastsock_py_xfer *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->sock);
    Py_VISIT(self->target);
    return 0;
}

static int fastsock_py_xfer_clear(fastsock_py_xfer *self)
{
    fastsock_py_xfer_finish(self);
    Py_CLEAR(self->sock);
    Py_CLEAR(self->target);
    return 0;
}

static void fastsock_py_xfer_dealloc(fastsock_py_xfer *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    fastsock_py_xfer_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

/* Over: complete, failed or closed; no step will move anything again. */
static int fastsock_py_xfer_over(const fastsock_py_xfer *self)
{
    return self->x.want == 0 || self->closed;
}

/* A fresh receive that failed or was closed: its bytes object shrinks in
 * place (mremap for large ones, no copy) to what arrived, and is handed out
 * as .partial. */
static PyObject *fastsock_py_xfer_partial_bytes(fastsock_py_xfer *self)
{
    if (!self->fresh)
        Py_RETURN_NONE;
    if (!self->handed_out && fastsock_py_xfer_over(self)) {
        if (_PyBytes_Resize(&self->target, (Py_ssize_t)self->x.done) < 0)
            return NULL; /* target is NULL now, MemoryError set */
        self->handed_out = 1;
    }
    if (self->handed_out) {
        Py_INCREF(self->target);
        return self->target;
    }
    /* Still running: a copy of the part that is filled, never the rest. */
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(self->target), (Py_ssize_t)self->x.done);
}

static PyObject *fastsock_py_xfer_raise(fastsock_py_xfer *self)
{
    PyObject *partial = NULL;
    if (self->fresh && self->x.error != FASTSOCK_EOFFSET && self->x.error != FASTSOCK_ECOUNT) {
        if (self->target == NULL) /* an earlier shrink failed */
            return PyErr_NoMemory();
        partial = fastsock_py_xfer_partial_bytes(self);
        if (partial == NULL)
            return NULL;
    }
    fastsock_py_raise_moved(self->x.error, self->fn, self->x.done, self->x.count, partial);
    Py_XDECREF(partial);
    return NULL;
}

static PyObject *fastsock_py_xfer_closed_error(fastsock_py_xfer *self, const char *what)
{
    PyErr_Format(PyExc_ValueError, "%s on a closed %s: it stopped at %zu of %zu bytes", what,
                 Py_TYPE(self)->tp_name, self->x.done, self->x.count);
    return NULL;
}

static int fastsock_py_xfer_check_idle(fastsock_py_xfer *self, const char *what)
{
    if (!self->stepping)
        return 0;
    PyErr_Format(PyExc_RuntimeError, "%s while step() runs in another thread", what);
    return -1;
}

static PyObject *fastsock_py_xfer_step(fastsock_py_xfer *self, PyObject *unused)
{
    (void)unused;
    if (self->closed)
        return fastsock_py_xfer_closed_error(self, "step()");
    if (fastsock_py_xfer_check_idle(self, "step()") < 0)
        return NULL;
    if (self->x.want == 0) {
        if (self->x.error < 0)
            return fastsock_py_xfer_raise(self);
        return PyLong_FromLong(0);
    }
    fastsock_result rc;
    size_t budget = self->x.budget ? self->x.budget : FASTSOCK_XFER_BUDGET;
    if (self->advise) {
        if (budget >= FASTSOCK_PY_XFER_ADVISE_BUDGET)
            self->x.flags |= FASTSOCK_XFER_FRESH;
        else
            self->x.flags &= ~(unsigned)FASTSOCK_XFER_FRESH;
    }
    if (self->x.count - self->x.done > FASTSOCK_PY_XFER_NOGIL_BYTES && budget > FASTSOCK_PY_XFER_NOGIL_BYTES) {
        self->stepping = 1;
        Py_BEGIN_ALLOW_THREADS
        rc = fastsock_xfer_step(&self->x);
        Py_END_ALLOW_THREADS
        self->stepping = 0;
    } else {
        rc = fastsock_xfer_step(&self->x);
    }
    if (self->x.want == 0 || self->closed) /* closed: by another thread meanwhile */
        fastsock_py_xfer_finish(self);
    if (rc < 0)
        return fastsock_py_xfer_raise(self);
    return PyLong_FromSsize_t(rc);
}

static PyObject *fastsock_py_xfer_result(fastsock_py_xfer *self, PyObject *unused)
{
    (void)unused;
    if (fastsock_py_xfer_check_idle(self, "result()") < 0)
        return NULL;
    if (self->closed)
        return fastsock_py_xfer_closed_error(self, "result()");
    if (self->x.want != 0) {
        PyErr_Format(PyExc_RuntimeError, "the transfer is not complete: %zu of %zu bytes moved",
                     self->x.done, self->x.count);
        return NULL;
    }
    if (self->x.error < 0)
        return fastsock_py_xfer_raise(self);
    if (self->fresh) {
        self->handed_out = 1;
        Py_INCREF(self->target);
        return self->target;
    }
    return PyLong_FromSize_t(self->x.count);
}

static PyObject *fastsock_py_xfer_partial(fastsock_py_xfer *self, PyObject *unused)
{
    (void)unused;
    if (fastsock_py_xfer_check_idle(self, "partial()") < 0)
        return NULL;
    if (self->fresh && self->target == NULL)
        return PyErr_NoMemory();
    if (self->fresh && self->x.want == 0 && self->x.error == 0) {
        self->handed_out = 1; /* complete: the whole result, as result() gives it */
        Py_INCREF(self->target);
        return self->target;
    }
    return fastsock_py_xfer_partial_bytes(self);
}

static PyObject *fastsock_py_xfer_close(fastsock_py_xfer *self, PyObject *unused)
{
    (void)unused;
    if (self->x.want != 0 && !self->closed) {
        self->closed = 1;
        /* A step running in another thread lets go when it returns. */
        if (!self->stepping)
            fastsock_py_xfer_finish(self);
    }
    Py_RETURN_NONE;
}

static PyObject *fastsock_py_xfer_fileno(fastsock_py_xfer *self, PyObject *unused)
{
    (void)unused;
    return PyLong_FromLong(self->x.fd);
}

static PyObject *fastsock_py_xfer_get_done(fastsock_py_xfer *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->x.want == 0 && self->x.error == 0);
}

static PyObject *fastsock_py_xfer_get_ended(fastsock_py_xfer *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(fastsock_py_xfer_over(self));
}

static PyObject *fastsock_py_xfer_get_nbytes(fastsock_py_xfer *self, void *closure)
{
    (void)closure;
    return PyLong_FromSize_t(self->x.done);
}

static PyObject *fastsock_py_xfer_get_expected(fastsock_py_xfer *self, void *closure)
{
    (void)closure;
    return PyLong_FromSize_t(self->x.count);
}

static PyObject *fastsock_py_xfer_get_want(fastsock_py_xfer *self, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLong(self->closed ? 0 : self->x.want);
}

static PyObject *fastsock_py_xfer_get_cycles(fastsock_py_xfer *self, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLong(self->x.cycles);
}

static PyObject *fastsock_py_xfer_get_budget(fastsock_py_xfer *self, void *closure)
{
    (void)closure;
    return PyLong_FromSize_t(self->x.budget ? self->x.budget : FASTSOCK_XFER_BUDGET);
}

static int fastsock_py_xfer_set_budget(fastsock_py_xfer *self, PyObject *value, void *closure)
{
    (void)closure;
    if (value == NULL || value == Py_None) {
        PyErr_SetString(PyExc_TypeError, "budget must be a positive number of bytes");
        return -1;
    }
    return fastsock_py_xfer_budget(value, &self->x);
}

static PyObject *fastsock_py_xfer_get_sock(fastsock_py_xfer *self, void *closure)
{
    (void)closure;
    Py_INCREF(self->sock);
    return self->sock;
}

static PyObject *fastsock_py_xfer_repr(fastsock_py_xfer *self)
{
    const char *state = self->closed ? "closed"
                        : self->x.want == 0 ? (self->x.error == 0 ? "done" : "failed")
                        : self->x.want == FASTSOCK_WANT_READ ? "wants read" : "wants write";
    return PyUnicode_FromFormat("<%s fd=%d %zu/%zu bytes, %s>", Py_TYPE(self)->tp_name,
                                self->x.fd, self->x.done, self->x.count, state);
}

static PyGetSetDef fastsock_py_xfer_getset[] = {
    { "done", (getter)fastsock_py_xfer_get_done, NULL,
      "True once every byte has moved (result() is ready).", NULL },
    { "ended", (getter)fastsock_py_xfer_get_ended, NULL,
      "True once the transfer is over: complete, failed (step() raises its error)\n"
      "or closed.", NULL },
    { "nbytes", (getter)fastsock_py_xfer_get_nbytes, NULL,
      "Bytes moved so far: exact at every moment, also after an error.", NULL },
    { "expected", (getter)fastsock_py_xfer_get_expected, NULL,
      "Bytes the whole transfer moves.", NULL },
    { "want", (getter)fastsock_py_xfer_get_want, NULL,
      "What to wait for before the next step: selectors.EVENT_READ (1) or\n"
      "EVENT_WRITE (2); 0 once the transfer has ended.", NULL },
    { "cycles", (getter)fastsock_py_xfer_get_cycles, NULL,
      "Data-moving system calls made so far.", NULL },
    { "budget", (getter)fastsock_py_xfer_get_budget, (setter)fastsock_py_xfer_set_budget,
      "Bytes one step moves at most (default 1 MiB), so that one connection\n"
      "can't starve the others of its loop; may be changed between steps.", NULL },
    { "sock", (getter)fastsock_py_xfer_get_sock, NULL, "The socket (or fd) given.", NULL },
    { NULL, NULL, NULL, NULL, NULL }
};

#define FASTSOCK_PY_STEP_DOC                                                                   \
    "step($self, /)\n--\n\n"                                                                   \
    "Move what can move now, without waiting; return the bytes moved (0 if\n"                  \
    "nothing was there). Call it when the socket is ready for .want.\n"                        \
    "\n"                                                                                       \
    "Raises the blocking call's errors, with .nbytes (the progress): OSError\n"                \
    "subclasses (ConnectionResetError, BrokenPipeError ...), and for a\n"                      \
    "Receiver IncompleteError when the stream ends first. Once the transfer\n"                 \
    "has ended, step() moves nothing: it returns 0, or raises that error again."

static PyMethodDef fastsock_py_receiver_methods[] = {
    { "step", (PyCFunction)fastsock_py_xfer_step, METH_NOARGS, FASTSOCK_PY_STEP_DOC },
    { "result", (PyCFunction)fastsock_py_xfer_result, METH_NOARGS,
      "result($self, /)\n--\n\n"
      "The received bytes (fresh form: the bytes object itself, no copy), or\n"
      "n (buffer form). RuntimeError while the transfer runs; a failed\n"
      "transfer raises its error." },
    { "partial", (PyCFunction)fastsock_py_xfer_partial, METH_NOARGS,
      "partial($self, /)\n--\n\n"
      "Fresh form: the bytes received so far (a copy while the transfer runs;\n"
      "once it failed or was closed, the result shrunk in place, no copy).\n"
      "Buffer form: None, the bytes are in your buffer at offset, .nbytes of\n"
      "them." },
    { "close", (PyCFunction)fastsock_py_xfer_close, METH_NOARGS,
      "close($self, /)\n--\n\n"
      "Stop the transfer for good and let go of what it holds (the buffer or\n"
      "file). A fresh Receiver's bytes so far become partial(), shrunk in\n"
      "place, without a copy. step() and result() then raise ValueError. A\n"
      "no-op once the transfer is over." },
    { "fileno", (PyCFunction)fastsock_py_xfer_fileno, METH_NOARGS,
      "fileno($self, /)\n--\n\nThe socket's fd, so that a selector can register the object itself." },
    { NULL, NULL, 0, NULL }
};

static PyMethodDef fastsock_py_sender_methods[] = {
    { "step", (PyCFunction)fastsock_py_xfer_step, METH_NOARGS, FASTSOCK_PY_STEP_DOC },
    { "result", (PyCFunction)fastsock_py_xfer_result, METH_NOARGS,
      "result($self, /)\n--\n\n"
      "The number of bytes sent, once done. RuntimeError while the transfer\n"
      "runs; a failed transfer raises its error." },
    { "from_file", (PyCFunction)(void (*)(void))fastsock_py_sender_from_file,
      METH_VARARGS | METH_KEYWORDS | METH_CLASS,
      "from_file(sock, file, offset=0, count=None, *, budget=None)\n--\n\n"
      "A Sender of a regular file's bytes [offset, offset + count) by sendfile(2),\n"
      "progressively on a non-blocking socket (socket.sendfile refuses those).\n"
      "count None: to the end of the file. file is a binary file object or an\n"
      "fd; its position is left alone (fastsock.aio.sendfile sets it as\n"
      "socket.sendfile does). A pipe is refused (ValueError): reading it could\n"
      "block the loop." },
    { "close", (PyCFunction)fastsock_py_xfer_close, METH_NOARGS,
      "close($self, /)\n--\n\n"
      "Stop the transfer for good and let go of what it holds (the buffer or\n"
      "file). A fresh Receiver's bytes so far become partial(), shrunk in\n"
      "place, without a copy. step() and result() then raise ValueError. A\n"
      "no-op once the transfer is over." },
    { "fileno", (PyCFunction)fastsock_py_xfer_fileno, METH_NOARGS,
      "fileno($self, /)\n--\n\nThe socket's fd, so that a selector can register the object itself." },
    { NULL, NULL, 0, NULL }
};

static PyType_Slot fastsock_py_receiver_slots[] = {
    { Py_tp_doc,
      "Receiver(sock, n=None, *, buffer=None, offset=0, budget=None)\n--\n\n"
      "Receive exactly n bytes progressively, for an event loop: call step()\n"
      "each time sock is readable until .done, then result().\n"
      "\n"
      "Without buffer, the bytes go into a new bytes object that no Python\n"
      "code sees before it is complete (never zero-filled, never copied:\n"
      "result() returns it). With buffer (any writable buffer), nbytes n\n"
      "(None: the rest) are written at buffer[offset:], as recvall_into does.\n"
      "sock may be blocking or not: a step never waits. An ssl.SSLSocket is\n"
      "refused (TypeError). At the end of the stream step() raises\n"
      "IncompleteError with .partial (fresh form), .expected and .nbytes." },
    { Py_tp_new, fastsock_py_receiver_new },
    { Py_tp_dealloc, fastsock_py_xfer_dealloc },
    { Py_tp_traverse, fastsock_py_xfer_traverse },
    { Py_tp_clear, fastsock_py_xfer_clear },
    { Py_tp_repr, fastsock_py_xfer_repr },
    { Py_tp_methods, fastsock_py_receiver_methods },
    { Py_tp_getset, fastsock_py_xfer_getset },
    { 0, NULL }
};

static PyType_Slot fastsock_py_sender_slots[] = {
    { Py_tp_doc,
      "Sender(sock, data, offset=0, count=None, *, budget=None)\n--\n\n"
      "Send data[offset:offset + count] progressively, for an event loop: call\n"
      "step() each time sock is writable until .done. data is any buffer, sent\n"
      "from where it lies (no slicing) and held until the transfer ends.\n"
      "Sender.from_file() sends a file by sendfile(2). A peer that is gone is\n"
      "an OSError with .nbytes, never a SIGPIPE." },
    { Py_tp_new, fastsock_py_sender_new },
    { Py_tp_dealloc, fastsock_py_xfer_dealloc },
    { Py_tp_traverse, fastsock_py_xfer_traverse },
    { Py_tp_clear, fastsock_py_xfer_clear },
    { Py_tp_repr, fastsock_py_xfer_repr },
    { Py_tp_methods, fastsock_py_sender_methods },
    { Py_tp_getset, fastsock_py_xfer_getset },
    { 0, NULL }
};

static PyType_Spec fastsock_py_receiver_spec = {
    "fastsock.Receiver", sizeof(fastsock_py_xfer), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, fastsock_py_receiver_slots
};

static PyType_Spec fastsock_py_sender_spec = {
    "fastsock.Sender", sizeof(fastsock_py_xfer), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, fastsock_py_sender_slots
};

int fastsock_py_xfer_init(PyObject *m)
{
    fastsock_py_receiver_type = (PyTypeObject *)PyType_FromSpec(&fastsock_py_receiver_spec);
    if (fastsock_py_receiver_type == NULL)
        return -1;
    fastsock_py_receiver_type->tp_vectorcall = fastsock_py_receiver_vectorcall;
    if (fastsock_py_intern_params(&fastsock_py_receiver_params) < 0)
        return -1;
    fastsock_py_sender_type = (PyTypeObject *)PyType_FromSpec(&fastsock_py_sender_spec);
    if (fastsock_py_sender_type == NULL)
        return -1;
    fastsock_py_sender_type->tp_vectorcall = fastsock_py_sender_vectorcall;
    if (fastsock_py_intern_params(&fastsock_py_sender_params) < 0)
        return -1;
    /* The module holds one reference each, these statics another. */
    Py_INCREF(fastsock_py_receiver_type);
    if (PyModule_AddObject(m, "Receiver", (PyObject *)fastsock_py_receiver_type) < 0) {
        Py_DECREF(fastsock_py_receiver_type);
        return -1;
    }
    Py_INCREF(fastsock_py_sender_type);
    if (PyModule_AddObject(m, "Sender", (PyObject *)fastsock_py_sender_type) < 0) {
        Py_DECREF(fastsock_py_sender_type);
        return -1;
    }
    return 0;
}
