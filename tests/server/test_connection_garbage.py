"""An ended stream connection is freed when it ends, not left for the garbage collector.

A reference cycle anywhere around a connection keeps all of it (protocol, parser,
buffers, Engine.IO socket) in memory until the collector's next pass over the generation
it has reached by then: after a reconnect storm of 1,000 subscribers those passes ran in
the middle of the storm, each 200-300 ms of CPU with the event loop stopped, and what
they freed had grown the heap. Four cycles did it: the SSE/REST protocol and its
lingering transport (ours), Engine.IO's ``OSError`` on a WebSocket disconnect (the
exception, its traceback and the handler holding the task), the class Engine.IO
defines per request around the connection's ``receive``, and a WebSocket protocol whose
scope held its `FrameWriter` holding the protocol.

Only the server's own heap can show that, so this test serves the real application as
``serve`` does (`ThreadlineServer`, with its frame-writing WebSocket protocol) in its own
process and event loop (real sockets on 127.0.0.1, real SQLite, the
official clients), keeps the collector off while clients come and go, then asks it what
it would have had to collect.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import engineio.async_socket
import httpx
import pytest
import socketio
import websockets
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from server.app import create_app
from server.protocol import _LingeringTransport
from server.serving import ThreadlineServer, _config
from server.settings import Settings
from server.streaming.frames import FrameWriter
from server.streaming.session import StreamSession
from tests.server.running import free_port

CLIENTS = 12
SERVER_SIDE = (
    H11Protocol,
    RequestResponseCycle,
    WebSocketsSansIOProtocol,
    _LingeringTransport,
    engineio.async_socket.AsyncSocket,
    StreamSession,
    FrameWriter,
)


@pytest.fixture
def collector_restored() -> Iterator[None]:
    """The app freezes the heap and raises the thresholds at startup: undo it after."""
    thresholds, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    if enabled:
        gc.enable()


@contextlib.asynccontextmanager
async def serving(data_dir: Path) -> AsyncIterator[tuple[str, object]]:
    settings = Settings.from_env({}, data_dir=data_dir, port=free_port(), rate_limit=None)
    app = create_app(settings)
    server = ThreadlineServer(_config(settings, app), app)  # as served: with frame writers
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the server did not start"
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{settings.port}", app
    finally:
        server.should_exit = True
        await task


async def sse_visits(url: str, conversation_id: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(CLIENTS):
            path = f"{url}/api/conversations/{conversation_id}/events/stream"
            async with client.stream("GET", path, headers={"Connection": "close"}) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("retry:"):
                        break


async def websocket_visits(url: str, conversation_id: str) -> None:
    ws_url = url.replace("http://", "ws://") + f"/api/conversations/{conversation_id}/events"
    for _ in range(CLIENTS):
        async with websockets.connect(ws_url, close_timeout=2):
            pass


async def socketio_visits(url: str, conversation_id: str) -> None:
    for _ in range(CLIENTS):
        async with aiohttp.ClientSession() as http:
            client = socketio.AsyncClient(reconnection=False, http_session=http)
            await client.connect(
                f"{url}?conversation_id={conversation_id}",
                transports=["websocket"],
                wait_timeout=10,
            )
            await client.disconnect()


async def settled(app: object, seconds: float = 5.0) -> None:
    """Until the server has ended every session, and a moment for the sockets to close."""
    streams = app.state.streams  # type: ignore[attr-defined]
    for _ in range(int(seconds / 0.05)):
        if len(streams) == 0:
            break
        await asyncio.sleep(0.05)
    assert len(streams) == 0
    await asyncio.sleep(0.5)


def _server_transport(thing: object, port: int) -> bool:
    """One of the server's socket transports (the clients' are in this process too)."""
    if not isinstance(thing, asyncio.Transport) or not hasattr(thing, "get_extra_info"):
        return False
    sockname = thing.get_extra_info("sockname")
    return isinstance(sockname, tuple) and sockname[1] == port


def server_side_garbage(port: int) -> Counter[str]:
    """What a full collection would find unreachable now, of the server's connections."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = Counter(
            type(o).__name__
            for o in gc.garbage
            if isinstance(o, SERVER_SIDE) or _server_transport(o, port)
        )
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
        gc.collect()
    return found


@pytest.mark.parametrize("transport", ["sse", "websocket", "socketio"])
async def test_an_ended_connection_leaves_no_garbage(
    transport: str, tmp_path: Path, collector_restored: None
) -> None:
    async with serving(tmp_path) as (url, app):
        async with httpx.AsyncClient(base_url=url) as client:
            answer = await client.post("/api/conversations", json={"title": "garbage"})
            conversation_id = answer.json()["conversation_id"]
        gc.collect()
        gc.disable()  # what the visits leave stays for `server_side_garbage` to see
        if transport == "sse":
            await sse_visits(url, conversation_id)
        elif transport == "websocket":
            await websocket_visits(url, conversation_id)
        else:
            await socketio_visits(url, conversation_id)
        await settled(app)
        assert server_side_garbage(int(url.rsplit(":", 1)[1])) == Counter()


async def test_an_ended_socketio_connection_is_not_kept_by_its_ping_timer(
    tmp_path: Path, collector_restored: None
) -> None:
    """Engine.IO's ping timer sleeps a ping interval (15 s) holding its socket, and with
    it the queue and the packets still in it: after a storm, the sockets of a thousand
    ended connections were alive for that long, scattered over the heap."""
    async with serving(tmp_path) as (url, app):
        async with httpx.AsyncClient(base_url=url) as client:
            answer = await client.post("/api/conversations", json={"title": "pings"})
            conversation_id = answer.json()["conversation_id"]
        await socketio_visits(url, conversation_id)
        await settled(app)
        gc.collect()
        alive = [o for o in gc.get_objects() if isinstance(o, engineio.async_socket.AsyncSocket)]
        assert alive == []
