"""Bulk socket I/O with few copies and few system calls.

fastsock moves bytes between sockets and Python buffers in C, on one buffer
allocated once, with the GIL released for the whole transfer:

    data = fastsock.recvall(sock, n)              # exactly n bytes, one allocation
    fastsock.recvall_into(sock, buf, n, offset)   # into your own buffer
    fastsock.sendall(sock, data, offset, count)   # no slicing copy
    fastsock.sendfile(sock, file)                 # the kernel copies
    fastsock.sendallv(sock, [head, body, tail])   # one stream, no join
    fastsock.recvfile(sock, file, n)              # socket to file, in the kernel

and for protocols: ``Reader(sock)`` reads a line up to a delimiter, then a
body straight from the socket (``readuntil``, ``recvall``); ``find``,
``split`` and ``split_offsets`` search any buffer without copying it.

A ``sock`` is a ``socket.socket``, any object with ``fileno()``, or an int
file descriptor. Its own timeout (``sock.gettimeout()``) bounds each whole
operation unless ``timeout=`` is given; an int fd has no timeout. Errors are
the ``OSError`` subclasses the socket module raises, and an error after part
of a transfer tells how much moved: ``.nbytes`` on the exception, and for
``recvall`` ``.partial``, the bytes themselves.

For event loops and non-blocking sockets: ``Receiver`` and ``Sender`` are
stepped each time the socket is ready (any loop: selectors, Tornado,
Twisted ...), and ``fastsock.aio`` has the same calls as awaitables for
asyncio and uvloop.
"""

import errno as _errno
import fcntl as _fcntl
import io as _io
import operator as _operator
import os as _os
import socket as _socket
import stat as _stat
import sys as _sys
import time as _time

from . import _fastsock

__version__ = _fastsock.VERSION  # the top-level VERSION file, compiled in

__all__ = [
    "IncompleteError",
    "recvall",
    "recvall_into",
    "recv_into",
    "send",
    "sendall",
    "sendfile",
    "recvall_cycles",
    "Receiver",
    "Sender",
    "sendallv",
    "recvfile",
    "Reader",
    "TooLongError",
    "find",
    "split",
    "split_offsets",
]


class IncompleteError(EOFError):
    """The stream ended before the requested number of bytes arrived.

    Like ``asyncio.IncompleteReadError``: ``partial`` holds the bytes that did
    arrive (``recvall``) and ``expected`` the number asked for. For
    ``recvall_into`` the bytes are already in your buffer: ``partial`` is
    None and ``nbytes`` tells how many were written at the offset. For
    ``Reader.readuntil``, ``partial`` is the line the stream cut short and
    ``expected`` is None; for ``recvfile`` the ``nbytes`` bytes are in the
    file.
    """

    def __init__(self, partial, expected, nbytes=None):
        if nbytes is None:
            nbytes = len(partial) if partial is not None else 0
        total = "undefined" if expected is None else repr(expected)  # a line: asyncio's word
        super().__init__(f"{nbytes} bytes read on a total of {total} expected bytes")
        self.partial = partial
        self.expected = expected
        self.nbytes = nbytes

    def __reduce__(self):
        return type(self), (self.partial, self.expected, self.nbytes)


_fastsock._set_incomplete_error(IncompleteError)


class _SocketTimeout:
    """The default timeout: the socket's own, as sock.gettimeout() reports it."""

    __slots__ = ()

    def __repr__(self):
        return "<sock.gettimeout()>"


_OWN = _SocketTimeout()

def recvall(sock, n, *, timeout=_OWN):
    """Receive exactly n bytes from sock and return them as bytes.

    The result is allocated once, at its final size, and filled in place
    without the GIL: no zero-fill, no chunks to join, no second copy.

    timeout: seconds for the whole call, or None for no limit; by default
    the socket's own (``sock.gettimeout()``). A non-blocking socket
    (timeout 0) is refused with ValueError, as ``socket.sendfile`` does.

    Raises:
        IncompleteError: the stream ended first; ``.partial`` holds what came.
        TimeoutError: the timeout passed (``'timed out'``).
        OSError: ConnectionResetError and the like, as the socket module
            raises them. Every error after the transfer started carries
            ``.nbytes`` and ``.partial``, and so does an exception raised by
            a signal handler that interrupted it.
        ValueError: n is negative. MemoryError: n bytes can't be allocated.
        TypeError: sock is not a socket, an object with fileno() or an int
            (an ssl.SSLSocket is refused: its bytes would bypass TLS).
    """
    return _fastsock.recvall(sock, n, ... if timeout is _OWN else timeout)


