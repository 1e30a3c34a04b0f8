/*
 * The protocol calls (issue 17): sendallv, the Reader, find, split and
 * split_offsets, as METH_FASTCALL functions and a type. recvfile is a SWIG
 * wrapper (swig/python.i) behind the package's def, which handles the file
 * object's buffer and position.
 *
 * sendallv takes any buffer-protocol objects and holds an export of each for
 * the whole call, so none can be resized or closed (bytearray, mmap) while
 * the core sends from it without the GIL.
 *
 * The Reader owns the core's look-ahead (fastsock_reader). A line is copied
 * into a bytes object at once: it points into the look-ahead, which the
 * next call reuses. Calls that may wait release the GIL; one that the
 * look-ahead already answers keeps it (a RESP reply's body usually came
 * with its header), since the release would cost more than the copy.
 */
#include "fastsock_py.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>

/* A search this long runs without the GIL: about a tenth of a millisecond
 * of memchr, beyond which another thread should get the interpreter. */
#define FASTSOCK_PY_SEARCH_NOGIL_BYTES ((size_t)1 << 20)
/* Buffers sendallv converts without a heap allocation: a header, a body
 * and a trailer, or a small batch of pieces. */
#define FASTSOCK_PY_IOV_STACK 16

static PyObject *fastsock_py_too_long_error;
static PyObject *fastsock_py_array_type;

/* ---- sendallv ------------------------------------------------------------------ */

static fastsock_py_params fastsock_py_sendallv_params = {
    "sendallv", 2, 2, 1, { "sock", "buffers", "timeout" }, { NULL }
};

