import socket
from typing import Protocol, Union

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
]

class IncompleteError(EOFError):
    partial: bytes | None
    expected: int
    nbytes: int
    def __init__(self, partial: bytes | None, expected: int, nbytes: int | None = ...) -> None: ...

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
