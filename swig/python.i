/*
 * Python entry file: Python's typemaps for the language-neutral interface.
 *
 * The extension is fastsock._fastsock; the fastsock package (bindings/python)
 * gives it keyword arguments, docstrings and IncompleteError. Users never
 * call it directly, except recv_into and send: event loops call them once
 * per message, so they are written by hand below with their keywords and
 * documentation, and the package exports them as they are (a def in
 * between was a fifth of a 64-byte recv_into's cost: bench/README.md).
 *
 * Every function's first argument is SOCK, so its typemap declares the one
 * per-call record (`call`, which SWIG names `call1`) that the later typemaps
 * fill in and read: the socket object (for its timeout), the buffer's length,
 * offset and count (for error messages) and the ctl the core updates.
 *
 * Build with `swig -threads`: every wrapper keeps the GIL (%nothread) except
 * the transfers, which release it once around the whole core call. recvall
 * allocates its result with the GIL held and so releases it itself.
 */
%module(package="fastsock") _fastsock

%begin %{
#define PY_SSIZE_T_CLEAN
%}

%{
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fastsock.h"

#ifndef SWIG_PYTHON_THREADS
#error "fastsock's Python module must be generated with swig -threads: the transfers release the GIL"
#endif

typedef struct fastsock_py_call {
    PyObject *sock;   /* borrowed; NULL when the socket was an int fd */
    size_t len;       /* of the buffer, once converted */
    size_t offset;
    size_t count;     /* FASTSOCK_ALL: to the end */
    fastsock_ctl ctl;
} fastsock_py_call;

#define FASTSOCK_PY_CALL_INIT { NULL, 0, 0, FASTSOCK_ALL, FASTSOCK_CTL_INIT }

/* Interned once at import: looked up on every call. */
static PyObject *fastsock_py_str_fileno;
static PyObject *fastsock_py_str_gettimeout;
static PyObject *fastsock_py_str_ssl;
/* socket.socket itself: an object of exactly this type is no TLS socket and
 * has the socket module's own fileno() and gettimeout(), so the per-call
 * checks that other objects need are skipped (64-byte recv_into: they were
 * a quarter of its cost, and with ssl imported half). */
static PyTypeObject *fastsock_py_socket_type;
static PyObject *fastsock_py_str_nbytes;
static PyObject *fastsock_py_str_partial;
/* fastsock.IncompleteError, registered by the package at import. */
static PyObject *fastsock_py_incomplete_error;

static int fastsock_py_is_recv(const char *fn)
{
    return strncmp(fn, "recv", 4) == 0;
}

/* recvall, recvall_into, sendall and sendfile promise all or nothing, which a
 * non-blocking socket cannot give: they refuse it as socket.sendfile does. */
static int fastsock_py_is_bulk(const char *fn)
{
    return strcmp(fn, "recv_into") != 0 && strcmp(fn, "send") != 0;
}

static void fastsock_py_set_errno(int err)
{
    /* OSError(errno, message) picks the subclass (ConnectionResetError, ...)
     * exactly as the socket module's errors do. */
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "is", err, strerror(err));
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

/* An ssl.SSLSocket hands out its raw fd, and bytes moved on it would bypass
 * TLS. If the ssl module was never imported, no object can be one. */
static int fastsock_py_refuse_tls(PyObject *obj, const char *fn)
{
    /* sys.modules directly: PyImport_GetModule also asks the module's spec
     * whether it is still initializing, which costs a raised and cleared
     * AttributeError on every call. */
    PyObject *ssl = PyDict_GetItemWithError(PyImport_GetModuleDict(), fastsock_py_str_ssl);
    if (ssl == NULL)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *cls = PyObject_GetAttrString(ssl, "SSLSocket");
    if (cls == NULL) {
        PyErr_Clear();
        return 0;
    }
    int is_tls = PyObject_IsInstance(obj, cls);
    Py_DECREF(cls);
    if (is_tls > 0)
        PyErr_Format(PyExc_TypeError,
                     "%s() cannot use an ssl.SSLSocket: raw bytes would bypass TLS; "
                     "use the SSLSocket's own methods", fn);
    return is_tls != 0 ? -1 : 0;
}

/* A socket.socket, anything with fileno(), or an int fd. */
static int fastsock_py_fd(PyObject *obj, int *fd, const char *fn, const char *what)
{
    PyObject *num;
    if (PyLong_Check(obj)) {
        num = obj;
        Py_INCREF(num);
    } else if (Py_TYPE(obj) == fastsock_py_socket_type) {
        num = PyObject_CallMethodNoArgs(obj, fastsock_py_str_fileno);
        if (num == NULL)
            return -1;
    } else {
        PyObject *meth = PyObject_GetAttr(obj, fastsock_py_str_fileno);
        if (meth == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                return -1;
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError,
                         "%s() argument '%s' must be a %s, an object with fileno() or an int, not %.100s",
                         fn, what, strcmp(what, "sock") == 0 ? "socket" : "file",
                         Py_TYPE(obj)->tp_name);
            return -1;
        }
        num = PyObject_CallNoArgs(meth);
        Py_DECREF(meth);
        if (num == NULL)
            return -1;
        if (!PyLong_Check(num)) {
            PyErr_Format(PyExc_TypeError, "fileno() returned %.100s, not int", Py_TYPE(num)->tp_name);
            Py_DECREF(num);
            return -1;
        }
    }
    int overflow;
    long v = PyLong_AsLongAndOverflow(num, &overflow);
    Py_DECREF(num);
    if (v == -1 && PyErr_Occurred())
        return -1;
    /* A closed socket.socket reports -1: the socket module's own calls fail
     * with EBADF then, and so do these. */
    if (overflow != 0 || v < 0 || v > INT_MAX) {
        fastsock_py_set_errno(EBADF);
        return -1;
    }
    *fd = (int)v;
    return 0;
}

