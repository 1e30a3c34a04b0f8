/*
 * The transfers written by hand: recvall, whose result is a bytes object
 * allocated at its final size and filled in place, and recv_into and send,
 * which event loops call once per message, as METH_FASTCALL functions with
 * a def's keywords and documentation (a def in front of SWIG's wrapper was a
 * fifth of a 64-byte recv_into's cost: bench/README.md). The rest of the
 * module is SWIG's wrappers over swig/fastsock.i, with the typemaps of
 * swig/python.i.
 */
#include "fastsock_py.h"

#include <errno.h>
#include <stddef.h>

Py_ssize_t fastsock_py_alloc_size(PyObject *n_obj, const char *fn)
{
    PyObject *num = PyNumber_Index(n_obj);
    if (num == NULL)
        return -1;
    int sign = _PyLong_Sign(num);
    Py_ssize_t n = PyLong_AsSsize_t(num);
    Py_DECREF(num);
    if (sign < 0) {
        PyErr_Format(PyExc_ValueError, "%s() argument 'n' must not be negative", fn);
        return -1;
    }
    if (n == -1 && PyErr_Occurred()) {
        /* More than any allocation can hold: the same MemoryError as a size
         * that fits but cannot be allocated. */
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_MemoryError, "%s() cannot allocate %R bytes", fn, n_obj);
        }
        return -1;
    }
    return n;
}

void fastsock_py_fresh_failed(PyObject *bytes, fastsock_result rc, const fastsock_py_call *call,
                              const char *fn)
{
    /* A signal handler's exception may be pending: resize with it set aside.
     * Shrinking reallocates in place (mremap for large sizes): no copy. */
    int resized;
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *pending = PyErr_GetRaisedException();
    resized = _PyBytes_Resize(&bytes, (Py_ssize_t)call->ctl.moved);
    if (resized < 0)
        Py_XDECREF(pending);
    else
        PyErr_SetRaisedException(pending);
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    resized = _PyBytes_Resize(&bytes, (Py_ssize_t)call->ctl.moved);
    if (resized < 0) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
    } else {
        PyErr_Restore(type, value, tb);
    }
#endif
    if (resized < 0)
        return; /* bytes is gone and MemoryError set */
    fastsock_py_raise(rc, call, fn, bytes);
    Py_DECREF(bytes);
}

/* recvall: one bytes object at the final size, filled in place by the core
 * without the GIL; on failure shrunk (no copy) to what arrived. */
static PyObject *fastsock_py_recvall_fd(int fd, PyObject *n_obj, fastsock_py_call *call)
{
    fastsock_ctl *ctl = &call->ctl;
    Py_ssize_t n = fastsock_py_alloc_size(n_obj, "recvall");
    if (n < 0)
        return NULL;
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, n); /* not zero-filled */
    if (bytes == NULL)
        return NULL;
    call->len = call->count = (size_t)n;
    char *buf = PyBytes_AS_STRING(bytes);
    /* A small receive whose bytes are there already (a length prefix, a
     * header) costs one recv with the GIL held, as socket.recv does:
     * releasing and taking the GIL around it cost as much again. */
    fastsock_result rc = fastsock_recvall_try(fd, buf, (size_t)n, 0, (size_t)n, ctl);
    if (rc == 0) {
        size_t first = ctl->moved;
        Py_BEGIN_ALLOW_THREADS
        /* Huge pages and pre-faulting: a fresh 256 MiB result otherwise fills
         * at a fifth of a hot buffer's speed (bench/README.md). */
        fastsock_advise_fresh(buf, (size_t)n);
        rc = fastsock_recvall(fd, buf, (size_t)n, first, (size_t)n - first, ctl);
        Py_END_ALLOW_THREADS
        ctl->moved += first;
    }
    if (rc >= 0)
        return bytes;
    fastsock_py_fresh_failed(bytes, rc, call, "recvall");
    return NULL;
}

/* ---- recv_into and send: C functions with keywords ---------------------- */

static fastsock_py_params fastsock_py_recv_into_params = {
    "recv_into", 4, 2, 1, { "sock", "buffer", "nbytes", "flags", "offset" }, { NULL }
};
static fastsock_py_params fastsock_py_send_params = {
    "send", 4, 2, 0, { "sock", "data", "offset", "count" }, { NULL }
};
static fastsock_py_params fastsock_py_recvall_params = {
    "recvall", 3, 2, 0, { "sock", "n", "timeout" }, { NULL }
};

/* A C function, not SWIG's wrapper: a small recvall whose bytes are there
 * costs one recv, and the wrapper's argument handling cost about as much
 * (bench/run.py, issue 18). The package's def gives it its signature. */
