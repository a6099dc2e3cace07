"""Clients for the stream transports, as raw as the fuzzer needs them: the plain
WebSocket, Engine.IO over a WebSocket, Engine.IO long-polling."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.fuzz.target import Target

NO_CLOSE_FRAME = "dropped without a close frame"
SETTLE = 0.05


@dataclass
class Socket:
    """A WebSocket whose incoming messages are drained by a task (so the server is never
    blocked by us), with a liveness probe."""

    connection: ClientConnection
    received: list[str | bytes] = field(default_factory=list)
    closed: ConnectionClosed | None = None
    reader: asyncio.Task[None] | None = None
    pong: bool = False
    """Engine.IO: answer the server's pings ("2") with "3"."""

    def start(self) -> Socket:
        self.reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        try:
            async for message in self.connection:
                if self.pong and message == "2":
                    await self.connection.send("3")
                    continue
                self.received.append(message)
        except ConnectionClosed as exc:
            self.closed = exc
        else:
            self.closed = ConnectionClosed(self.connection.close_rcvd, self.connection.close_sent)

    async def send(self, frame: str | bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.connection.send(frame)

    async def state(self, seconds: float) -> str:
        """Whether the socket is "open" (a ping came back), "closed <code>",
        NO_CLOSE_FRAME, or a "hang".

        The server reads frames in a task of its own while its protocol answers pings, so
        a frame that kills that task may do so after the pong: settle before and after."""
        await asyncio.sleep(SETTLE)
        if self.closed is None:
            try:
                waiter = await self.connection.ping()
                await asyncio.wait_for(waiter, seconds)
                await asyncio.sleep(SETTLE)
                if self.closed is None:
                    return "open"
            except ConnectionClosed:
                if self.reader is not None:
                    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                        await asyncio.wait_for(asyncio.shield(self.reader), 1)
            except TimeoutError:
                return "hang"
        closed = self.closed or ConnectionClosed(None, None)
        if closed.rcvd is None:
            return NO_CLOSE_FRAME
        return f"closed {closed.rcvd.code}"

    async def wait_for(self, predicate: Any, seconds: float) -> str | bytes | None:
        """The first message (already here or arriving) that satisfies ``predicate``."""
        deadline = asyncio.get_running_loop().time() + seconds
        seen = 0
        while True:
            for message in self.received[seen:]:
                if predicate(message):
                    return message
            seen = len(self.received)
            if self.closed is not None or asyncio.get_running_loop().time() > deadline:
                return None
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.connection.close(), 2)
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader


def ws_base(target: Target) -> str:
    return target.url.replace("http://", "ws://")


def _key_query(target: Target) -> dict[str, str]:
    return {"session_api_key": target.key} if target.key else {}


async def plain_socket(target: Target, conversation_id: str, latest: str = "-1") -> Socket:
    query = urlencode({"latest_event_id": latest, **_key_query(target)})
    url = f"{ws_base(target)}/api/conversations/{conversation_id}/events?{query}"
    return Socket(await connect(url, max_size=None, open_timeout=5, ping_interval=None)).start()


async def engineio_socket(
    target: Target, conversation_id: str, latest: str = "-1"
) -> tuple[Socket, str]:
    """An Engine.IO WebSocket connected to the Socket.IO namespace "/": the socket, and
    the server's answer to the connect packet ("40{...}" or "44{...}")."""
    query = urlencode(
        {
            "EIO": "4",
            "transport": "websocket",
            "conversation_id": conversation_id,
            "latest_event_id": latest,
            **_key_query(target),
        }
    )
    connection = await connect(
        f"{ws_base(target)}/socket.io/?{query}", max_size=None, open_timeout=5, ping_interval=None
    )
    socket = Socket(connection, pong=True).start()
    await socket.wait_for(lambda m: isinstance(m, str) and m.startswith("0"), 5)
    await socket.send("40")
    answer = await socket.wait_for(lambda m: isinstance(m, str) and m[:2] in ("40", "44"), 5)
    return socket, str(answer)


def polling_query(target: Target, conversation_id: str, latest: str = "-1") -> dict[str, str]:
    return {
        "EIO": "4",
        "transport": "polling",
        "conversation_id": conversation_id,
        "latest_event_id": latest,
        **_key_query(target),
    }


async def polling_session(client: httpx.AsyncClient, target: Target, conversation_id: str) -> str:
    """A long-polling Engine.IO session connected to "/": its sid."""
    query = polling_query(target, conversation_id)
    opened = await client.get("/socket.io/", params=query)
    sid = str(orjson.loads(opened.text[1:])["sid"])
    await client.post("/socket.io/", params={**query, "sid": sid}, content=b"40")
    await client.get("/socket.io/", params={**query, "sid": sid})  # the connect answer
    return sid