static int fastsock_py_socket(PyObject *obj, int *fd, fastsock_py_call *call, const char *fn)
{
    if (!PyLong_Check(obj)) {
        if (Py_TYPE(obj) != fastsock_py_socket_type && fastsock_py_refuse_tls(obj, fn) < 0)
            return -1;
        call->sock = obj;
    }
    return fastsock_py_fd(obj, fd, fn, "sock");
}

/* Seconds (int, float) or None -> milliseconds, rounded up as the socket
 * module rounds timeouts; -1 for None. */
static int fastsock_py_seconds(PyObject *obj, int64_t *ms)
{
    if (obj == Py_None) {
        *ms = -1;
        return 0;
    }
    double s = PyFloat_AsDouble(obj);
    if (s == -1.0 && PyErr_Occurred())
        return -1;
    if (isnan(s)) {
        PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
        return -1;
    }
    if (s < 0) {
        PyErr_SetString(PyExc_ValueError, "Timeout value out of range");
        return -1;
    }
    double v = ceil(s * 1000.0);
    if (v >= 9.2e18) {
        PyErr_SetString(PyExc_OverflowError, "timeout too large");
        return -1;
    }
    *ms = (int64_t)v;
    return 0;
}

/* The timeout argument: Ellipsis means the socket's own gettimeout(). */
static int fastsock_py_timeout(PyObject *obj, fastsock_py_call *call, const char *fn)
{
    int own = obj == Py_Ellipsis;
    if (own) {
        call->ctl.timeout_ms = -1; /* an int fd, or an object without gettimeout */
        if (call->sock != NULL && Py_TYPE(call->sock) == fastsock_py_socket_type) {
            PyObject *t = PyObject_CallMethodNoArgs(call->sock, fastsock_py_str_gettimeout);
            if (t == NULL)
                return -1;
            int rc = fastsock_py_seconds(t, &call->ctl.timeout_ms);
            Py_DECREF(t);
            if (rc < 0)
                return -1;
        } else if (call->sock != NULL) {
            PyObject *meth = PyObject_GetAttr(call->sock, fastsock_py_str_gettimeout);
            if (meth == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                    return -1;
                PyErr_Clear();
            } else {
                PyObject *t = PyObject_CallNoArgs(meth);
                Py_DECREF(meth);
                if (t == NULL)
                    return -1;
                int rc = fastsock_py_seconds(t, &call->ctl.timeout_ms);
                Py_DECREF(t);
                if (rc < 0)
                    return -1;
            }
        }
    } else if (fastsock_py_seconds(obj, &call->ctl.timeout_ms) < 0) {
        return -1;
    }
    if (call->ctl.timeout_ms == 0 && fastsock_py_is_bulk(fn)) {
        if (own)
            PyErr_SetString(PyExc_ValueError, "non-blocking sockets are not supported");
        else
            PyErr_Format(PyExc_ValueError,
                         "%s() does not support timeout=0: it moves all or nothing; "
                         "use recv_into() or send() for non-blocking use", fn);
        return -1;
    }
    return 0;
}

