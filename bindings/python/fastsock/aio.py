"""fastsock for asyncio and uvloop: the bulk calls as awaitables.

    data = await fastsock.aio.recvall(sock, n)
    await fastsock.aio.recvall_into(sock, buf, nbytes, offset)
    await fastsock.aio.sendall(sock, data, offset, count)
    await fastsock.aio.sendfile(sock, file, offset, count)
    result = await fastsock.aio.transfer(fastsock.Receiver(sock, n))

They are the counterparts of ``loop.sock_recv_into``, ``loop.sock_sendall``
and ``loop.sock_sendfile``, with the blocking calls' names and arguments,
and work on the default loop and on uvloop. Each drives a
``fastsock.Receiver`` or ``fastsock.Sender``: it steps the transfer at once
(data already there costs no loop round-trip) and registers a reader or
writer only when the transfer has to wait. A step moves at most the
transfer's budget, so the loop's other tasks run between steps; concurrent
transfers on one loop share a budget per loop iteration. A fresh ``recvall``
result is allocated untouched (never zero-filled) and its pages fault in as
each step fills them: never in one piece on the loop's thread.

Sockets: non-blocking ones are the intended case; **a blocking socket is
accepted too** (a step never waits: the system calls are made with
MSG_DONTWAIT). An ``ssl.SSLSocket`` is refused (TypeError), and so is a
socket that a transport owns (the loop's own RuntimeError).

One receive and one send may run on a socket at once (full duplex). A second
receive, or a second send, on a socket that already has one running raises
RuntimeError at once: asyncio would otherwise silently replace the first
one's reader and leave it waiting forever. On the default loop this also
covers the loop's own pending ``loop.sock_recv``/``sock_sendall`` and
``add_reader`` callbacks on the socket; uvloop keeps those out of reach, so
there, don't mix them with fastsock.aio on one socket and direction.

Cancellation and timeouts (``task.cancel()``, ``asyncio.timeout``,
``asyncio.wait_for``) stop a transfer between two steps and unregister the
fd before the CancelledError leaves the call. Nothing is lost:

- The ``CancelledError`` carries ``.nbytes`` (bytes moved) and
  ``.transfer``, the Receiver or Sender, still open: ``await
  fastsock.aio.transfer(exc.transfer)`` resumes it, and for ``recvall``
  ``exc.transfer.partial()`` gives the bytes received (a copy; or
  ``exc.transfer.close()`` first, and then ``partial()`` is the result
  shrunk in place, no copy). Nothing is copied at the cancellation itself,
  which costs the loop no stall however large the transfer.
  ``asyncio.timeout`` and ``wait_for`` raise a ``TimeoutError`` chained to
  it (``__cause__``, or ``__context__`` before Python 3.11.4):
  ``fastsock.aio.progress(exc)`` finds it. A CancelledError without
  ``.nbytes`` was raised before the call began: nothing moved.
- Simpler: hold the transfer yourself. ``r = fastsock.Receiver(sock, n)``,
  ``await fastsock.aio.transfer(r)``; after any interruption ``r.nbytes`` and
  ``r.partial()`` (or your buffer) hold the progress, and awaiting
  ``transfer(r)`` again resumes where it stopped.
- ``recvall_into`` into your own buffer: resume with
  ``recvall_into(sock, buf, nbytes - moved, offset + moved)``.

The ``timeout=`` keyword (seconds for the whole call, like the blocking
calls' keyword; None, the default, for no limit) ends the transfer and
raises ``TimeoutError`` with ``.nbytes`` (and for recvall ``.partial``, the
result shrunk in place), as the blocking calls do. The fd closed while a
transfer waits on it (no event would ever come) ends the transfer with
``OSError(EBADF)`` within about 0.1 s.
"""

import asyncio as _asyncio
import errno as _errno
import os as _os
import socket as _socket

from . import Receiver, Sender, _sendfile_fileno, _set_position

__all__ = ["recvall", "recvall_into", "sendall", "sendfile", "transfer", "progress"]

# Bytes that all the transfers of one loop move per loop iteration, together
# (each step gets an even share of it, MIN_BUDGET at least; once it is spent,
# the rest wait for the next iteration): one transfer's step is well under a
# millisecond of copying (and of page faults for a fresh result), and 64 at
# once don't add up to more. Larger steps bought no MB/s on loopback (one
# 256 MiB transfer: 512 KiB to 4 MiB all ~1.8-2.0 GB/s) but longer stalls;
# 64 transfers with a share each but no common bound stalled 13-60 ms.
LOOP_BUDGET = 1 << 20
# No transfer's step gets less, however many run: below this the loop's own
# cost per step would dominate.
MIN_BUDGET = 64 << 10
# How often a waiting transfer checks that its fd is still open.
CLOSED_CHECK_S = 0.1

