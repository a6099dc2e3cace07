"""Subscribers on every transport, each resuming from the last id it saw whenever its
connection ends (a crash, a shutdown, or its own planned reconnect):

* ``sio``: Socket.IO with python-socketio's official ``AsyncClient`` (WebSocket
  transport), query ``latest_event_id``;
* ``ws``: the plain WebSocket with ``websockets``, query ``latest_event_id``;
* ``sse``: Server-Sent Events with httpx, header ``Last-Event-ID``.

Every event received goes through the subscriber's `Sequence`, which counts gaps,
duplicates and reorders across all its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any, ClassVar

import aiohttp
import httpx
import orjson
import socketio
import websockets

from tests.chaos.audit import Sequence

TRANSPORTS = ("sio", "ws", "sse")
CONNECT_TIMEOUT = 10.0
FIRST = asyncio.FIRST_COMPLETED


class Subscriber:
    transport: ClassVar[str]

    def __init__(self, url: str, conversation_id: str, stop: asyncio.Event) -> None:
        self.url = url
        self.conversation_id = conversation_id
        self.stop = stop
        self.sequence = Sequence()
        self.connections = 0
        self.planned_reconnects = 0
        self.failures = 0
        self.errors: list[str] = []

    def note(self, text: str) -> None:
        if len(self.errors) < 5:
            self.errors.append(text[:200])

    async def follow(
        self,
        *,
        reconnects: int | None = None,
        hold: tuple[float, float] = (0.2, 2.0),
        rng: random.Random | None = None,
    ) -> None:
        """Stay subscribed until ``stop``. The first ``reconnects`` connections end on
        our side after a random ``hold`` (seconds); the server may end any of them."""
        rng = rng or random.Random()
        backoff = 0.05
        while not self.stop.is_set():
            planned = reconnects is not None and self.planned_reconnects < reconnects
            try:
                ended = await self.session(rng.uniform(*hold) if planned else None)
            except Exception as exc:
                self.failures += 1
                self.note(f"{type(exc).__name__}: {exc}")
                await _sleep_unless(self.stop, backoff)
                backoff = min(1.0, backoff * 2)
                continue
            backoff = 0.05
            if ended == "hold":
                self.planned_reconnects += 1
            elif ended == "closed":
                await _sleep_unless(self.stop, 0.05)

    async def session(self, hold: float | None) -> str:
        """One connection from the last id seen: "hold" when ``hold`` ran out, "stop" at
        stop, "closed" when the server ended it. Raises when it could not connect."""
        opened = asyncio.get_running_loop().create_future()
        reader = asyncio.create_task(self._read(opened))
        stopper = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait([reader, opened], timeout=CONNECT_TIMEOUT, return_when=FIRST)
            if not opened.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                raise TimeoutError("no connection within the connect timeout")
            if reader.done():
                reader.result()
                return "closed"
            self.connections += 1
            done, _ = await asyncio.wait([reader, stopper], timeout=hold, return_when=FIRST)
            if reader in done:
                reader.result()
                return "closed"
            return "stop" if stopper in done else "hold"
        finally:
            stopper.cancel()
            if not reader.done():
                await self._end(reader)

    async def _end(self, reader: asyncio.Task[None]) -> None:
        """End a connection that is still open (our side hangs up)."""
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader

    async def _read(self, opened: asyncio.Future[None]) -> None:
        """Connect from ``self.sequence.last``, resolve ``opened``, feed the sequence
        until the connection ends."""
        raise NotImplementedError

    def _event(self, document: Any) -> None:
        if isinstance(document, dict) and isinstance(document.get("id"), int):
            self.sequence.see(document["id"])
        else:
            self.note(f"not an event: {document!r}")


class SocketIOSubscriber(Subscriber):
    transport = "sio"
    _client: socketio.AsyncClient | None = None
    hung_disconnects = 0

    async def _read(self, opened: asyncio.Future[None]) -> None:
        live = True

        async def on_event(document: Any) -> None:
            if live:  # a late handler of a finished session must not count
                self._event(document)

        query = f"conversation_id={self.conversation_id}&latest_event_id={self.sequence.last}"
        async with aiohttp.ClientSession() as http:  # ours, so it is closed whatever happens
            client = socketio.AsyncClient(
                reconnection=False, handle_sigint=False, http_session=http
            )
            client.on("oh_event", on_event)
            self._client = client
            try:
                await client.connect(
                    f"{self.url}?{query}", transports=["websocket"], wait_timeout=CONNECT_TIMEOUT
                )
                opened.set_result(None)
                await client.wait()
            finally:
                live = False
                self._client = None
                await self._disconnect(client)

    async def _end(self, reader: asyncio.Task[None]) -> None:
        # Cancelling `AsyncClient.wait()` cancels python-engineio's own read loop, which
        # can then wait forever; a disconnect ends the loop the library's way.
        if self._client is not None:
            await self._disconnect(self._client)
        await super()._end(reader)

    async def _disconnect(self, client: socketio.AsyncClient) -> None:
        """Disconnect (idempotent), giving up after 3 s."""
        try:
            await asyncio.wait_for(asyncio.shield(client.disconnect()), 3)
        except TimeoutError:
            self.hung_disconnects += 1
        except Exception as exc:
            self.note(f"disconnect: {type(exc).__name__}: {exc}")


class WebSocketSubscriber(Subscriber):
    transport = "ws"

    async def _read(self, opened: asyncio.Future[None]) -> None:
        url = (
            self.url.replace("http://", "ws://", 1)
            + f"/api/conversations/{self.conversation_id}/events"
            + f"?latest_event_id={self.sequence.last}"
        )
        async with websockets.connect(
            url, max_size=None, open_timeout=CONNECT_TIMEOUT, close_timeout=1
        ) as connection:
            opened.set_result(None)
            with contextlib.suppress(websockets.ConnectionClosed):
                async for message in connection:
                    self._event(orjson.loads(message))


class SSESubscriber(Subscriber):
    transport = "sse"

    def __init__(
        self, url: str, conversation_id: str, stop: asyncio.Event, client: httpx.AsyncClient
    ) -> None:
        super().__init__(url, conversation_id, stop)
        self.client = client

    async def _read(self, opened: asyncio.Future[None]) -> None:
        last = self.sequence.last
        headers = {"Last-Event-ID": str(last)} if last >= 0 else {}
        url = f"{self.url}/api/conversations/{self.conversation_id}/events/stream"
        async with self.client.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                raise ConnectionError(f"SSE answered {response.status_code}")
            opened.set_result(None)
            with contextlib.suppress(httpx.RemoteProtocolError, httpx.ReadError):
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        self._event(orjson.loads(line[5:]))


def sse_client() -> httpx.AsyncClient:
    """One client for many SSE subscribers: no pool limit, no read timeout."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(CONNECT_TIMEOUT, read=None),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
    )


def make(
    transport: str, url: str, conversation_id: str, stop: asyncio.Event, client: httpx.AsyncClient
) -> Subscriber:
    if transport == "sio":
        return SocketIOSubscriber(url, conversation_id, stop)
    if transport == "ws":
        return WebSocketSubscriber(url, conversation_id, stop)
    if transport == "sse":
        return SSESubscriber(url, conversation_id, stop, client)
    raise ValueError(f"unknown transport {transport!r}")


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