/* Runs the signal handlers while a transfer waits without the GIL (PEP 475):
 * the transfer resumes unless one raised, and then stops with its exception
 * pending, to be raised once the GIL is back. */
static int fastsock_py_on_interrupt(void *arg)
{
    (void)arg;
    PyGILState_STATE gil = PyGILState_Ensure();
    int rc = PyErr_CheckSignals();
    PyGILState_Release(gil);
    return rc < 0 ? -EINTR : 0;
}

static int fastsock_py_ctl(PyObject *timeout, fastsock_py_call *call, const char *fn)
{
    if (fastsock_py_timeout(timeout, call, fn) < 0)
        return -1;
    call->ctl.on_interrupt = fastsock_py_on_interrupt;
    call->ctl.interrupt_arg = NULL;
    return 0;
}

/* Any buffer-protocol object, never copied. The caller releases view. */
static int fastsock_py_buffer(PyObject *obj, Py_buffer *view, int writable, const char *fn,
                              fastsock_py_call *call)
{
    if (PyObject_GetBuffer(obj, view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0) {
        /* Read-only or not a buffer at all: a TypeError, as socket.recv_into
         * and socket.send say. */
        if (!PyErr_ExceptionMatches(PyExc_TypeError) && !PyErr_ExceptionMatches(PyExc_BufferError))
            return -1;
        PyErr_Clear();
        if (writable)
            PyErr_Format(PyExc_TypeError,
                         "%s() argument 'buffer' must be read-write bytes-like object, not %.100s",
                         fn, Py_TYPE(obj)->tp_name);
        else
            PyErr_Format(PyExc_TypeError, "a bytes-like object is required, not '%.100s'",
                         Py_TYPE(obj)->tp_name);
        return -1;
    }
    call->len = (size_t)view->len;
    return 0;
}

/* A non-negative int -> size_t. For counts, None means "to the end". */
static int fastsock_py_size(PyObject *obj, size_t *out, int is_count, const char *fn)
{
    const char *name = is_count ? (fastsock_py_is_recv(fn) ? "nbytes" : "count") : "offset";
    if (is_count && obj == Py_None) {
        *out = FASTSOCK_ALL;
        return 0;
    }
    PyObject *num = PyNumber_Index(obj);
    if (num == NULL)
        return -1;
    int sign = _PyLong_Sign(num);
    if (sign < 0) {
        Py_DECREF(num);
        if (is_count && strcmp(fn, "recv_into") == 0)
            PyErr_SetString(PyExc_ValueError, "negative buffersize in recv_into");
        else
            PyErr_Format(PyExc_ValueError, "%s() argument '%s' must not be negative", fn, name);
        return -1;
    }
    size_t v = PyLong_AsSize_t(num);
    Py_DECREF(num);
    if (v == (size_t)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();
    }
    /* Beyond any buffer; and SIZE_MAX must not turn into FASTSOCK_ALL. Left
     * to the core, which refuses it with the range error. */
    *out = v == FASTSOCK_ALL ? FASTSOCK_ALL - 1 : v;
    return 0;
}

static int fastsock_py_file_offset(PyObject *obj, int64_t *out, const char *fn)
{
    PyObject *num = PyNumber_Index(obj);
    if (num == NULL)
        return -1;
    long long v = PyLong_AsLongLong(num);
    Py_DECREF(num);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0) {
        PyErr_Format(PyExc_ValueError, "%s() argument 'offset' must not be negative", fn);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

static void fastsock_py_set_attr(PyObject *exc, PyObject *name, PyObject *value)
{
    /* Best effort: an exception type without a __dict__ keeps its message. */
    if (value == NULL || PyObject_SetAttr(exc, name, value) < 0)
        PyErr_Clear();
}

/* Tells how much moved on an exception, and for recvall which bytes. */
static void fastsock_py_annotate(PyObject *exc, size_t moved, PyObject *partial)
{
    PyObject *n = PyLong_FromSize_t(moved);
    fastsock_py_set_attr(exc, fastsock_py_str_nbytes, n);
    Py_XDECREF(n);
    if (partial != NULL)
        fastsock_py_set_attr(exc, fastsock_py_str_partial, partial);
}

/* A signal handler raised during the transfer: its exception is pending. */
static void fastsock_py_annotate_pending(size_t moved, PyObject *partial)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
    fastsock_py_annotate(exc, moved, partial);
    PyErr_SetRaisedException(exc);
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL)
        PyException_SetTraceback(value, tb);
    if (value != NULL)
        fastsock_py_annotate(value, moved, partial);
    PyErr_Restore(type, value, tb);
#endif
}

