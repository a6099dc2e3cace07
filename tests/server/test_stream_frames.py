"""Live events written as shared, ready-made frames (`server.streaming.frames`): the
frames are what websockets itself would send, the uvicorn protocol still has what the
writer reads, and on a real server a reader that stalls (its transport full, its buffer
overflowing to the log) and resumes gets every event once, in order, without holding up
a reader beside it, on the plain WebSocket and on Socket.IO."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import socketio
import uvicorn
import websockets
from uvicorn.server import ServerState
from websockets.frames import Frame, Opcode

from server.streaming.frames import (
    EXTENSION,
    DirectFramesProtocol,
    FrameCache,
    FrameWriter,
    frame_writer,
    socketio_event_frame,
    text_frame,
)
from tests.server.clients import create
from tests.server.conftest import FAST
from tests.server.running import RunningServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The module's server, without REST's rate limit: its tests append hundreds of events
    between them, past the 50 a second one caller may make."""
    env = {**FAST, "THREADLINE_RATE_LIMIT": "none"}
    running = RunningServer(tmp_path_factory.mktemp("server"), env=env).start()
    yield running
    running.stop()


BIG_EVENTS = 40
BIG_THOUGHT = "z" * 100_000
"""40 events of ~200 KB: past the kernel's socket buffers, the transport's high-water
mark and the subscription's 1 MiB buffer, so the stalled reader goes back to the log."""


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65_535, 65_536, 200_000])
def test_frames_are_what_websockets_sends(length: int) -> None:
    payload = ("é" * length).encode()[:length]
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert text_frame(payload) == expected
    assert socketio_event_frame(payload) == Frame(
        Opcode.TEXT, b'42["oh_event",' + payload + b"]"
    ).serialize(mask=False, extensions=[])


def test_the_cache_encodes_each_event_once_and_stays_bounded() -> None:
    encoded: list[bytes] = []

    def encode(data: bytes) -> bytes:
        encoded.append(data)
        return text_frame(data)

    cache = FrameCache(encode)
    first = b'{"id":1}'
    assert cache.frame(first) is cache.frame(first)
    assert encoded == [first]
    for index in range(1_000):
        cache.frame(b'{"id":%d}' % index)
    assert cache.frame(first) == text_frame(first)  # evicted long ago: encoded again
    assert len(encoded) == 1_002


async def test_uvicorn_protocol_still_has_what_the_writer_reads() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    config = uvicorn.Config(app, ws=DirectFramesProtocol)
    config.load()
    protocol = DirectFramesProtocol(config=config, server_state=ServerState(), app_state={})
    for name in (
        "handshake_complete",
        "initial_response",
        "close_sent",
        "disconnected",
        "writable",
        "transport",
    ):
        assert hasattr(protocol, name), f"uvicorn's protocol lost {name}"
    writer = FrameWriter(protocol)
    assert frame_writer({"extensions": {EXTENSION: writer}}) is writer
    assert frame_writer({"extensions": {}}) is None


class Reader:
    """A raw WebSocket subscriber (plain, or Socket.IO over Engine.IO's WebSocket) whose
    reading can stop: it holds a small receive window and a one-message queue."""

    def __init__(self, server: RunningServer, conversation_id: str, transport: str) -> None:
        self.sio = transport == "sio"
        query = f"conversation_id={conversation_id}&latest_event_id=-1"
        self.url = (
            f"{server.ws_url}/socket.io/?EIO=4&transport=websocket&{query}"
            if self.sio
            else f"{server.ws_url}/api/conversations/{conversation_id}/events?{query}"
        )
        self.port = server.port
        self.ids: list[int] = []
        self.arrived = asyncio.Event()

    async def open(self) -> None:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.setblocking(False)
        await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", self.port))
        self.socket = await websockets.connect(self.url, sock=raw, max_queue=1, max_size=None)
        if self.sio:
            assert (await self.socket.recv()).startswith("0")
            await self.socket.send("40")
            assert (await self.socket.recv()).startswith("40")

    async def read_through(self, last_id: int, seconds: float = 30) -> None:
        async with asyncio.timeout(seconds):
            while not self.ids or self.ids[-1] < last_id:
                message = await self.socket.recv()
                if not self.sio:
                    self.ids.append(orjson.loads(message)["id"])
                elif message == "2":
                    await self.socket.send("3")
                elif message.startswith("42"):
                    name, event = orjson.loads(message[2:])
                    assert name == "oh_event"
                    self.ids.append(event["id"])
                self.arrived.set()

    async def saw(self, last_id: int, seconds: float) -> None:
        """Wait until `read_through`, running elsewhere, has read through ``last_id``."""
        async with asyncio.timeout(seconds):
            while not self.ids or self.ids[-1] < last_id:
                self.arrived.clear()
                await self.arrived.wait()


