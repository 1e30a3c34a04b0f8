import socket
from array import array
from collections.abc import Iterable
from typing import Literal, Protocol, Union

from _typeshed import ReadableBuffer, WriteableBuffer

class _HasFileno(Protocol):
    def fileno(self) -> int: ...

class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...

_Socket = Union[socket.socket, _HasFileno, int]
_File = Union[_HasFileno, _Readable, int]
_Timeout = Union[float, None]

__version__: str

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
    partial: bytes | None
    expected: int | None
    nbytes: int
    def __init__(self, partial: bytes | None, expected: int | None, nbytes: int | None = ...) -> None: ...

class TooLongError(ValueError):
    nbytes: int

def recvall(sock: _Socket, n: int, *, timeout: _Timeout = ...) -> bytes: ...
def recvall_into(
    sock: _Socket,
    buffer: WriteableBuffer,
    nbytes: int | None = ...,
    offset: int = ...,
    *,
    timeout: _Timeout = ...,
) -> int: ...
def recv_into(sock: _Socket, buffer: WriteableBuffer, nbytes: int = ..., flags: int = ..., *, offset: int = ...) -> int: ...
def send(sock: _Socket, data: ReadableBuffer, offset: int = ..., count: int | None = ...) -> int: ...
def sendall(
    sock: _Socket,
    data: ReadableBuffer,
    offset: int = ...,
    count: int | None = ...,
    *,
    timeout: _Timeout = ...,
) -> int: ...
def sendfile(sock: _Socket, file: _File, offset: int = ..., count: int | None = ...) -> int: ...
def recvall_cycles() -> int: ...
def sendallv(sock: _Socket, buffers: Iterable[ReadableBuffer], *, timeout: _Timeout = ...) -> int: ...
def recvfile(
    sock: _Socket,
    file: _HasFileno | int,
    count: int,
    offset: int | None = ...,
    *,
    timeout: _Timeout = ...,
) -> int: ...
def find(buf: ReadableBuffer, needle: ReadableBuffer, start: int = ...) -> int: ...
def split(buf: ReadableBuffer, sep: ReadableBuffer) -> list[memoryview]: ...
def split_offsets(buf: ReadableBuffer, sep: ReadableBuffer) -> array[int]: ...

class Reader:
    def __init__(self, sock: _Socket) -> None: ...
    @property
    def buffered(self) -> int: ...
    def readuntil(self, delim: ReadableBuffer = ..., max: int = ..., *, timeout: _Timeout = ...) -> bytes: ...
    def recvall(self, n: int, *, timeout: _Timeout = ...) -> bytes: ...
    def recvall_into(
        self,
        buffer: WriteableBuffer,
        nbytes: int | None = ...,
        offset: int = ...,
        *,
        timeout: _Timeout = ...,
    ) -> int: ...

class _Transfer:
    """A progressive transfer: step() each time the socket is ready for .want."""
    @property
    def done(self) -> bool: ...
    @property
    def ended(self) -> bool: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def expected(self) -> int: ...
    @property
    def want(self) -> Literal[0, 1, 2]: ...
    @property
    def cycles(self) -> int: ...
    budget: int
    @property
    def sock(self) -> _Socket: ...
    def step(self) -> int: ...
    def close(self) -> None: ...
    def fileno(self) -> int: ...

class Receiver(_Transfer):
    def __init__(
        self,
        sock: _Socket,
        n: int | None = ...,
        *,
        buffer: WriteableBuffer | None = ...,
        offset: int = ...,
        budget: int | None = ...,
    ) -> None: ...
    def result(self) -> bytes | int: ...
    def partial(self) -> bytes | None: ...

class Sender(_Transfer):
    def __init__(
        self,
        sock: _Socket,
        data: ReadableBuffer,
        offset: int = ...,
        count: int | None = ...,
        *,
        budget: int | None = ...,
    ) -> None: ...
    @classmethod
    def from_file(
        cls,
        sock: _Socket,
        file: _HasFileno | int,
        offset: int = ...,
        count: int | None = ...,
        *,
        budget: int | None = ...,
    ) -> Sender: ...
    def result(self) -> int: ...