/* Raises the Python error for a negative core result. partial: recvall's
 * bytes received so far (NULL for the other calls). */
static void fastsock_py_raise(fastsock_result rc, const fastsock_py_call *call, const char *fn,
                              PyObject *partial)
{
    size_t moved = call->ctl.moved;
    int recv = fastsock_py_is_recv(fn);
    PyObject *exc = NULL;
    if (rc == -EINTR && PyErr_Occurred()) {
        fastsock_py_annotate_pending(moved, partial);
        return;
    }
    switch (rc) {
    case FASTSOCK_EOFFSET:
        PyErr_Format(PyExc_ValueError, "%s() argument 'offset' is greater than the length of the %s",
                     fn, recv ? "buffer" : "data");
        return;
    case FASTSOCK_ECOUNT:
        if (strcmp(fn, "recv_into") == 0) /* socket.recv_into's words */
            PyErr_SetString(PyExc_ValueError, "buffer too small for requested bytes");
        else if (recv)
            PyErr_Format(PyExc_ValueError,
                         "%s() argument 'nbytes': offset + nbytes is greater than the length of the buffer",
                         fn);
        else
            PyErr_Format(PyExc_ValueError,
                         "%s() argument 'count': offset + count is greater than the length of the data", fn);
        return;
    case FASTSOCK_EOF: {
        size_t expected = call->count == FASTSOCK_ALL ? call->len - call->offset : call->count;
        PyObject *cls = fastsock_py_incomplete_error ? fastsock_py_incomplete_error : PyExc_EOFError;
        exc = PyObject_CallFunction(cls, "Onn", partial ? partial : Py_None, (Py_ssize_t)expected,
                                    (Py_ssize_t)moved);
        break;
    }
    case -ETIMEDOUT:
        exc = PyObject_CallFunction(PyExc_TimeoutError, "s", "timed out");
        break;
    default:
        exc = PyObject_CallFunction(PyExc_OSError, "is", (int)-rc, fastsock_strerror(rc));
        break;
    }
    if (exc == NULL)
        return;
    fastsock_py_annotate(exc, moved, partial);
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
}

static int fastsock_py_flags(PyObject *obj, int *out)
{
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < INT_MIN || v > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "flags out of range");
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* recvall: one bytes object at the final size, filled in place by the core
 * without the GIL; on failure shrunk (no copy) to what arrived. */
static PyObject *fastsock_py_recvall(int fd, PyObject *n_obj, fastsock_ctl *ctl)
{
    /* The RECVALL_CTL typemap hands over the ctl inside the call record. */
    fastsock_py_call *call = (fastsock_py_call *)((char *)ctl - offsetof(fastsock_py_call, ctl));
    PyObject *num = PyNumber_Index(n_obj);
    if (num == NULL)
        return NULL;
    int sign = _PyLong_Sign(num);
    Py_ssize_t n = PyLong_AsSsize_t(num);
    Py_DECREF(num);
    if (sign < 0) {
        PyErr_SetString(PyExc_ValueError, "recvall() argument 'n' must not be negative");
        return NULL;
    }
    if (n == -1 && PyErr_Occurred()) {
        /* More than any allocation can hold: the same MemoryError as a size
         * that fits but cannot be allocated. */
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_MemoryError, "recvall() cannot allocate %R bytes", n_obj);
        }
        return NULL;
    }
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, n); /* not zero-filled */
    if (bytes == NULL)
        return NULL;
    call->len = call->count = (size_t)n;
    fastsock_result rc;
    Py_BEGIN_ALLOW_THREADS
    /* Huge pages and pre-faulting: a fresh 256 MiB result otherwise fills at
     * a fifth of a hot buffer's speed (bench/README.md). */
    fastsock_advise_fresh(PyBytes_AS_STRING(bytes), (size_t)n);
    rc = fastsock_recvall(fd, PyBytes_AS_STRING(bytes), (size_t)n, 0, (size_t)n, ctl);
    Py_END_ALLOW_THREADS
    if (rc >= 0)
        return bytes;
    /* A signal handler's exception may be pending: resize with it set aside.
     * Shrinking reallocates in place (mremap for large sizes): no copy. */
    int resized;
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *pending = PyErr_GetRaisedException();
    resized = _PyBytes_Resize(&bytes, (Py_ssize_t)ctl->moved);
    if (resized < 0)
        Py_XDECREF(pending);
    else
        PyErr_SetRaisedException(pending);
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    resized = _PyBytes_Resize(&bytes, (Py_ssize_t)ctl->moved);
    if (resized < 0) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
    } else {
        PyErr_Restore(type, value, tb);
    }