_READ, _WRITE = 1, 2
# (fd, direction) -> the transfer running there: two receives (or sends) at
# once on one socket are an error, not a silently replaced reader.
_busy = {}
# loop -> [transfers running, bytes left in this loop iteration, refill
# scheduled]: the shared budget.
_loops = {}


def _refill(state):
    state[1] = LOOP_BUDGET
    state[2] = False


def _budget(loop, state):
    """The bytes the next step may move, or 0 when this loop iteration's
    budget is spent: the step waits for the next iteration, where the fd,
    level-triggered, is reported again. A call_soon made during an iteration
    runs at the start of the next one (asyncio and uvloop alike), before its
    I/O callbacks: there the budget is refilled."""
    if not state[2]:
        state[2] = True
        loop.call_soon(_refill, state)
    left = state[1]
    if left <= 0:
        return 0
    return max(MIN_BUDGET, min(left, LOOP_BUDGET // state[0]))


def _direction_name(want):
    return "receive" if want == _READ else "send"


def _claim(loop, fd, want, xfer):
    key = (fd, want)
    other = _busy.get(key)
    if other is not None:
        raise RuntimeError(
            f"fastsock.aio: another {_direction_name(want)} is already running on fd {fd} "
            f"({other!r}); one receive and one send may run at once, not two of a kind")
    # A selector loop's own reader (loop.sock_recv ...) would be replaced
    # just as silently. uvloop keeps its registrations out of reach.
    selector = getattr(loop, "_selector", None)
    if selector is not None:
        try:
            key_ = selector.get_key(fd)
        except (KeyError, ValueError):
            pass
        else:
            handle = key_.data[0] if want == _READ else key_.data[1]
            if handle is not None and not handle.cancelled():
                raise RuntimeError(
                    f"fastsock.aio: fd {fd} already has a {'reader' if want == _READ else 'writer'} "
                    f"on this loop (a pending loop.sock_* call or a callback)")
    _busy[key] = xfer


def _fd_closed(sock, fd):
    if isinstance(sock, _socket.socket):
        return sock.fileno() != fd
    try:
        _os.fstat(fd)
    except OSError:
        return True
    fileno = getattr(sock, "fileno", None)
    if fileno is not None and not isinstance(sock, int):
        try:
            return fileno() != fd
        except (OSError, ValueError):
            return True
    return False


def _annotate(exc, xfer):
    """Progress on an exception that interrupted xfer (which stays open)."""
    try:
        exc.nbytes = xfer.nbytes
        exc.transfer = xfer
    except AttributeError:  # an exception type without a __dict__
        pass


def progress(exc):
    """The exception in exc's chain that carries a transfer's progress, or None.

    ``progress(exc).nbytes`` (and ``.partial``, ``.transfer``) after
    ``except TimeoutError as exc`` around ``asyncio.timeout`` or
    ``asyncio.wait_for``, whose TimeoutError is chained to the
    CancelledError that stopped the transfer.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        if hasattr(exc, "nbytes"):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


async def transfer(xfer, *, timeout=None):
    """Drive a fastsock.Receiver or fastsock.Sender to its end; return its result().

    The transfer keeps its progress whatever happens to this call: after a
    cancellation (``task.cancel()``, ``asyncio.timeout``, ``wait_for``),
    ``xfer.nbytes`` and ``xfer.partial()`` tell what moved, and awaiting
    ``transfer(xfer)`` again resumes it. The ``timeout`` keyword instead
    ends the transfer (``xfer.close()``), as the blocking calls' timeout
    does: TimeoutError with .nbytes (and .partial for a fresh Receiver, the
    bytes shrunk in place). The loop's shared budget sets ``xfer.budget``
    before each step.

    Raises the transfer's errors (IncompleteError, OSError subclasses with
    .nbytes), TimeoutError, RuntimeError when another transfer of the same
    direction runs on the socket.
    """
    loop = _asyncio.get_running_loop()
    if xfer.ended:
        return xfer.result()
    want = xfer.want
    fd = xfer.fileno()
    _claim(loop, fd, want, xfer)
    state = _loops.get(loop)
    if state is None:
        state = _loops[loop] = [0, LOOP_BUDGET, False]
    state[0] += 1
    try:
        # Try at once: when the data is there (or the socket writable) the
        # common small case ends here without a loop round-trip.
        budget = _budget(loop, state)
        if budget:
            xfer.budget = budget
            state[1] -= xfer.step()
            if xfer.ended:
                return xfer.result()
        return await _wait(loop, xfer, fd, want, timeout, state)
    except _asyncio.CancelledError as exc:
        _annotate(exc, xfer)
        raise
    finally:
        del _busy[(fd, want)]
        state[0] -= 1
        if not state[0] and _loops.get(loop) is state:
            del _loops[loop]


async def _wait(loop, xfer, fd, want, timeout, state):
    fut = loop.create_future()
    sock = xfer.sock

    def ready():
        if fut.done():
            return
        budget = _budget(loop, state)
        if not budget:
            return
        try:
            xfer.budget = budget
            state[1] -= xfer.step()
        except BaseException as exc:  # the transfer's error, for the awaiting task
            fut.set_exception(exc)
            return
        if xfer.ended:
            fut.set_result(None)

    def check_closed():
        nonlocal watch
        if fut.done():
            return
        if _fd_closed(sock, fd):
            exc = OSError(_errno.EBADF, "the socket was closed while fastsock.aio waited on it")
            exc.nbytes = xfer.nbytes
            fut.set_exception(exc)
        else:
            watch = loop.call_later(CLOSED_CHECK_S, check_closed)

    def expire():
        if not fut.done():
            # The call's own deadline ends the transfer, as the blocking
            # calls' timeout does: its bytes so far are .partial, no copy.
            xfer.close()
            exc = TimeoutError("timed out")
            _annotate(exc, xfer)
            if isinstance(xfer, Receiver):
                exc.partial = xfer.partial()
            fut.set_exception(exc)

    register, unregister = ((loop.add_reader, loop.remove_reader) if want == _READ
                            else (loop.add_writer, loop.remove_writer))
    register(fd, ready)
    watch = loop.call_later(CLOSED_CHECK_S, check_closed)
    deadline = None if timeout is None else loop.call_later(timeout, expire)
    try:
        await fut
    finally:
        # Here rather than in a done-callback, which runs a loop iteration
        # later: a transfer resumed right after a cancellation would have its
        # fresh reader removed by the old callback.
        watch.cancel()
        if deadline is not None:
            deadline.cancel()
        try:
            unregister(fd)
        except (OSError, ValueError):
            pass  # the fd was closed under us: nothing left registered to remove
    return xfer.result()


async def recvall(sock, n, *, timeout=None):
    """Receive exactly n bytes from sock and return them as bytes.

    The awaitable form of ``fastsock.recvall``: the result is allocated
    once, never zero-filled, filled a step at a time while the loop runs,
    and returned without a copy. Errors as ``fastsock.recvall``:
    IncompleteError (.partial, .expected), OSError subclasses and
    TimeoutError with .nbytes and .partial. See the module's documentation
    for cancellation.
    """
    return await transfer(Receiver(sock, n), timeout=timeout)


async def recvall_into(sock, buffer, nbytes=None, offset=0, *, timeout=None):
    """Receive exactly nbytes into buffer[offset:offset + nbytes]; return nbytes.

    The awaitable form of ``fastsock.recvall_into``; nbytes None means the
    rest of the buffer. The buffer can't be resized while the call runs.
    On any error or cancellation ``.nbytes`` bytes are in buffer at offset.
    """
    return await transfer(Receiver(sock, nbytes, buffer=buffer, offset=offset), timeout=timeout)


async def sendall(sock, data, offset=0, count=None, *, timeout=None):
    """Send all of data[offset:offset + count]; return the number of bytes sent.

    The awaitable form of ``fastsock.sendall``: no slicing, errors carry
    .nbytes (a peer that is gone is an OSError, never a SIGPIPE).
    """
    return await transfer(Sender(sock, data, offset, count), timeout=timeout)


async def sendfile(sock, file, offset=0, count=None, *, timeout=None):
    """Send a file with sendfile(2), progressively; return the number of bytes sent.

    The awaitable form of ``fastsock.sendfile``, for the non-blocking
    sockets that ``socket.sendfile`` refuses: the same arguments and
    checks, and the same file position afterwards (``offset + sent``
    whenever something was sent, also after an error or a cancellation).
    A file object without a file descriptor (``io.BytesIO``) is read in
    1 MiB blocks and sent with ``sendall``. A pipe is refused (ValueError):
    reading it could block the loop.
    """
    fileno = _sendfile_fileno(sock, file, count)
    if fileno is None:
        return await _sendfile_by_read(sock, file, offset, count, timeout)
    xfer = Sender.from_file(sock, fileno, offset, count)
    try:
        return await transfer(xfer, timeout=timeout)
    finally:
        if xfer.nbytes > 0:
            _set_position(file, fileno, offset + xfer.nbytes)


async def _sendfile_by_read(sock, file, offset, count, timeout):
    loop = _asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    if offset:
        file.seek(offset)
    total = 0
    try:
        while count is None or total < count:
            block = 1 << 20 if count is None else min(count - total, 1 << 20)
            data = file.read(block)
            if not data:
                break
            left = None if deadline is None else max(0.0, deadline - loop.time())
            xfer = Sender(sock, data)
            try:
                await transfer(xfer, timeout=left)
            finally:
                total += xfer.nbytes
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