static PyObject *fastsock_py_sendallv(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                      PyObject *kwnames)
{
    (void)self;
    const char *fn = "sendallv";
    PyObject *arg[FASTSOCK_PY_MAX_PARAMS]; /* sock, buffers, timeout */
    if (fastsock_py_parse(&fastsock_py_sendallv_params, args, nargs, kwnames, arg) < 0)
        return NULL;
    fastsock_py_call call = FASTSOCK_PY_CALL_INIT;
    int fd;
    if (fastsock_py_socket(arg[0], &fd, &call, fn) < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(arg[1], "sendallv() argument 'buffers' must be an iterable of "
                                            "bytes-like objects");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), held = 0;
    Py_buffer stack_views[FASTSOCK_PY_IOV_STACK];
    struct iovec stack_iov[FASTSOCK_PY_IOV_STACK];
    Py_buffer *views = stack_views;
    struct iovec *iov = stack_iov;
    PyObject *result = NULL;
    if (n > FASTSOCK_PY_IOV_STACK) {
        views = PyMem_New(Py_buffer, (size_t)n);
        iov = PyMem_New(struct iovec, (size_t)n);
        if (views == NULL || iov == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    /* Every buffer is checked before the first byte moves. */
    for (Py_ssize_t i = 0; i < n; i++) {
        /* A class's __buffer__ (Python 3.12) may run code that empties the
         * list on the way. */
        if (i >= PySequence_Fast_GET_SIZE(seq)) {
            PyErr_SetString(PyExc_RuntimeError, "sendallv(): the list of buffers changed size during the call");
            goto done;
        }
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (PyObject_GetBuffer(item, &views[i], PyBUF_SIMPLE) < 0) {
            if (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_BufferError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_TypeError,
                             "sendallv() argument 'buffers': item %zd is not a contiguous "
                             "bytes-like object but %.100s",
                             i, Py_TYPE(item)->tp_name);
            }
            goto done;
        }
        held++;
        iov[i].iov_base = views[i].buf;
        iov[i].iov_len = (size_t)views[i].len;
    }
    if (fastsock_py_ctl(arg[2] != NULL ? arg[2] : Py_Ellipsis, &call, fn) < 0)
        goto done;
    fastsock_result rc;
    Py_BEGIN_ALLOW_THREADS
    rc = fastsock_sendallv(fd, iov, (size_t)n, &call.ctl);
    Py_END_ALLOW_THREADS
    if (rc == FASTSOCK_ECOUNT) /* only a total beyond SSIZE_MAX */
        PyErr_SetString(PyExc_OverflowError, "sendallv(): the buffers hold more bytes than one call can send");
    else
        result = fastsock_py_result(rc, &call, fn);
done:
    for (Py_ssize_t i = 0; i < held; i++)
        PyBuffer_Release(&views[i]);
    if (views != stack_views)
        PyMem_Free(views);
    if (iov != stack_iov)
        PyMem_Free(iov);
    Py_DECREF(seq);
    return result;
}

/* ---- find, split, split_offsets --------------------------------------------------- */

/* A readable buffer and a non-empty needle or separator (what names it). */
static int fastsock_py_search_args(PyObject *hay, PyObject *needle, Py_buffer *hview,
                                   Py_buffer *nview, const char *fn, const char *what)
{
    fastsock_py_call unused = FASTSOCK_PY_CALL_INIT;
    if (fastsock_py_buffer(hay, hview, 0, fn, &unused) < 0)
        return -1;
    if (fastsock_py_buffer(needle, nview, 0, fn, &unused) < 0)
        return -1;
    if (nview->len == 0) {
        /* split would never end; find would always answer start. */
        PyErr_Format(PyExc_ValueError, "%s() argument '%s' must not be empty", fn, what);
        return -1;
    }
    return 0;
}

/* A non-negative int -> size_t, SIZE_MAX for one beyond it: for a position
 * or a limit that no buffer can reach, where a larger number means the same
 * and is no error. */
static int fastsock_py_size_or_max(PyObject *obj, size_t *out, const char *fn, const char *what)
{
    PyObject *num = PyNumber_Index(obj);
    if (num == NULL)
        return -1;
    int sign = _PyLong_Sign(num);
    size_t v = PyLong_AsSize_t(num);
    Py_DECREF(num);
    if (sign < 0) {
        PyErr_Format(PyExc_ValueError, "%s() argument '%s' must not be negative", fn, what);
        return -1;
    }
    if (v == (size_t)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();
    }
    *out = v;
    return 0;
}

static fastsock_py_params fastsock_py_find_params = {
    "find", 3, 2, 0, { "buf", "needle", "start" }, { NULL }
};

static PyObject *fastsock_py_find(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    (void)self;
    PyObject *arg[FASTSOCK_PY_MAX_PARAMS]; /* buf, needle, start */
    if (fastsock_py_parse(&fastsock_py_find_params, args, nargs, kwnames, arg) < 0)
        return NULL;
    Py_buffer hay = { 0 }, needle = { 0 };
    PyObject *result = NULL;
    size_t start = 0;
    if (fastsock_py_search_args(arg[0], arg[1], &hay, &needle, "find", "needle") < 0)
        goto done;
    /* A start beyond any buffer finds nothing. */
    if (arg[2] != NULL && fastsock_py_size_or_max(arg[2], &start, "find", "start") < 0)
        goto done;
    fastsock_result at;
    if (start < (size_t)hay.len && (size_t)hay.len - start >= FASTSOCK_PY_SEARCH_NOGIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        at = fastsock_find(hay.buf, (size_t)hay.len, start, needle.buf, (size_t)needle.len);
        Py_END_ALLOW_THREADS
    } else {
        at = fastsock_find(hay.buf, (size_t)hay.len, start, needle.buf, (size_t)needle.len);
    }
    result = PyLong_FromSsize_t(at);
done:
    PyBuffer_Release(&hay);
    PyBuffer_Release(&needle);
    return result;
}

/* The end of every field of hay split at sep, the last one len: n + 1 ends
 * for n separators, as bytes.split(sep) makes its fields. Touches no Python
 * object, so the caller may run it without the GIL. 0, or -ENOMEM. */
static int fastsock_py_field_ends(const char *hay, size_t len, const char *sep, size_t slen,
                                  uint64_t **ends, size_t *count)
{
    size_t cap = 64, n = 0, at = 0;
    uint64_t *out = PyMem_RawMalloc(cap * sizeof *out);
    if (out == NULL)
        return -ENOMEM;
    for (;;) {
        fastsock_result hit = fastsock_find(hay, len, at, sep, slen);
        if (n == cap) {
            uint64_t *grown = PyMem_RawRealloc(out, 2 * cap * sizeof *out);
            if (grown == NULL) {
                PyMem_RawFree(out);
                return -ENOMEM;
            }
            out = grown;
            cap *= 2;
        }
        out[n++] = hit < 0 ? (uint64_t)len : (uint64_t)hit;
        if (hit < 0)
            break;
        at = (size_t)hit + slen;
    }
    *ends = out;
    *count = n;
    return 0;
}

static int fastsock_py_split_ends(Py_buffer *hay, Py_buffer *sep, uint64_t **ends, size_t *count)
{
    int rc;
    if ((size_t)hay->len >= FASTSOCK_PY_SEARCH_NOGIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        rc = fastsock_py_field_ends(hay->buf, (size_t)hay->len, sep->buf, (size_t)sep->len, ends, count);
        Py_END_ALLOW_THREADS
    } else {
        rc = fastsock_py_field_ends(hay->buf, (size_t)hay->len, sep->buf, (size_t)sep->len, ends, count);
    }
    if (rc < 0)
        PyErr_NoMemory();
    return rc;
}

static fastsock_py_params fastsock_py_split_params = {
    "split", 2, 2, 0, { "buf", "sep" }, { NULL }
};
static fastsock_py_params fastsock_py_split_offsets_params = {
    "split_offsets", 2, 2, 0, { "buf", "sep" }, { NULL }
};

/* split's and split_offsets' arguments, and where their fields end; *buf is
 * the buffer argument (borrowed). */
static int fastsock_py_split_args(fastsock_py_params *params, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames, PyObject **buf, Py_buffer *hay, Py_buffer *sep,
                                  uint64_t **ends, size_t *count)
{
    PyObject *arg[FASTSOCK_PY_MAX_PARAMS]; /* buf, sep */
    if (fastsock_py_parse(params, args, nargs, kwnames, arg) < 0)
        return -1;
    *buf = arg[0];
    if (fastsock_py_search_args(arg[0], arg[1], hay, sep, params->fn, "sep") < 0)
        return -1;
    return fastsock_py_split_ends(hay, sep, ends, count);
}

static PyObject *fastsock_py_split(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    (void)self;
    Py_buffer hay = { 0 }, sep = { 0 };
    PyObject *buf, *view = NULL, *list = NULL;
    uint64_t *ends = NULL;
    size_t count = 0;
    if (fastsock_py_split_args(&fastsock_py_split_params, args, nargs, kwnames, &buf, &hay, &sep,
                               &ends, &count) < 0)
        goto done;
    /* The fields are slices of one view of buf: each holds the buffer (not a
     * copy), and offsets are bytes whatever buf's item size. */
    view = PyMemoryView_FromObject(buf);
    if (view == NULL)
        goto done;
    Py_buffer *vb = PyMemoryView_GET_BUFFER(view);
    if (vb->ndim != 1 || vb->itemsize != 1 || vb->format == NULL || strcmp(vb->format, "B") != 0)
        Py_SETREF(view, PyObject_CallMethod(view, "cast", "s", "B"));
    if (view == NULL)
        goto done;
    list = PyList_New((Py_ssize_t)count);
    if (list == NULL)
        goto done;
    size_t start = 0;
    for (size_t i = 0; i < count; i++) {
        PyObject *field = PySequence_GetSlice(view, (Py_ssize_t)start, (Py_ssize_t)ends[i]);
        if (field == NULL) {
            Py_CLEAR(list);
            goto done;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, field);
        start = (size_t)ends[i] + (size_t)sep.len;
    }
done:
    PyMem_RawFree(ends);
    Py_XDECREF(view);
    PyBuffer_Release(&hay);
    PyBuffer_Release(&sep);
    return list;
}

static PyObject *fastsock_py_split_offsets(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                           PyObject *kwnames)
{
    (void)self;
    Py_buffer hay = { 0 }, sep = { 0 };
    PyObject *buf, *array = NULL;
    uint64_t *ends = NULL;
    size_t count = 0;
    if (fastsock_py_split_args(&fastsock_py_split_offsets_params, args, nargs, kwnames, &buf, &hay, &sep,
                               &ends, &count) < 0)
        goto done;
    /* array('Q') has no C API: frombytes copies the ends in once. */
    array = PyObject_CallFunction(fastsock_py_array_type, "s", "Q");
    if (array == NULL)
        goto done;
    PyObject *raw = PyMemoryView_FromMemory((char *)ends, (Py_ssize_t)(count * sizeof *ends), PyBUF_READ);
    PyObject *ok = raw ? PyObject_CallMethod(array, "frombytes", "O", raw) : NULL;
    Py_XDECREF(raw);
    if (ok == NULL)
        Py_CLEAR(array);
    Py_XDECREF(ok);
done:
    PyMem_RawFree(ends);
    PyBuffer_Release(&hay);
    PyBuffer_Release(&sep);
    return array;
}

/* ---- Reader ----------------------------------------------------------------------- */

typedef struct fastsock_py_reader {
    PyObject_HEAD
    fastsock_reader r;
    PyObject *sock;   /* the socket object (or int): its fd, asked anew each call */
    int busy;         /* a call runs without the GIL: the look-ahead must stay put */
} fastsock_py_reader;

static PyTypeObject *fastsock_py_reader_type;

/* The socket's fd and timeout for one call; refuses a second call at once. */
static int fastsock_py_reader_begin(fastsock_py_reader *self, PyObject *timeout,
                                    fastsock_py_call *call, const char *fn)
{
    if (self->busy) {
        PyErr_Format(PyExc_RuntimeError, "Reader.%s() while another call on the Reader runs in another thread", fn);
        return -1;
    }
    if (self->sock == NULL) { /* cleared by the collector */
        PyErr_Format(PyExc_ValueError, "Reader.%s() on a Reader without its socket", fn);
        return -1;
    }
    int fd;
    if (fastsock_py_socket(self->sock, &fd, call, fn) < 0)
        return -1;
    self->r.fd = fd;
    return fastsock_py_ctl(timeout != NULL ? timeout : Py_Ellipsis, call, fn);
}

static PyObject *fastsock_py_reader_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *names[] = { "sock", NULL };
    PyObject *sock;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Reader", names, &sock))
        return NULL;
    fastsock_py_call call = FASTSOCK_PY_CALL_INIT;
    int fd;
    if (fastsock_py_socket(sock, &fd, &call, "Reader") < 0)
        return NULL;
    fastsock_py_reader *self = (fastsock_py_reader *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    fastsock_reader_init(&self->r, fd);
    Py_INCREF(sock);
    self->sock = sock;
    return (PyObject *)self;
}

static int fastsock_py_reader_traverse(fastsock_py_reader *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->sock);
    return 0;
}

