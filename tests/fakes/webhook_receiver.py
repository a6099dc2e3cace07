"""A real HTTP server on 127.0.0.1 that receives webhooks: it records every request
(headers, body, arrival time) and answers from a script (a status per request, the last
repeated; ``hang`` keeps the request unanswered until ``release``)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return orjson.loads(self.body)

    def signed_by(self, secret: str, *, tolerance: float = 300.0) -> bool:
        """The receiver's check: ``t=...,v1=...`` over ``"<t>." + body``, fresh."""
        parts = dict(
            item.split("=", 1) for item in self.headers["x-threadline-signature"].split(",")
        )
        expected = hmac.new(
            secret.encode(), parts["t"].encode() + b"." + self.body, hashlib.sha256
        ).hexdigest()
        fresh = abs(time.time() - int(parts["t"])) < tolerance
        return fresh and hmac.compare_digest(expected, parts["v1"])


@dataclass
class Receiver:
    statuses: list[int] = field(default_factory=lambda: [200])
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with every answer (a ``Location`` for redirects)."""
    hang: bool = False
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def wait_for(self, count: int, time_limit: float = 30.0) -> list[Received]:
        async with asyncio.timeout(time_limit), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
        return self.received[:count]

    def release(self) -> None:
        self.hang = False
        self._release.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status = self.statuses[min(len(self.received), len(self.statuses) - 1)]
            async with self._arrived:
                self.received.append(
                    Received(request_line.split()[1], headers, body, time.monotonic())
                )
                self._arrived.notify_all()
            if self.hang:
                await self._release.wait()
            extra = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
            head = f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n"
            writer.write(f"{head}{extra}\r\n".encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver, port: int = 0) -> AsyncIterator[Receiver]:
    server = await asyncio.start_server(receiver._serve, "127.0.0.1", port)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        receiver.release()
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)
