/*
 * The core's results as the socket module's exceptions: OSError(errno, msg)
 * picks the subclass (ConnectionResetError, BrokenPipeError ...), a timeout
 * is TimeoutError('timed out'), the end of the stream fastsock.IncompleteError;
 * every one carries .nbytes, the bytes that moved, and recvall's .partial.
 */
#include "fastsock_py.h"

#include <errno.h>
#include <string.h>

static PyObject *fastsock_py_str_nbytes;
static PyObject *fastsock_py_str_partial;
/* fastsock.IncompleteError, registered by the package at import. */
static PyObject *fastsock_py_incomplete_error;

int fastsock_py_errors_init(void)
{
    fastsock_py_str_nbytes = PyUnicode_InternFromString("nbytes");
    fastsock_py_str_partial = PyUnicode_InternFromString("partial");
    return fastsock_py_str_nbytes && fastsock_py_str_partial ? 0 : -1;
}

PyObject *fastsock_py_incomplete(PyObject *partial, size_t expected, size_t nbytes)
{
    PyObject *cls = fastsock_py_incomplete_error ? fastsock_py_incomplete_error : PyExc_EOFError;
    return PyObject_CallFunction(cls, "Onn", partial ? partial : Py_None, (Py_ssize_t)expected,
                                 (Py_ssize_t)nbytes);
}

PyObject *fastsock_py_incomplete_line(PyObject *partial)
{
    PyObject *cls = fastsock_py_incomplete_error ? fastsock_py_incomplete_error : PyExc_EOFError;
    return PyObject_CallFunction(cls, "OOn", partial, Py_None, PyBytes_GET_SIZE(partial));
}

void fastsock_py_set_errno(int err)
{
    /* OSError(errno, message) picks the subclass (ConnectionResetError, ...)
     * exactly as the socket module's errors do. */
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "is", err, strerror(err));
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

static void fastsock_py_set_attr(PyObject *exc, PyObject *name, PyObject *value)
{
    /* Best effort: an exception type without a __dict__ keeps its message. */
    if (value == NULL || PyObject_SetAttr(exc, name, value) < 0)
        PyErr_Clear();
}

/* Tells how much moved on an exception, and for recvall which bytes. */
void fastsock_py_annotate(PyObject *exc, size_t moved, PyObject *partial)
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

void fastsock_py_raise(fastsock_result rc, const fastsock_py_call *call, const char *fn,
                       PyObject *partial)
{
    size_t expected = call->count == FASTSOCK_ALL ? call->len - call->offset : call->count;
    fastsock_py_raise_moved(rc, fn, call->ctl.moved, expected, partial);
}

void fastsock_py_raise_moved(fastsock_result rc, const char *fn, size_t moved, size_t expected,
                             PyObject *partial)
{
    int recv = fastsock_py_is_recv(fn);
    PyObject *exc = NULL;
    if (rc == -EINTR && PyErr_Occurred()) {
        fastsock_py_annotate_pending(moved, partial);
        return;
    }
    switch (fastsock_classify(rc)) {
    case FASTSOCK_KIND_RANGE:
        if (rc == FASTSOCK_EOFFSET)
            PyErr_Format(PyExc_ValueError, "%s() argument 'offset' is greater than the length of the %s",
                         fn, recv ? "buffer" : "data");
        else if (strcmp(fn, "recv_into") == 0) /* socket.recv_into's words */
            PyErr_SetString(PyExc_ValueError, "buffer too small for requested bytes");
        else if (recv)
            PyErr_Format(PyExc_ValueError,
                         "%s() argument 'nbytes': offset + nbytes is greater than the length of the buffer",
                         fn);
        else
            PyErr_Format(PyExc_ValueError,
                         "%s() argument 'count': offset + count is greater than the length of the data", fn);
        return;
    case FASTSOCK_KIND_CLOSED:
        exc = fastsock_py_incomplete(partial, expected, moved);
        break;
    case FASTSOCK_KIND_TIMEOUT:
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

PyObject *fastsock_py_result(fastsock_result rc, const fastsock_py_call *call, const char *fn)
{
    if (rc < 0) {
        fastsock_py_raise(rc, call, fn, NULL);
        return NULL;
    }
    return PyLong_FromSsize_t(rc);
}

PyObject *fastsock_py_set_incomplete_error(PyObject *cls)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, (PyTypeObject *)PyExc_EOFError)) {
        PyErr_SetString(PyExc_TypeError, "IncompleteError must be a subclass of EOFError");
        return NULL;
    }
    Py_INCREF(cls);
    Py_XSETREF(fastsock_py_incomplete_error, cls);
    Py_RETURN_NONE;
}
