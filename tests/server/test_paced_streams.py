"""Paced replay over every transport of a real server: Socket.IO, the plain WebSocket and
SSE (controls through the REST endpoint keyed by the replay id). The recording's events
are an hour apart, so nothing here depends on timing: what arrives at once (the first
event, a seek's target) and what only a faster speed brings (the rest, then the end).
Timing itself is tested with an injected clock in test_pacing.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
import orjson
import pytest
import socketio
import websockets

from tests.server.running import RunningServer

Item = tuple[str, dict[str, Any]]
"""("event", an event) or ("replay", a replay notice)."""
BEGIN = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
RECORDING = [
    {
        "action": "think",
        "source": "agent",
        "timestamp": (BEGIN + timedelta(hours=hour)).isoformat(),
        "args": {"thought": f"hour {hour}"},
    }
    for hour in range(6)
]


class Watch(Protocol):
    async def next(self) -> Item: ...

    async def control(self, command: dict[str, Any]) -> None: ...


class WebSocketWatch:
    def __init__(self, socket: Any) -> None:
        self.socket = socket

    async def next(self) -> Item:
        message = orjson.loads(await self.socket.recv())
        return ("replay" if "replay" in message else "event", message)

    async def control(self, command: dict[str, Any]) -> None:
        await self.socket.send(orjson.dumps(command).decode())


class SocketIOWatch:
    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.items: asyncio.Queue[Item] = asyncio.Queue()
        self.client.on("oh_event", lambda event: self.items.put_nowait(("event", event)))
        self.client.on("oh_replay", lambda notice: self.items.put_nowait(("replay", notice)))

    async def next(self) -> Item:
        return await self.items.get()

    async def control(self, command: dict[str, Any]) -> None:
        answer = await self.client.call("oh_replay_control", command, timeout=10)
        assert answer["status"] == "ok", answer


class SSEWatch:
    def __init__(self, http: httpx.AsyncClient, conversation_id: str, lines: Any) -> None:
        self.http = http
        self.conversation_id = conversation_id
        self.lines = lines
        self.replay_id = ""

    async def next(self) -> Item:
        kind = "event"
        async for line in self.lines:
            if line.startswith("event: replay"):
                kind = "replay"
            elif line.startswith("data:"):
                item = orjson.loads(line.removeprefix("data:"))
                self.replay_id = item.get("replay_id", self.replay_id)
                return (kind, item)
        raise AssertionError("the stream ended")

    async def control(self, command: dict[str, Any]) -> None:
        url = f"/api/conversations/{self.conversation_id}/replay/{self.replay_id}"
        answer = await self.http.post(url, json=command)
        assert answer.status_code == 200, answer.text


@contextlib.asynccontextmanager
async def watching(
    transport: str, server: RunningServer, http: httpx.AsyncClient, conversation_id: str
) -> AsyncIterator[Watch]:
    query = f"replay=1&from_id=1&speed=1&conversation_id={conversation_id}"
    if transport == "websocket":
        url = f"{server.ws_url}/api/conversations/{conversation_id}/events?{query}"
        async with websockets.connect(url) as socket:
            yield WebSocketWatch(socket)
    elif transport == "socketio":
        watch = SocketIOWatch()
        await watch.client.connect(
            f"{server.url}?{query}", transports=["websocket"], wait_timeout=10
        )
        try:
            yield watch
        finally:
            await watch.client.disconnect()
    else:
        url = f"/api/conversations/{conversation_id}/events/stream?{query}"
        async with http.stream("GET", url) as response:
            yield SSEWatch(http, conversation_id, response.aiter_lines())


@pytest.mark.parametrize("transport", ["socketio", "websocket", "sse"])
async def test_a_paced_replay_plays_seeks_speeds_up_and_ends(
    client: httpx.AsyncClient, server: RunningServer, transport: str
) -> None:
    imported = await client.post("/api/conversations/import", json=RECORDING)
    conversation_id = imported.json()["conversation_id"]
    async with asyncio.timeout(30), watching(transport, server, client, conversation_id) as watch:
        kind, started = await watch.next()
        assert (kind, started["replay"], started["next_id"], started["last_id"]) == (
            "replay", "started", 1, 5,
        )  # fmt: skip
        assert started["replay_id"]
        kind, first = await watch.next()
        assert (kind, first["id"], first["args"]["thought"]) == ("event", 1, "hour 1")
        # The next event is an hour away at speed 1: a seek brings event 4 at once.
        await watch.control({"command": "seek", "id": 4})
        assert await watch.next() == ("replay", {**started, "replay": "seek", "next_id": 4})
        kind, sought = await watch.next()
        assert (kind, sought["id"]) == ("event", 4)
        await watch.control({"command": "pause"})
        kind, paused = await watch.next()
        assert (paused["replay"], paused["state"]) == ("pause", "paused")
        await watch.control({"command": "speed", "speed": 10000})  # an hour in 0.36 s
        assert (await watch.next())[1]["speed"] == 10000
        await watch.control({"command": "resume"})
        assert (await watch.next())[1]["state"] == "playing"
        kind, last = await watch.next()
        assert (kind, last["id"]) == ("event", 5)
        kind, ended = await watch.next()
        assert (kind, ended["replay"], ended["state"], ended["next_id"]) == (
            "replay", "ended", "ended", 6,
        )  # fmt: skip


async def test_replay_parameters_and_controls_are_checked(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    imported = await client.post("/api/conversations/import", json=RECORDING)
    conversation_id = imported.json()["conversation_id"]
    url = f"/api/conversations/{conversation_id}/events/stream"
    for params, field in [
        ({"replay": "2"}, "replay"),
        ({"replay": "1", "speed": "0"}, "speed"),
        ({"replay": "1", "speed": "nan"}, "speed"),
        ({"replay": "1", "from_id": "x"}, "from_id"),
        ({"replay": "1", "from_time": "yesterday"}, "from_time"),
    ]:
        response = await client.get(url, params=params)
        assert (response.status_code, response.json()["field"]) == (400, field), params
    missing = await client.post(
        f"/api/conversations/{conversation_id}/replay/nope", json={"command": "pause"}
    )
    assert missing.status_code == 404
    ws_url = f"{server.ws_url}/api/conversations/{conversation_id}/events?replay=1&speed=1"
    async with asyncio.timeout(20), websockets.connect(ws_url) as socket:
        await socket.recv()  # started
        await socket.recv()  # event 0
        await socket.send('{"command": "seek"}')
        refused = orjson.loads(await socket.recv())
        assert refused["error"] == "invalid_request"
        await socket.send("not json")
        assert orjson.loads(await socket.recv())["field"] == "command"