#endif
    if (resized < 0)
        return NULL; /* bytes is gone and MemoryError set */
    fastsock_py_raise(rc, call, "recvall", bytes);
    Py_DECREF(bytes);
    return NULL;
}

/* ---- recv_into and send: C functions with keywords ---------------------- */

/* A def's parameters: npos positional-or-keyword (the first nrequired
 * without a default, at least one with: "takes from 2 to 4 positional
 * arguments"), then nkwonly keyword-only ones with defaults. */
#define FASTSOCK_PY_MAX_PARAMS 5
typedef struct fastsock_py_params {
    const char *fn;
    Py_ssize_t npos, nrequired, nkwonly;
    const char *names[FASTSOCK_PY_MAX_PARAMS];
    PyObject *keys[FASTSOCK_PY_MAX_PARAMS]; /* names, interned at import */
} fastsock_py_params;

static fastsock_py_params fastsock_py_recv_into_params = {
    "recv_into", 4, 2, 1, { "sock", "buffer", "nbytes", "flags", "offset" }, { NULL }
};
static fastsock_py_params fastsock_py_send_params = {
    "send", 4, 2, 0, { "sock", "data", "offset", "count" }, { NULL }
};

static int fastsock_py_intern_params(fastsock_py_params *p)
{
    for (Py_ssize_t i = 0; i < p->npos + p->nkwonly; i++) {
        p->keys[i] = PyUnicode_InternFromString(p->names[i]);
        if (p->keys[i] == NULL)
            return -1;
    }
    return 0;
}

/* "'a'", "'a' and 'b'", "'a', 'b', and 'c'": the interpreter's list of
 * missing arguments. */
static PyObject *fastsock_py_missing_names(const fastsock_py_params *p, PyObject **out,
                                           Py_ssize_t missing)
{
    PyObject *text = PyUnicode_FromString("");
    Py_ssize_t seen = 0;
    for (Py_ssize_t i = 0; text != NULL && i < p->nrequired; i++) {
        if (out[i] != NULL)
            continue;
        seen++;
        const char *sep = seen == 1 ? "" : missing == 2 ? " and " : seen == missing ? ", and " : ", ";
        Py_SETREF(text, PyUnicode_FromFormat("%U%s'%s'", text, sep, p->names[i]));
    }
    return text;
}

/* Binds a vectorcall's arguments to p's parameters as the interpreter binds
 * a def's, in its order and with its messages for a wrong call: these
 * functions were defs in the package, and callers may match on the errors.
 * A parameter not given stays NULL (borrowed references otherwise). */