async def append(client: httpx.AsyncClient, conversation_id: str, thought: str) -> int:
    response = await client.post(
        f"/api/conversations/{conversation_id}/events",
        json={"action": "think", "args": {"thought": thought}},
    )
    assert response.status_code == 200, response.text
    return int(response.json()["event_id"])


def exact(ids: list[int], last_id: int) -> bool:
    return ids == list(range(ids[0], last_id + 1)) and ids[0] <= 1


@pytest.mark.parametrize("transport", ["ws", "sio"])
async def test_a_stalled_reader_resumes_exactly_and_holds_up_nobody(
    client: httpx.AsyncClient, server: RunningServer, transport: str
) -> None:
    conversation_id = await create(client, title=f"stalled {transport}")
    fast = Reader(server, conversation_id, transport)
    stalled = Reader(server, conversation_id, transport)
    await fast.open()
    await stalled.open()
    last_id = await append(client, conversation_id, "first")
    await fast.read_through(last_id)
    await stalled.read_through(last_id)  # caught up: its next events are written directly

    reading = asyncio.create_task(fast.read_through(2**62, seconds=120))
    for _ in range(BIG_EVENTS):  # the stalled reader reads none of these yet
        last_id = await append(client, conversation_id, BIG_THOUGHT)
    await fast.saw(last_id, 30)
    assert exact(fast.ids, last_id)

    # It reads again while events keep coming (four appends at a time): it catches up
    # through the log and its queue, then takes them directly again; none may overtake
    # another.
    resuming = asyncio.create_task(stalled.read_through(2**62, seconds=120))
    for batch in range(20):
        appended = await asyncio.gather(
            *(
                append(client, conversation_id, f"after {batch}.{n} " + "w" * 20_000)
                for n in range(4)
            )
        )
        last_id = max(appended)
    await stalled.saw(last_id, 60)
    resuming.cancel()
    await fast.saw(last_id, 10)
    reading.cancel()
    assert exact(stalled.ids, last_id), stalled.ids
    assert exact(fast.ids, last_id)
    await fast.socket.close()
    await stalled.socket.close()


async def test_a_socketio_client_upgrading_from_long_polling_gets_every_event(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    """python-socketio's default: long-polling first, then the WebSocket upgrade, after
    which frames may go to the upgraded connection (`FrameGuard.upgrades`)."""
    conversation_id = await create(client, title="upgrade")
    ids: list[int] = []
    arrived = asyncio.Event()

    def on_event(event: dict[str, Any]) -> None:
        ids.append(event["id"])
        arrived.set()

    sio = socketio.AsyncClient(reconnection=False)
    sio.on("oh_event", on_event)
    last_id = await append(client, conversation_id, "before")
    await sio.connect(f"{server.url}?conversation_id={conversation_id}", wait_timeout=10)
    for index in range(30):
        last_id = await append(client, conversation_id, f"during {index}")
    async with asyncio.timeout(20):
        while not ids or ids[-1] < last_id:
            arrived.clear()
            await arrived.wait()
    assert sio.transport() == "websocket"
    await sio.disconnect()
    assert exact(ids, last_id), ids
