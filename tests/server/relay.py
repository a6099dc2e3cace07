"""A TCP relay in front of a server, to drop every open connection at once and refuse new
ones for a while (a network outage as a browser sees it) while the server and its runs
carry on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class Relay:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.connections: set[asyncio.StreamWriter] = set()
        self.plain_http: set[asyncio.StreamWriter] = set()
        """Client ends of connections that are not WebSocket upgrades."""
        self.holding = False
        self.holding_http = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.holding:
            writer.transport.abort()
            return
        first = await reader.read(65536)  # the request head: a WebSocket upgrade or not
        upgrade = b"upgrade: websocket" in first.lower()
        if self.holding_http and not upgrade:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.connections |= {writer, upstream}
        if not upgrade:
            self.plain_http.add(writer)
        upstream.write(first)
        try:
            await asyncio.gather(_pipe(reader, upstream), _pipe(upstream_reader, writer))
        finally:
            for end in (writer, upstream):
                self.connections.discard(end)
                end.close()
            self.plain_http.discard(writer)

    def cut(self) -> int:
        """Drop every open connection; returns how many there were."""
        ends = list(self.connections)
        for end in ends:
            end.transport.abort()
        return len(ends) // 2

    def hold(self) -> None:
        """Refuse new connections (each is reset at once) until `release`."""
        self.holding = True

    def release(self) -> None:
        self.holding = False
        self.holding_http = False

    def hold_http(self) -> None:
        """Plain HTTP fails (open connections dropped, new ones reset) while WebSockets
        go on: REST calls fail, streams do not."""
        self.holding_http = True
        for end in list(self.plain_http):
            end.transport.abort()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.close()


@contextlib.asynccontextmanager
async def relay_to(port: int) -> AsyncIterator[Relay]:
    relay = Relay(port)
    server = await asyncio.start_server(relay._serve, "127.0.0.1", 0)
    relay.port = server.sockets[0].getsockname()[1]
    try:
        yield relay
    finally:
        server.close()
        relay.cut()
        await server.wait_closed()
