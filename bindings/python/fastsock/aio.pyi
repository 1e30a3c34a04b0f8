import socket
from typing import Any, Union

from _typeshed import ReadableBuffer, WriteableBuffer

from . import Receiver, Sender, _File, _Socket

__all__ = ["recvall", "recvall_into", "sendall", "sendfile", "transfer", "progress"]

LOOP_BUDGET: int
MIN_BUDGET: int
CLOSED_CHECK_S: float

async def transfer(xfer: Union[Receiver, Sender], *, timeout: float | None = ...) -> Any: ...
async def recvall(sock: _Socket, n: int, *, timeout: float | None = ...) -> bytes: ...
async def recvall_into(
    sock: _Socket,
    buffer: WriteableBuffer,
    nbytes: int | None = ...,
    offset: int = ...,
    *,
    timeout: float | None = ...,
) -> int: ...
async def sendall(
    sock: _Socket,
    data: ReadableBuffer,
    offset: int = ...,
    count: int | None = ...,
    *,
    timeout: float | None = ...,
) -> int: ...
async def sendfile(
    sock: _Socket,
    file: _File,
    offset: int = ...,
    count: int | None = ...,
    *,
    timeout: float | None = ...,
) -> int: ...
def progress(exc: BaseException | None) -> BaseException | None: ...
