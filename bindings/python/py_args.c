/*
 * Arguments as the socket module takes them: sockets and fds, timeouts in
 * seconds, buffers, sizes and offsets, and a def's keyword binding for the
 * METH_FASTCALL functions. Each fails with the exception and the words the
 * socket module (or the interpreter, for a wrong call) would use.
 */
#include "fastsock_py.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <string.h>

/* Interned once at import: looked up on every call. */
static PyObject *fastsock_py_str_fileno;
static PyObject *fastsock_py_str_gettimeout;
static PyObject *fastsock_py_str_ssl;
/* socket.socket itself: an object of exactly this type is no TLS socket and
 * has the socket module's own fileno() and gettimeout(), so the per-call
 * checks that other objects need are skipped (64-byte recv_into: they were
 * a quarter of its cost, and with ssl imported half). */
static PyTypeObject *fastsock_py_socket_type;

int fastsock_py_args_init(void)
{
    fastsock_py_str_fileno = PyUnicode_InternFromString("fileno");
    fastsock_py_str_gettimeout = PyUnicode_InternFromString("gettimeout");
    fastsock_py_str_ssl = PyUnicode_InternFromString("ssl");
    if (!fastsock_py_str_fileno || !fastsock_py_str_gettimeout || !fastsock_py_str_ssl)
        return -1;
    PyObject *socket_module = PyImport_ImportModule("socket");
    if (socket_module == NULL)
        return -1;
    PyObject *type = PyObject_GetAttrString(socket_module, "socket");
    Py_DECREF(socket_module);
    if (type == NULL)
        return -1;
    if (!PyType_Check(type)) {
        Py_DECREF(type);
        PyErr_SetString(PyExc_ImportError, "socket.socket is not a type");
        return -1;
    }
    fastsock_py_socket_type = (PyTypeObject *)type; /* kept for the module's life */
    return 0;
}

int fastsock_py_is_recv(const char *fn)
{
    return strncmp(fn, "recv", 4) == 0;
}

/* recvall, recvall_into, sendall, sendallv, sendfile and recvfile promise
 * all or nothing, which a non-blocking socket cannot give: they refuse it as
 * socket.sendfile does. Reader.readuntil may answer "not yet" instead: what
 * came stays in the Reader. */
static int fastsock_py_is_bulk(const char *fn)
{
    return strcmp(fn, "recv_into") != 0 && strcmp(fn, "send") != 0 && strcmp(fn, "readuntil") != 0;
}

/* An ssl.SSLSocket hands out its raw fd, and bytes moved on it would bypass
 * TLS. If the ssl module was never imported, no object can be one. */
int fastsock_py_refuse_tls(PyObject *obj, const char *fn)
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
int fastsock_py_fd(PyObject *obj, int *fd, const char *fn, const char *what)
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

int fastsock_py_socket(PyObject *obj, int *fd, fastsock_py_call *call, const char *fn)
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
int fastsock_py_seconds(PyObject *obj, int64_t *ms)
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
        PyObject *t = NULL;
        if (call->sock != NULL && Py_TYPE(call->sock) == fastsock_py_socket_type) {
            t = PyObject_CallMethodNoArgs(call->sock, fastsock_py_str_gettimeout);
            if (t == NULL)
                return -1;
        } else if (call->sock != NULL) {
            PyObject *meth = PyObject_GetAttr(call->sock, fastsock_py_str_gettimeout);
            if (meth == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                    return -1;
                PyErr_Clear();
            } else {
                t = PyObject_CallNoArgs(meth);
                Py_DECREF(meth);
                if (t == NULL)
                    return -1;
            }
        }
        if (t != NULL) {
            int rc = fastsock_py_seconds(t, &call->ctl.timeout_ms);
            Py_DECREF(t);
            if (rc < 0)
                return -1;
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

int fastsock_py_ctl(PyObject *timeout, fastsock_py_call *call, const char *fn)
{
    if (fastsock_py_timeout(timeout, call, fn) < 0)
        return -1;
    call->ctl.on_interrupt = fastsock_py_on_interrupt;
    call->ctl.interrupt_arg = NULL;
    return 0;
}

/* Any buffer-protocol object, never copied. The caller releases view. */
int fastsock_py_buffer(PyObject *obj, Py_buffer *view, int writable, const char *fn,
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
int fastsock_py_size(PyObject *obj, size_t *out, int is_count, const char *fn)
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

int fastsock_py_file_offset(PyObject *obj, int64_t *out, const char *fn)
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

int fastsock_py_flags(PyObject *obj, int *out)
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

int fastsock_py_intern_params(fastsock_py_params *p)
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
int fastsock_py_parse(const fastsock_py_params *p, PyObject *const *args, Py_ssize_t nargs,
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
        else if (p->nrequired == p->npos)
            PyErr_Format(PyExc_TypeError, "%s() takes %zd positional argument%s but %zd %s given",
                         p->fn, p->npos, p->npos != 1 ? "s" : "", nargs, nargs == 1 ? "was" : "were");
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
int fastsock_py_range(PyObject *sock, PyObject *buffer, int writable, PyObject *offset,
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
