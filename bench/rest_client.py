"""A REST client that costs the benchmark's own process next to nothing: JSON requests
over one HTTP/1.1 keep-alive connection on asyncio streams (`KeepAlive`), and a fixed
set of them shared by many tasks (`Connections`).

httpx's connection pool looks at every connection it holds for each request it sends
(``has_expired``: a readability probe and a ``getpeername`` per connection): with 100
keep-alive connections that was ~7 ms of the client's CPU per request, more than the
server spent on it, so on 2 cores a benchmark driven by httpx measured its own client.
Here a request is written and its answer read on a connection no other request uses
meanwhile. Imports nothing of threadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson


class HttpError(RuntimeError):
    """An answer other than 2xx (its status and body), or a broken connection."""


class KeepAlive:
    """One connection; one request at a time (`Connections` shares several)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, port: int) -> KeepAlive:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, path: str, document: dict[str, Any]) -> Any:
        """POST ``document`` as JSON; the answer's JSON. Raises `HttpError`."""
        body = orjson.dumps(document)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        status, answer = await read_answer(self._reader)
        if status[9:10] != b"2":
            raise HttpError(f"{status.decode().strip()}: {answer.decode(errors='replace')}")
        return orjson.loads(answer)

    def close(self) -> None:
        self._writer.close()


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """An answer's status line and body (it must carry a Content-Length). Raises
    `HttpError`."""
    status = await reader.readline()
    length = -1
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length < 0:
        raise HttpError(f"no answer with a length: {status!r}")
    return status, await reader.readexactly(length)


class Connections:
    """``size`` keep-alive connections; a request takes one that is free."""

    def __init__(self, port: int, size: int) -> None:
        self._port = port
        self._size = size
        self._free: asyncio.Queue[KeepAlive] = asyncio.Queue()
        self._all: list[KeepAlive] = []

    async def __aenter__(self) -> Connections:
        for _ in range(self._size):
            connection = await KeepAlive.open(self._port)
            self._all.append(connection)
            self._free.put_nowait(connection)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for connection in self._all:
            connection.close()

    @contextlib.asynccontextmanager
    async def taken(self) -> AsyncIterator[KeepAlive]:
        """A free connection, for one request (waits until one is free)."""
        connection = await self._free.get()
        try:
            yield connection
        finally:
            self._free.put_nowait(connection)