static int fastsock_py_parse(const fastsock_py_params *p, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames, PyObject **out)
{
    Py_ssize_t total = p->npos + p->nkwonly;
    for (Py_ssize_t i = 0; i < total; i++)
        out[i] = i < nargs && i < p->npos ? args[i] : NULL;
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        Py_ssize_t j = 0;
        while (j < total && key != p->keys[j])
            j++;
        if (j == total) {
            if (!PyUnicode_Check(key)) {
                PyErr_Format(PyExc_TypeError, "%s() keywords must be strings", p->fn);
                return -1;
            }
            for (j = 0; j < total; j++) {
                int eq = PyObject_RichCompareBool(key, p->keys[j], Py_EQ);
                if (eq < 0)
                    return -1;
                if (eq)
                    break;
            }
        }
        if (j == total) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%S'", p->fn, key);
            return -1;
        }
        if (out[j] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%S'", p->fn, key);
            return -1;
        }
        out[j] = args[nargs + k];
    }
    if (nargs > p->npos) {
        Py_ssize_t kwonly = 0;
        for (Py_ssize_t i = p->npos; i < total; i++)
            kwonly += out[i] != NULL;
        if (kwonly > 0)
            PyErr_Format(PyExc_TypeError,
                         "%s() takes from %zd to %zd positional arguments but %zd positional "
                         "argument%s (and %zd keyword-only argument%s) were given",
                         p->fn, p->nrequired, p->npos, nargs, nargs != 1 ? "s" : "", kwonly,
                         kwonly != 1 ? "s" : "");
        else
            PyErr_Format(PyExc_TypeError,
                         "%s() takes from %zd to %zd positional arguments but %zd %s given",
                         p->fn, p->nrequired, p->npos, nargs, nargs == 1 ? "was" : "were");
        return -1;
    }
    Py_ssize_t missing = 0;
    for (Py_ssize_t i = nargs; i < p->nrequired; i++)
        missing += out[i] == NULL;
    if (missing > 0) {
        PyObject *names = fastsock_py_missing_names(p, out, missing);
        if (names != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing %zd required positional argument%s: %U",
                         p->fn, missing, missing != 1 ? "s" : "", names);
            Py_DECREF(names);
        }
        return -1;
    }
    return 0;
}

/* The steps every transfer's typemaps take, in their order: the socket,
 * the buffer, the offset and the count (NULL: not given). The caller
 * releases view, also on failure. */
static int fastsock_py_range(PyObject *sock, PyObject *buffer, int writable, PyObject *offset,
                             PyObject *count, const char *fn, int *fd, Py_buffer *view,
                             fastsock_py_call *call)
{
    if (fastsock_py_socket(sock, fd, call, fn) < 0 ||
        fastsock_py_buffer(buffer, view, writable, fn, call) < 0)
        return -1;
    if (offset != NULL && fastsock_py_size(offset, &call->offset, 0, fn) < 0)
        return -1;
    if (count != NULL && fastsock_py_size(count, &call->count, 1, fn) < 0)
        return -1;
    return 0;
}

static PyObject *fastsock_py_result(fastsock_result rc, const fastsock_py_call *call, const char *fn)
{
    if (rc < 0) {
        fastsock_py_raise(rc, call, fn, NULL);
        return NULL;
    }
    return PyLong_FromSsize_t(rc);
}

static PyObject *fastsock_py_recv_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames)
{
    const char *fn = "recv_into";
    PyObject *arg[FASTSOCK_PY_MAX_PARAMS]; /* sock, buffer, nbytes, flags, offset */
    if (fastsock_py_parse(&fastsock_py_recv_into_params, args, nargs, kwnames, arg) < 0)
        return NULL;
    /* nbytes 0 is the rest of the buffer, as for socket.recv_into; so is any
     * false value, which the package's `nbytes or None` let through. */
    if (arg[2] != NULL) {
        int given = PyObject_IsTrue(arg[2]);
        if (given < 0)
            return NULL;
        if (!given)
            arg[2] = NULL;
    }
    fastsock_py_call call = FASTSOCK_PY_CALL_INIT;
    Py_buffer view = { 0 };
    PyObject *result = NULL;
    int fd, flags = 0;
    if (fastsock_py_range(arg[0], arg[1], 1, arg[4], arg[2], fn, &fd, &view, &call) == 0 &&
        (arg[3] == NULL || fastsock_py_flags(arg[3], &flags) == 0) &&
        fastsock_py_ctl(Py_Ellipsis, &call, fn) == 0) {
        fastsock_result rc;
        Py_BEGIN_ALLOW_THREADS
        rc = fastsock_recv(fd, view.buf, (size_t)view.len, call.offset, call.count, flags, &call.ctl);
        Py_END_ALLOW_THREADS
        result = fastsock_py_result(rc, &call, fn);
    }
    PyBuffer_Release(&view);
    return result;
}