def recvall_into(sock, buffer, nbytes=None, offset=0, *, timeout=_OWN):
    """Receive exactly nbytes into buffer[offset:offset + nbytes]; return nbytes.

    buffer is any writable, contiguous buffer (bytearray, memoryview, array,
    mmap, numpy array ...); it is written in place, never copied. Sizes and
    offsets are in bytes whatever the buffer's item size. nbytes None means
    the rest of the buffer after offset. The bytes outside the range are
    never touched.

    timeout: as for recvall.

    Raises:
        IncompleteError: the stream ended first; ``.nbytes`` bytes were
            written at offset (``.partial`` is None: they are in buffer).
        TimeoutError, OSError: as for recvall, with ``.nbytes``.
        ValueError: a negative size, or a range that does not fit buffer.
        TypeError: buffer is read-only or not a contiguous buffer.
    """
    return _fastsock.recvall_into(sock, buffer, offset, nbytes, ... if timeout is _OWN else timeout)


# C functions, keywords and documentation included (swig/python.i): event
# loops call them once per message, where a def in between costs too much.
recv_into = _fastsock.recv_into
send = _fastsock.send

# The progressive transfers for event loops (bindings/python/py_xfer.c);
# fastsock.aio drives them for asyncio and uvloop.
Receiver = _fastsock.Receiver
Sender = _fastsock.Sender

# The protocol calls (bindings/python/py_protocol.c): C functions and a type,
# keywords and documentation included. sendallv takes its timeout as the
# defs below do (keyword-only, the socket's own by default).
sendallv = _fastsock.sendallv
Reader = _fastsock.Reader
TooLongError = _fastsock.TooLongError
find = _fastsock.find
split = _fastsock.split
split_offsets = _fastsock.split_offsets


def sendall(sock, data, offset=0, count=None, *, timeout=_OWN):
    """Send all of data[offset:offset + count]; return the number of bytes sent.

    No slicing: the range is sent from where it lies. count None means to
    the end. timeout: as for recvall; it bounds the whole call.

    Raises:
        TimeoutError, OSError: with ``.nbytes``, the bytes that were sent.
        ValueError: a negative offset or count, a range beyond data, or a
            non-blocking socket.
    """
    return _fastsock.sendall(sock, data, offset, count, ... if timeout is _OWN else timeout)


def sendfile(sock, file, offset=0, count=None):
    """Send a file with sendfile(2) and return the number of bytes sent.

    A drop-in for ``sock.sendfile(file, offset, count)``: the same arguments,
    exceptions and messages, and the same file position afterwards
    (``offset + sent`` whenever something was sent, also after an error; then
    ``file.tell()`` or the exception's ``.nbytes`` tells how much). file is a
    binary file object or an int fd. Where the kernel can't serve the file
    (a pipe, another socket) the bytes are read and sent in C; a file object
    without a real file behind it (``io.BytesIO``) is read and sent through
    its ``read`` method. The whole call is bounded by the socket's timeout.
    Non-blocking sockets are not supported (ValueError).

    Raises:
        TimeoutError, OSError: with ``.nbytes``.
        ValueError: a text-mode file, a socket that is not SOCK_STREAM,
            count <= 0, a negative offset, a non-blocking socket.
        TypeError: count is not an int.
    """
    fileno = _sendfile_fileno(sock, file, count)
    if fileno is None:
        return _sendfile_by_read(sock, file, offset, count)
    sent = 0
    try:
        sent = _fastsock.sendfile(sock, fileno, offset, count, ...)
    except BaseException as exc:
        sent = getattr(exc, "nbytes", 0)
        raise
    finally:
        if sent > 0:
            _set_position(file, fileno, offset + sent)
    return sent


def recvfile(sock, file, count, offset=None, *, timeout=_OWN):
    """Receive exactly count bytes from sock into file; return count.

    The bytes go from the socket into the file with splice(2), without
    passing through Python or user space; where splice can't serve (a file
    opened for appending, a pipe, another platform) they are received and
    written in C. file is a binary file object or an int fd; a file
    object's own write buffer is flushed first.

    offset is the byte offset in the file where the bytes go; None means
    the file's current position (``file.tell()``). Afterwards the position
    is ``offset + moved`` whenever bytes moved, also after an error, as
    ``sendfile`` leaves it. A file opened for appending, or a pipe, is
    written where it stands: offset must then be None (or 0).

    timeout: as for recvall; it bounds the whole call.

    Raises:
        IncompleteError: the stream ended first; ``.nbytes`` bytes are in
            the file (``.partial`` is None).
        TimeoutError, OSError: with ``.nbytes``, the bytes written; what
            was written stays written.
        io.UnsupportedOperation: file is not open for writing (an OSError
            with errno EBADF, and a ValueError); nothing was received.
        ValueError: a negative count or offset, an offset for a file
            opened for appending or a pipe, a text-mode file, a
            non-blocking socket.
    """
    if "b" not in getattr(file, "mode", "b"):
        raise ValueError("file should be opened in binary mode")
    count = _operator.index(count)
    if count < 0:
        raise ValueError("recvfile() argument 'count' must not be negative")
    if count > _sys.maxsize:
        raise ValueError("recvfile() argument 'count' is beyond what one call can move")
    if isinstance(file, int):
        fileno = file
    else:
        flush = getattr(file, "flush", None)
        if flush is not None:
            flush()
        fileno = file.fileno()
    st = _os.fstat(fileno)
    appending = _fcntl.fcntl(fileno, _fcntl.F_GETFL) & _os.O_APPEND
    positioned = (_stat.S_ISREG(st.st_mode) or _stat.S_ISBLK(st.st_mode)) and not appending
    if offset is None:
        if not positioned:
            offset = 0  # written where it stands
        elif isinstance(file, int):
            offset = _os.lseek(fileno, 0, _os.SEEK_CUR)
        else:
            offset = file.tell()
    else:
        offset = _operator.index(offset)
    moved = 0
    try:
        moved = _fastsock.recvfile(sock, fileno, offset, count, ... if timeout is _OWN else timeout)
    except OSError as exc:
        moved = getattr(exc, "nbytes", 0)
        if exc.errno == _errno.EBADF and moved == 0 and not _writable(fileno):
            raise _io.UnsupportedOperation(
                _errno.EBADF, "recvfile(): the file is not open for writing") from None
        if exc.errno == _errno.ESPIPE:
            raise ValueError("recvfile() argument 'offset': a file opened for appending, or a "
                             "pipe, is written where it stands (offset None)") from None
        raise
    except BaseException as exc:
        moved = getattr(exc, "nbytes", 0)
        raise
    finally:
        if moved > 0 and positioned:
            _set_written_position(file, fileno, offset + moved)
    return moved