static PyObject *fastsock_py_recvall(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
    (void)self;
    const char *fn = "recvall";
    PyObject *arg[FASTSOCK_PY_MAX_PARAMS]; /* sock, n, timeout */
    if (fastsock_py_parse(&fastsock_py_recvall_params, args, nargs, kwnames, arg) < 0)
        return NULL;
    fastsock_py_call call = FASTSOCK_PY_CALL_INIT;
    int fd;
    if (fastsock_py_socket(arg[0], &fd, &call, fn) < 0 ||
        fastsock_py_ctl(arg[2] ? arg[2] : Py_Ellipsis, &call, fn) < 0)
        return NULL;
    return fastsock_py_recvall_fd(fd, arg[1], &call);
}

static PyObject *fastsock_py_recv_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames)
{
    (void)self;
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

static fastsock_py_params fastsock_py_sendall_params = {
    "sendall", 5, 2, 0, { "sock", "data", "offset", "count", "timeout" }, { NULL }
};

/* sendall's C part (the package's def gives it its signature). A small
 * range the socket has room for goes in one send with the GIL held: the
 * core's own first try would make the same send after the GIL's release,
 * which costs more than the send (bench/run.py, 64-byte sends). */
static PyObject *fastsock_py_sendall(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
    (void)self;
    const char *fn = "sendall";
    PyObject *arg[FASTSOCK_PY_MAX_PARAMS]; /* sock, data, offset, count, timeout */
    if (fastsock_py_parse(&fastsock_py_sendall_params, args, nargs, kwnames, arg) < 0)
        return NULL;
    fastsock_py_call call = FASTSOCK_PY_CALL_INIT;
    Py_buffer view = { 0 };
    PyObject *result = NULL;
    int fd;
    if (fastsock_py_range(arg[0], arg[1], 0, arg[2], arg[3], fn, &fd, &view, &call) == 0 &&
        fastsock_py_ctl(arg[4] ? arg[4] : Py_Ellipsis, &call, fn) == 0) {
        size_t len = (size_t)view.len;
        fastsock_result rc = fastsock_sendall_try(fd, view.buf, len, call.offset, call.count, &call.ctl);
        if (rc == 0) {
            size_t first = call.ctl.moved;
            size_t count = call.count == FASTSOCK_ALL ? FASTSOCK_ALL : call.count - first;
            Py_BEGIN_ALLOW_THREADS
            rc = fastsock_sendall(fd, view.buf, len, call.offset + first, count, &call.ctl);
            Py_END_ALLOW_THREADS
            call.ctl.moved += first;
        }
        if (rc >= 0)
            rc = (fastsock_result)call.ctl.moved;
        result = fastsock_py_result(rc, &call, fn);
    }
    PyBuffer_Release(&view);
    return result;
}

static PyObject *fastsock_py_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    (void)self;
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
    { "sendall", (PyCFunction)(void (*)(void))fastsock_py_sendall, METH_FASTCALL | METH_KEYWORDS,
      "sendall($module, sock, data, offset=0, count=None, timeout=..., /)\n--\n\n"
      "fastsock.sendall's C part: timeout Ellipsis is the socket's own." },
    { "recvall", (PyCFunction)(void (*)(void))fastsock_py_recvall, METH_FASTCALL | METH_KEYWORDS,
      "recvall($module, sock, n, timeout=..., /)\n--\n\n"
      "fastsock.recvall's C part: timeout Ellipsis is the socket's own." },
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

int fastsock_py_add_functions(PyObject *m, PyMethodDef *defs)
{
    /* __module__ "fastsock", where users find them: pickle and help() look
     * them up there. */
    PyObject *package = PyUnicode_InternFromString("fastsock");
    if (package == NULL)
        return -1;
    for (PyMethodDef *def = defs; def->ml_name != NULL; def++) {
        PyObject *func = PyCFunction_NewEx(def, m, package);
        if (func == NULL || PyModule_AddObject(m, def->ml_name, func) < 0) {
            Py_XDECREF(func);
            Py_DECREF(package);
            return -1;
        }
    }
    Py_DECREF(package);
    return 0;
}

int fastsock_py_init(PyObject *m)
{
    if (fastsock_py_args_init() < 0 || fastsock_py_errors_init() < 0 ||
        fastsock_py_intern_params(&fastsock_py_recv_into_params) < 0 ||
        fastsock_py_intern_params(&fastsock_py_send_params) < 0 ||
        fastsock_py_intern_params(&fastsock_py_recvall_params) < 0 ||
        fastsock_py_intern_params(&fastsock_py_sendall_params) < 0)
        return -1;
    if (fastsock_py_add_functions(m, fastsock_py_methods) < 0 || fastsock_py_protocol_init(m) < 0)
        return -1;
    return fastsock_py_xfer_init(m);
}