static PyObject *fastsock_py_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    const char *fn = "send";
    PyObject *arg[FASTSOCK_PY_MAX_PARAMS]; /* sock, data, offset, count */
    if (fastsock_py_parse(&fastsock_py_send_params, args, nargs, kwnames, arg) < 0)
        return NULL;
    fastsock_py_call call = FASTSOCK_PY_CALL_INIT;
    Py_buffer view = { 0 };
    PyObject *result = NULL;
    int fd;
    if (fastsock_py_range(arg[0], arg[1], 0, arg[2], arg[3], fn, &fd, &view, &call) == 0 &&
        fastsock_py_ctl(Py_Ellipsis, &call, fn) == 0) {
        fastsock_result rc;
        Py_BEGIN_ALLOW_THREADS
        rc = fastsock_send(fd, view.buf, (size_t)view.len, call.offset, call.count, &call.ctl);
        Py_END_ALLOW_THREADS
        result = fastsock_py_result(rc, &call, fn);
    }
    PyBuffer_Release(&view);
    return result;
}

/* The documentation the package's defs had; the first line is the
 * signature inspect and help() show. */
static PyMethodDef fastsock_py_methods[] = {
    { "recv_into", (PyCFunction)(void (*)(void))fastsock_py_recv_into, METH_FASTCALL | METH_KEYWORDS,
      "recv_into($module, /, sock, buffer, nbytes=0, flags=0, *, offset=0)\n--\n\n"
      "Receive up to nbytes into buffer at offset, in one receive; return the count.\n"
      "\n"
      "The same as ``sock.recv_into(buffer, nbytes, flags)`` plus offset: it\n"
      "waits (within the socket's timeout) until something arrives, returns 0\n"
      "at the end of the stream, and nbytes 0 means the rest of the buffer.\n"
      "On a non-blocking socket it never waits and raises BlockingIOError when\n"
      "nothing is there, for the selectors pattern without slicing:\n"
      "``got = recv_into(sock, buf, n - off, offset=off)``.\n"
      "\n"
      "Raises:\n"
      "    TimeoutError: nothing arrived within the socket's timeout.\n"
      "    BlockingIOError: non-blocking socket, nothing to read.\n"
      "    OSError: as ``socket.recv_into`` raises it.\n"
      "    ValueError: nbytes is negative or greater than the buffer after\n"
      "        offset (\"buffer too small for requested bytes\", as socket says).\n"
      "    TypeError: buffer is read-only or not a contiguous buffer." },
    { "send", (PyCFunction)(void (*)(void))fastsock_py_send, METH_FASTCALL | METH_KEYWORDS,
      "send($module, /, sock, data, offset=0, count=None)\n--\n\n"
      "Send what one system call takes of data[offset:offset + count]; return that count.\n"
      "\n"
      "data is any buffer (bytes, bytearray, memoryview, array, mmap ...); the\n"
      "range is sent from where it lies, without slicing. count None means to\n"
      "the end. Like ``sock.send``, it waits (within the socket's timeout) until\n"
      "the socket is writable; on a non-blocking socket it raises\n"
      "BlockingIOError instead of waiting. A peer that is gone is an OSError\n"
      "(BrokenPipeError, ConnectionResetError), never a SIGPIPE.\n"
      "\n"
      "Raises:\n"
      "    TimeoutError, BlockingIOError, OSError: as ``socket.send`` raises\n"
      "        them, with ``.nbytes`` (0).\n"
      "    ValueError: a negative offset or count, or a range beyond data." },
    { NULL, NULL, 0, NULL }
};

static PyObject *fastsock_py_set_incomplete_error(PyObject *cls)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, (PyTypeObject *)PyExc_EOFError)) {
        PyErr_SetString(PyExc_TypeError, "IncompleteError must be a subclass of EOFError");
        return NULL;
    }
    Py_INCREF(cls);
    Py_XSETREF(fastsock_py_incomplete_error, cls);
    Py_RETURN_NONE;
}
%}