static int fastsock_py_reader_clear(fastsock_py_reader *self)
{
    Py_CLEAR(self->sock);
    return 0;
}

static void fastsock_py_reader_dealloc(fastsock_py_reader *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    fastsock_py_reader_clear(self);
    fastsock_reader_release(&self->r);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

/* The look-ahead holds a whole line within max: answering needs no system
 * call, so the GIL stays. */
static int fastsock_py_reader_has_line(const fastsock_reader *r, const void *delim, size_t dlen, size_t max)
{
    size_t held = r->end - r->start, window = held < max ? held : max;
    return window >= dlen && fastsock_find(r->buf + r->start, window, 0, delim, dlen) >= 0;
}

static fastsock_py_params fastsock_py_readuntil_params = {
    "readuntil", 2, 0, 1, { "delim", "max", "timeout" }, { NULL }
};

static PyObject *fastsock_py_reader_readuntil(fastsock_py_reader *self, PyObject *const *args,
                                              Py_ssize_t nargs, PyObject *kwnames)
{
    const char *fn = "readuntil";
    PyObject *arg[FASTSOCK_PY_MAX_PARAMS]; /* delim, max, timeout */
    if (fastsock_py_parse(&fastsock_py_readuntil_params, args, nargs, kwnames, arg) < 0)
        return NULL;
    fastsock_py_call call = FASTSOCK_PY_CALL_INIT;
    Py_buffer delim = { 0 };
    PyObject *result = NULL;
    size_t max = 65536;
    const void *dbuf = "\r\n";
    size_t dlen = 2;
    if (arg[0] != NULL) {
        if (fastsock_py_buffer(arg[0], &delim, 0, fn, &call) < 0)
            goto done;
        dbuf = delim.buf;
        dlen = (size_t)delim.len;
        if (dlen == 0) {
            PyErr_SetString(PyExc_ValueError, "readuntil() argument 'delim' must not be empty");
            goto done;
        }
    }
    /* A max beyond size_t is no limit but memory. */
    if (arg[1] != NULL && fastsock_py_size_or_max(arg[1], &max, fn, "max") < 0)
        goto done;
    if (max < dlen) {
        PyErr_Format(PyExc_ValueError, "readuntil() argument 'max' (%zu) is shorter than the delimiter (%zu)",
                     max, dlen);
        goto done;
    }
    if (fastsock_py_reader_begin(self, arg[2], &call, fn) < 0)
        goto done;
    const unsigned char *line = NULL;
    fastsock_result rc;
    if (fastsock_py_reader_has_line(&self->r, dbuf, dlen, max)) {
        rc = fastsock_reader_until(&self->r, dbuf, dlen, max, &line, &call.ctl);
    } else {
        self->busy = 1;
        Py_BEGIN_ALLOW_THREADS
        rc = fastsock_reader_until(&self->r, dbuf, dlen, max, &line, &call.ctl);
        Py_END_ALLOW_THREADS
        self->busy = 0;
    }
    if (rc >= 0) {
        result = PyBytes_FromStringAndSize((const char *)line, rc);
    } else if (rc == FASTSOCK_EOF) {
        /* The partial line was handed out: it is the exception's. */
        PyObject *partial = PyBytes_FromStringAndSize((const char *)line, (Py_ssize_t)call.ctl.moved);
        if (partial != NULL) {
            PyObject *exc = fastsock_py_incomplete_line(partial);
            if (exc != NULL) {
                PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
                Py_DECREF(exc);
            }
            Py_DECREF(partial);
        }
    } else if (rc == FASTSOCK_ETOOLONG) {
        PyObject *exc = PyObject_CallFunction(fastsock_py_too_long_error, "s",
                                              "no delimiter within the maximum line length");
        if (exc != NULL) {
            fastsock_py_annotate(exc, 0, NULL);
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
    } else if (rc == -ENOMEM) {
        PyErr_NoMemory();
    } else {
        fastsock_py_raise_moved(rc, fn, 0, 0, NULL); /* nothing handed out: .nbytes 0 */
    }
done:
    PyBuffer_Release(&delim);
    return result;
}

static fastsock_py_params fastsock_py_reader_recvall_params = {
    "recvall", 1, 1, 1, { "n", "timeout" }, { NULL }
};

static PyObject *fastsock_py_reader_recvall(fastsock_py_reader *self, PyObject *const *args,
                                            Py_ssize_t nargs, PyObject *kwnames)
{
    const char *fn = "recvall";
    PyObject *arg[FASTSOCK_PY_MAX_PARAMS]; /* n, timeout */
    if (fastsock_py_parse(&fastsock_py_reader_recvall_params, args, nargs, kwnames, arg) < 0)
        return NULL;
    fastsock_py_call call = FASTSOCK_PY_CALL_INIT;
    Py_ssize_t n = fastsock_py_alloc_size(arg[0], fn);
    if (n < 0 || fastsock_py_reader_begin(self, arg[1], &call, fn) < 0)
        return NULL;
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, n); /* not zero-filled */
    if (bytes == NULL)
        return NULL;
    call.len = call.count = (size_t)n;
    char *p = PyBytes_AS_STRING(bytes);
    fastsock_result rc;
    if (fastsock_reader_buffered(&self->r) >= (size_t)n) {
        rc = fastsock_reader_recvall(&self->r, p, (size_t)n, 0, (size_t)n, &call.ctl);
    } else {
        self->busy = 1;
        Py_BEGIN_ALLOW_THREADS
        fastsock_advise_fresh(p, (size_t)n);
        rc = fastsock_reader_recvall(&self->r, p, (size_t)n, 0, (size_t)n, &call.ctl);
        Py_END_ALLOW_THREADS
        self->busy = 0;
    }
    if (rc >= 0)
        return bytes;
    fastsock_py_fresh_failed(bytes, rc, &call, fn);
    return NULL;
}

static fastsock_py_params fastsock_py_reader_recvall_into_params = {
    "recvall_into", 3, 1, 1, { "buffer", "nbytes", "offset", "timeout" }, { NULL }
};

static PyObject *fastsock_py_reader_recvall_into(fastsock_py_reader *self, PyObject *const *args,
                                                 Py_ssize_t nargs, PyObject *kwnames)
{
    const char *fn = "recvall_into";
    PyObject *arg[FASTSOCK_PY_MAX_PARAMS]; /* buffer, nbytes, offset, timeout */
    if (fastsock_py_parse(&fastsock_py_reader_recvall_into_params, args, nargs, kwnames, arg) < 0)
        return NULL;
    fastsock_py_call call = FASTSOCK_PY_CALL_INIT;
    Py_buffer view = { 0 };
    PyObject *result = NULL;
    if (fastsock_py_buffer(arg[0], &view, 1, fn, &call) < 0 ||
        (arg[1] != NULL && fastsock_py_size(arg[1], &call.count, 1, fn) < 0) ||
        (arg[2] != NULL && fastsock_py_size(arg[2], &call.offset, 0, fn) < 0) ||
        fastsock_py_reader_begin(self, arg[3], &call, fn) < 0)
        goto done;
    size_t want = call.count != FASTSOCK_ALL ? call.count
                  : call.offset <= call.len ? call.len - call.offset : 0;
    fastsock_result rc;
    if (fastsock_reader_buffered(&self->r) >= want) {
        rc = fastsock_reader_recvall(&self->r, view.buf, call.len, call.offset, call.count, &call.ctl);
    } else {
        self->busy = 1;
        Py_BEGIN_ALLOW_THREADS
        rc = fastsock_reader_recvall(&self->r, view.buf, call.len, call.offset, call.count, &call.ctl);
        Py_END_ALLOW_THREADS
        self->busy = 0;
    }
    result = fastsock_py_result(rc, &call, fn);
done:
    PyBuffer_Release(&view);
    return result;
}

static PyObject *fastsock_py_reader_get_buffered(fastsock_py_reader *self, void *closure)
{
    (void)closure;
    return PyLong_FromSize_t(fastsock_reader_buffered(&self->r));
}

static PyObject *fastsock_py_reader_repr(fastsock_py_reader *self)
{
    return PyUnicode_FromFormat("<fastsock.Reader fd=%d, %zu bytes buffered>", self->r.fd,
                                fastsock_reader_buffered(&self->r));
}

static PyGetSetDef fastsock_py_reader_getset[] = {
    { "buffered", (getter)fastsock_py_reader_get_buffered, NULL,
      "Bytes the Reader has read from the socket and not yet handed out: they\n"
      "come first in the next call (the socket no longer has them).", NULL },
    { NULL, NULL, NULL, NULL, NULL }
};

static PyMethodDef fastsock_py_reader_methods[] = {
    { "readuntil", (PyCFunction)(void (*)(void))fastsock_py_reader_readuntil, METH_FASTCALL | METH_KEYWORDS,
      "readuntil($self, /, delim=b'\\r\\n', max=65536, *, timeout=...)\n--\n\n"
      "Read up to and including the first delim within max bytes; return that\n"
      "line as bytes, delim included.\n"
      "\n"
      "It takes what the socket has in one receive (16 KiB at first) and keeps\n"
      "what came after the line for the next call: recvall() and recvall_into()\n"
      "start with it, then receive the rest straight from the socket. delim is\n"
      "any non-empty bytes-like object; max counts the delimiter too.\n"
      "timeout bounds the whole call (... is the socket's own,\n"
      "sock.gettimeout()); 0 never waits (BlockingIOError when no\n"
      "whole line is there yet; what came stays in the Reader).\n"
      "\n"
      "Raises:\n"
      "    TooLongError: no delim within max bytes; nothing is consumed, the\n"
      "        Reader still holds the bytes (.buffered).\n"
      "    IncompleteError: the stream ended first; .partial is the partial\n"
      "        line (handed out), .expected None.\n"
      "    TimeoutError, BlockingIOError, OSError (ConnectionResetError ...):\n"
      "        nothing handed out (.nbytes 0); what came stays buffered, and a\n"
      "        later call goes on from there.\n"
      "    ValueError: an empty delim, max negative or shorter than delim." },
    { "recvall", (PyCFunction)(void (*)(void))fastsock_py_reader_recvall, METH_FASTCALL | METH_KEYWORDS,
      "recvall($self, /, n, *, timeout=...)\n--\n\n"
      "Exactly n bytes, as bytes: the buffered ones first, then the rest\n"
      "straight from the socket into the result (one allocation, no second\n"
      "copy). Errors as fastsock.recvall's: IncompleteError with .partial,\n"
      "TimeoutError and OSError with .nbytes and .partial, ValueError for a\n"
      "negative n or a non-blocking socket." },
    { "recvall_into", (PyCFunction)(void (*)(void))fastsock_py_reader_recvall_into, METH_FASTCALL | METH_KEYWORDS,
      "recvall_into($self, /, buffer, nbytes=None, offset=0, *, timeout=...)\n--\n\n"
      "Exactly nbytes (None: the rest of buffer) into buffer[offset:], the\n"
      "buffered bytes first; return nbytes. Errors as fastsock.recvall_into's." },
    { NULL, NULL, 0, NULL }
};

static PyType_Slot fastsock_py_reader_slots[] = {
    { Py_tp_doc,
      "Reader(sock)\n--\n\n"
      "A protocol reader over sock: a line or header block up to a delimiter\n"
      "(readuntil), then a body of known length (recvall, recvall_into).\n"
      "\n"
      "It owns a look-ahead buffer: a short reply costs the one receive that\n"
      "brought it, and a large body goes from the socket straight into its\n"
      "result. What the Reader read past a line is its own, not the\n"
      "socket's: read the rest of the stream through it. sock is a socket,\n"
      "an object with fileno() or an int fd; an ssl.SSLSocket is refused." },
    { Py_tp_new, fastsock_py_reader_new },
    { Py_tp_dealloc, fastsock_py_reader_dealloc },
    { Py_tp_traverse, fastsock_py_reader_traverse },
    { Py_tp_clear, fastsock_py_reader_clear },
    { Py_tp_repr, fastsock_py_reader_repr },
    { Py_tp_methods, fastsock_py_reader_methods },
    { Py_tp_getset, fastsock_py_reader_getset },
    { 0, NULL }
};

static PyType_Spec fastsock_py_reader_spec = {
    "fastsock.Reader", sizeof(fastsock_py_reader), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, fastsock_py_reader_slots
};

/* ---- the module ------------------------------------------------------------------- */

static PyMethodDef fastsock_py_protocol_methods[] = {
    { "sendallv", (PyCFunction)(void (*)(void))fastsock_py_sendallv, METH_FASTCALL | METH_KEYWORDS,
      "sendallv($module, /, sock, buffers, *, timeout=...)\n--\n\n"
      "Send the buffers one after the other as one stream; return the total.\n"
      "\n"
      "buffers is an iterable of bytes-like objects (bytes, bytearray,\n"
      "memoryview, array, mmap ...), sent from where they lie with sendmsg(2),\n"
      "up to 256 per system call: no join, no slicing. timeout: seconds for\n"
      "the whole call, None for no limit; ... (the default) is the socket's\n"
      "own, sock.gettimeout().\n"
      "\n"
      "Raises:\n"
      "    TimeoutError, OSError (BrokenPipeError, ConnectionResetError ...):\n"
      "        with .nbytes, the bytes sent in all.\n"
      "    TypeError: an item is not a contiguous bytes-like object (before\n"
      "        any byte moves).\n"
      "    ValueError: a non-blocking socket." },
    { "find", (PyCFunction)(void (*)(void))fastsock_py_find, METH_FASTCALL | METH_KEYWORDS,
      "find($module, /, buf, needle, start=0)\n--\n\n"
      "The offset of the first needle in buf[start:], or -1: bytes.find over\n"
      "any buffer (bytearray, memoryview, mmap ...) without a copy. Offsets\n"
      "are bytes whatever the item size. ValueError for an empty needle or a\n"
      "negative start." },
    { "split", (PyCFunction)(void (*)(void))fastsock_py_split, METH_FASTCALL | METH_KEYWORDS,
      "split($module, /, buf, sep)\n--\n\n"
      "buf split at every sep, as bytes.split(sep) splits (n separators, n + 1\n"
      "fields, empty ones included), into a list of memoryviews of buf: no\n"
      "field is copied. ValueError for an empty sep." },
    { "split_offsets", (PyCFunction)(void (*)(void))fastsock_py_split_offsets, METH_FASTCALL | METH_KEYWORDS,
      "split_offsets($module, /, buf, sep)\n--\n\n"
      "Where split(buf, sep)'s fields end, as an array('Q'), without an object\n"
      "per field: field i is buf[start:ends[i]], start 0 for the first and\n"
      "ends[i - 1] + len(sep) after it; the last end is len(buf). ValueError\n"
      "for an empty sep." },
    { NULL, NULL, 0, NULL }
};

int fastsock_py_protocol_init(PyObject *m)
{
    if (fastsock_py_intern_params(&fastsock_py_sendallv_params) < 0 ||
        fastsock_py_intern_params(&fastsock_py_find_params) < 0 ||
        fastsock_py_intern_params(&fastsock_py_split_params) < 0 ||
        fastsock_py_intern_params(&fastsock_py_split_offsets_params) < 0 ||
        fastsock_py_intern_params(&fastsock_py_readuntil_params) < 0 ||
        fastsock_py_intern_params(&fastsock_py_reader_recvall_params) < 0 ||
        fastsock_py_intern_params(&fastsock_py_reader_recvall_into_params) < 0)
        return -1;
    PyObject *array_module = PyImport_ImportModule("array");
    if (array_module == NULL)
        return -1;
    fastsock_py_array_type = PyObject_GetAttrString(array_module, "array"); /* kept for the module's life */
    Py_DECREF(array_module);
    if (fastsock_py_array_type == NULL)
        return -1;
    if (fastsock_py_add_functions(m, fastsock_py_protocol_methods) < 0)
        return -1;

    fastsock_py_too_long_error = PyErr_NewExceptionWithDoc(
        "fastsock.TooLongError",
        "Reader.readuntil() found no delimiter within max bytes.\n\n"
        "A ValueError. Nothing was consumed: the Reader still holds the bytes\n"
        "it read (Reader.buffered), so a call with a larger max, or recvall(),\n"
        "goes on from the same place. .nbytes is 0.",
        PyExc_ValueError, NULL);
    if (fastsock_py_too_long_error == NULL)
        return -1;
    Py_INCREF(fastsock_py_too_long_error); /* the module's, and this static's */
    if (PyModule_AddObject(m, "TooLongError", fastsock_py_too_long_error) < 0) {
        Py_DECREF(fastsock_py_too_long_error);
        return -1;
    }

    fastsock_py_reader_type = (PyTypeObject *)PyType_FromSpec(&fastsock_py_reader_spec);
    if (fastsock_py_reader_type == NULL)
        return -1;
    Py_INCREF(fastsock_py_reader_type);
    if (PyModule_AddObject(m, "Reader", (PyObject *)fastsock_py_reader_type) < 0) {
        Py_DECREF(fastsock_py_reader_type);
        return -1;
    }
    return 0;
}