def _writable(fileno):
    try:
        return _fcntl.fcntl(fileno, _fcntl.F_GETFL) & _os.O_ACCMODE != _os.O_RDONLY
    except OSError:
        return False  # not open at all: no file to write either


def _set_written_position(file, fileno, position):
    # The file changed under a file object that may hold a read-ahead of the
    # old bytes; a seek from the end drops it (a seek within the buffer would
    # keep it), then the position is set.
    if isinstance(file, int):
        _os.lseek(fileno, position, _os.SEEK_SET)
    elif hasattr(file, "seek"):
        file.seek(0, _os.SEEK_END)
        file.seek(position)


def recvall_cycles():
    """How many recv system calls the last recvall/recvall_into of this thread made."""
    return _fastsock.recvall_cycles()


def _set_position(file, fileno, position):
    # socket.sendfile leaves file at offset + sent; a pipe has no position.
    try:
        if not _stat.S_ISREG(_os.fstat(fileno).st_mode):
            return
    except OSError:
        return
    if isinstance(file, int):
        _os.lseek(file, position, _os.SEEK_SET)
    elif hasattr(file, "seek"):
        file.seek(position)


def _socket_timeout(sock):
    if isinstance(sock, int):
        return None
    gettimeout = getattr(sock, "gettimeout", None)
    return gettimeout() if gettimeout is not None else None


_READ_BLOCK = 256 * 1024


def _sendfile_by_read(sock, file, offset, count):
    # socket.sendfile's fallback for file objects without a file descriptor,
    # with one deadline for the whole call instead of one per send.
    offset = _os_index(offset)
    timeout = _socket_timeout(sock)
    if timeout == 0:
        raise ValueError("non-blocking sockets are not supported")
    deadline = None if timeout is None else _time.monotonic() + timeout
    if offset:
        file.seek(offset)
    total = 0
    try:
        while True:
            block = _READ_BLOCK if count is None else min(count - total, _READ_BLOCK)
            if block <= 0:
                break
            data = file.read(block)
            if not data:
                break
            left = None
            if deadline is not None:
                left = deadline - _time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out")
            try:
                total += _fastsock.sendall(sock, data, 0, None, left)
            except BaseException as exc:
                total += getattr(exc, "nbytes", 0)
                raise
        return total
    except BaseException as exc:
        try:
            exc.nbytes = total
        except AttributeError:
            pass
        raise
    finally:
        if total > 0 and hasattr(file, "seek"):
            file.seek(offset + total)


def _sendfile_fileno(sock, file, count):
    # socket.sendfile's checks and messages, shared with fastsock.aio's
    # sendfile; None: a file object without a descriptor, which is read.
    if "b" not in getattr(file, "mode", "b"):
        raise ValueError("file should be opened in binary mode")
    kind = getattr(sock, "type", None)
    if isinstance(kind, int) and not kind & _socket.SOCK_STREAM:
        raise ValueError("only SOCK_STREAM type sockets are supported")
    if count is not None:
        if not isinstance(count, int):
            raise TypeError("count must be a positive integer (got {!r})".format(count))
        if count <= 0:
            raise ValueError("count must be a positive integer (got {!r})".format(count))
    if isinstance(file, int):
        return file
    try:
        return file.fileno()
    except (AttributeError, _io.UnsupportedOperation):
        return None


def _os_index(offset):
    offset = _operator.index(offset)
    if offset < 0:
        raise ValueError("sendfile() argument 'offset' must not be negative")
    return offset