%init %{
    fastsock_py_str_fileno = PyUnicode_InternFromString("fileno");
    fastsock_py_str_gettimeout = PyUnicode_InternFromString("gettimeout");
    fastsock_py_str_ssl = PyUnicode_InternFromString("ssl");
    fastsock_py_str_nbytes = PyUnicode_InternFromString("nbytes");
    fastsock_py_str_partial = PyUnicode_InternFromString("partial");
    if (!fastsock_py_str_fileno || !fastsock_py_str_gettimeout || !fastsock_py_str_ssl ||
        !fastsock_py_str_nbytes || !fastsock_py_str_partial)
        return NULL;
    {
        PyObject *socket_module = PyImport_ImportModule("socket");
        if (socket_module == NULL)
            return NULL;
        PyObject *type = PyObject_GetAttrString(socket_module, "socket");
        Py_DECREF(socket_module);
        if (type == NULL)
            return NULL;
        if (!PyType_Check(type)) {
            Py_DECREF(type);
            PyErr_SetString(PyExc_ImportError, "socket.socket is not a type");
            return NULL;
        }
        fastsock_py_socket_type = (PyTypeObject *)type; /* kept for the module's life */
    }
    if (fastsock_py_intern_params(&fastsock_py_recv_into_params) < 0 ||
        fastsock_py_intern_params(&fastsock_py_send_params) < 0)
        return NULL;
    {
        /* __module__ "fastsock", where users find them: pickle and help()
         * look them up there. */
        PyObject *package = PyUnicode_InternFromString("fastsock");
        if (package == NULL)
            return NULL;
        for (PyMethodDef *def = fastsock_py_methods; def->ml_name != NULL; def++) {
            PyObject *func = PyCFunction_NewEx(def, m, package);
            if (func == NULL || PyModule_AddObject(m, def->ml_name, func) < 0) {
                Py_XDECREF(func);
                Py_DECREF(package);
                return NULL;
            }
        }
        Py_DECREF(package);
    }
%}

/* ---- typemaps, by parameter name (see fastsock.i) ------------------------ */

%typemap(in) int SOCK (fastsock_py_call call = FASTSOCK_PY_CALL_INIT) {
    if (fastsock_py_socket($input, &$1, &call, "$symname") < 0)
        SWIG_fail;
}

%typemap(in) int FILE {
    if (fastsock_py_fd($input, &$1, "$symname", "file") < 0)
        SWIG_fail;
}

%typemap(in) (void *BUF, size_t LEN) (Py_buffer view = {0}) {
    if (fastsock_py_buffer($input, &view, 1, "$symname", &call1) < 0)
        SWIG_fail;
    $1 = view.buf;
    $2 = (size_t)view.len;
}
%typemap(freearg) (void *BUF, size_t LEN) {
    PyBuffer_Release(&view$argnum);
}

%typemap(in) (const void *DATA, size_t LEN) (Py_buffer view = {0}) {
    if (fastsock_py_buffer($input, &view, 0, "$symname", &call1) < 0)
        SWIG_fail;
    $1 = view.buf;
    $2 = (size_t)view.len;
}
%typemap(freearg) (const void *DATA, size_t LEN) {
    PyBuffer_Release(&view$argnum);
}

%typemap(in) size_t OFFSET {
    if (fastsock_py_size($input, &$1, 0, "$symname") < 0)
        SWIG_fail;
    call1.offset = $1;
}

%typemap(in) int64_t OFFSET {
    if (fastsock_py_file_offset($input, &$1, "$symname") < 0)
        SWIG_fail;
}

%typemap(in) size_t COUNT {
    if (fastsock_py_size($input, &$1, 1, "$symname") < 0)
        SWIG_fail;
    call1.count = $1;
}

/* The timeout: seconds, None for no limit, Ellipsis for the socket's own. */
%typemap(in) fastsock_ctl *CTL, fastsock_ctl *RECVALL_CTL {
    if (fastsock_py_ctl($input, &call1, "$symname") < 0)
        SWIG_fail;
    $1 = &call1.ctl;
}

%typemap(out) fastsock_result {
    $result = fastsock_py_result($1, &call1, "$symname");
    if ($result == NULL)
        SWIG_fail;
}

/* ---- the operations -------------------------------------------------------- */

/* The GIL stays held except across the transfers. */
%nothread;
%thread fastsock_recvall;
%thread fastsock_sendall;
%thread fastsock_sendfile;

/* Written by hand above (fastsock_py_methods). With their parameter lists,
 * these outrank the interface's plain %renames. */
%ignore fastsock_recv(int, void *, size_t, size_t, size_t, int, fastsock_ctl *);
%ignore fastsock_send(int, const void *, size_t, size_t, size_t, fastsock_ctl *);

%include "fastsock.i"

%rename(recvall) fastsock_py_recvall;
PyObject *fastsock_py_recvall(int SOCK, PyObject *n_obj, fastsock_ctl *RECVALL_CTL);

%rename(_set_incomplete_error) fastsock_py_set_incomplete_error;
PyObject *fastsock_py_set_incomplete_error(PyObject *cls);
