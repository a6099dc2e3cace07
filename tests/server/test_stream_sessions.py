"""Stream sessions: every transport re-checks its client's rights, bounds what a client
can make the server hold, and says why it ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import socketio
import websockets

from tests.server.clients import create
from tests.server.running import RunningServer
from tests.server.test_auth import keys_cli, make_key

INT64_OVERFLOW = str(2**63)


def rss_kib(server: RunningServer) -> int:
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def count(client: httpx.AsyncClient, conversation_id: str) -> int:
    response = await client.get(f"/api/conversations/{conversation_id}/events/count")
    return int(response.json()["count"])


class SocketIOClient:
    """python-socketio's client, remembering how it ended."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: list[dict[str, Any]] = []
        self.closed: list[Any] = []
        self.disconnected = asyncio.Event()
        self.client.on("oh_event", self.events.append)
        self.client.on("oh_stream_closed", self.closed.append)
        self.client.on("disconnect", self._gone)

    async def _gone(self, *_: Any) -> None:
        self.disconnected.set()

    async def connect(self, server: RunningServer, conversation_id: str, key: str = "") -> None:
        query = f"conversation_id={conversation_id}" + (f"&session_api_key={key}" if key else "")
        await self.client.connect(
            f"{server.url}?{query}", transports=["websocket"], wait_timeout=10
        )


@contextlib.asynccontextmanager
async def sse_lines(
    client: httpx.AsyncClient, conversation_id: str, key: str = ""
) -> AsyncIterator[AsyncIterator[str]]:
    params = {"session_api_key": key} if key else {}
    url = f"/api/conversations/{conversation_id}/events/stream"
    async with client.stream("GET", url, params=params) as response:
        assert response.status_code == 200
        yield response.aiter_lines()


async def drain(lines: AsyncIterator[str]) -> list[str]:
    """Every line until the server ends the stream."""
    return [line async for line in lines]


async def until_closed(socket: websockets.ClientConnection) -> list[dict[str, Any]]:
    """Every message until the server closes the socket, whatever the close code."""
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                messages.append(orjson.loads(await socket.recv()))
    return messages


async def test_a_revoked_key_ends_its_streams_and_their_posts(
    fresh_server: RunningServer,
) -> None:
    key = make_key(fresh_server, "alice")
    fresh_server.start()
    async with httpx.AsyncClient(
        base_url=fresh_server.url, headers={"X-Session-API-Key": key}, timeout=20
    ) as alice:
        conversation_id = await create(alice, title="revocation")
        url = (
            f"{fresh_server.ws_url}/api/conversations/{conversation_id}/events"
            f"?session_api_key={key}"
        )
        sio = SocketIOClient()
        await sio.connect(fresh_server, conversation_id, key)
        async with (
            websockets.connect(url) as socket,
            sse_lines(alice, conversation_id, key) as sse,
        ):
            await socket.send('{"action": "think", "args": {"thought": "before"}}')
            assert orjson.loads(await socket.recv())["id"] == 0

            key_id = keys_cli(fresh_server, "list").split()[0]
            keys_cli(fresh_server, "revoke", key_id)

            await socket.send('{"action": "think", "args": {"thought": "after"}}')
            messages = await until_closed(socket)
            assert any(message.get("error") == "unauthorized" for message in messages)
            assert socket.close_code == 4401
            async with asyncio.timeout(10):
                await sio.disconnected.wait()
                assert any("event: closed" in line for line in await drain(sse))
        assert sio.closed
        assert sio.closed[0]["error"] == "unauthorized"


async def test_deleting_a_conversation_ends_its_streams(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    """A session belongs to the conversation it opened, not to its id: after a delete
    and a new conversation under the same id, the old session can neither read nor post."""
    conversation_id = await create(client, conversation_id="reused-id", title="first")
    sio = SocketIOClient()
    await sio.connect(server, conversation_id)
    url = f"{server.ws_url}/api/conversations/{conversation_id}/events"
    async with websockets.connect(url) as socket, sse_lines(client, conversation_id) as sse:
        await asyncio.sleep(0.2)
        assert (await client.delete(f"/api/conversations/{conversation_id}")).status_code == 200
        await create(client, conversation_id="reused-id", title="second")
        # Refused, or never answered because the session is already closing; either way
        # nothing reaches the new conversation (counted below).
        with contextlib.suppress(
            socketio.exceptions.BadNamespaceError, socketio.exceptions.TimeoutError
        ):
            answer = await sio.client.call(
                "oh_user_action",
                {"action": "message", "args": {"content": "run rm -rf in the new one"}},
                timeout=5,
            )
            assert answer["status"] == "error"
        await until_closed(socket)
        async with asyncio.timeout(10):
            await sio.disconnected.wait()
            assert any("event: closed" in line for line in await drain(sse))
        assert socket.close_code == 4404
    assert sio.closed
    assert sio.closed[0]["error"] == "not_found"
    assert await count(client, "reused-id") == 0


async def test_socketio_clients_that_never_read_hold_bounded_memory(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    """Ten Engine.IO clients stop reading while 20 MB of events flow to each: the server
    keeps at most its per-client bound (1 MiB) for each, the rest stays in the log. (The
    same load with no client grows the server by ~80 MiB of SQLite page cache; unbounded
    queues added ~30 MiB per client.)"""
    conversation_id = await create(client, title="never read")
    url = f"{server.ws_url}/socket.io/?EIO=4&transport=websocket&conversation_id={conversation_id}"
    stalled = []
    for _ in range(10):
        socket = await websockets.connect(url, max_queue=4, close_timeout=0.2)
        assert (await socket.recv()).startswith("0")  # Engine.IO open
        await socket.send("40")  # Socket.IO connect to "/"
        assert (await socket.recv()).startswith("40")
        stalled.append(socket)  # and never read again
    await asyncio.sleep(0.5)
    before = rss_kib(server)
    thought = "y" * 200_000
    for _ in range(100):
        response = await client.post(
            f"/api/conversations/{conversation_id}/events",
            json={"action": "think", "args": {"thought": thought}},
        )
        assert response.status_code == 200
    await asyncio.sleep(1.0)
    grown_mib = (rss_kib(server) - before) / 1024
    for socket in stalled:
        await socket.close()
    assert grown_mib < 200, f"the server grew {grown_mib:.0f} MiB for 10 stalled clients"
    assert (await client.get("/api/health")).status_code == 200


async def test_oversized_and_binary_frames_get_clear_answers(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    conversation_id = await create(client, title="frames")
    url = f"{server.ws_url}/api/conversations/{conversation_id}/events"
    async with websockets.connect(url) as socket:
        await socket.send(b'{"action": "think", "args": {"thought": "binary"}}')
        assert orjson.loads(await socket.recv())["error"] == "invalid_event"
        await socket.send('{"action": "think", "args": {"thought": "still open"}}')
        assert orjson.loads(await socket.recv())["id"] == 0
    async with websockets.connect(url, max_size=None) as socket:
        huge = orjson.dumps({"action": "think", "args": {"thought": "z" * (15 << 20)}})
        with contextlib.suppress(websockets.ConnectionClosed):
            await socket.send(huge.decode())
        await until_closed(socket)
        assert socket.close_code == 1009
    assert await count(client, conversation_id) == 1

    sio = SocketIOClient()
    await sio.connect(server, conversation_id)
    answer = await sio.client.call("oh_user_action", timeout=5)
    assert answer["status"] == "error"
    assert answer["error"] == "invalid_event"
    await sio.client.disconnect()


@pytest.mark.parametrize("latest", [INT64_OVERFLOW, "-2", "1e3"])
async def test_an_impossible_latest_event_id_is_refused_everywhere(
    client: httpx.AsyncClient, server: RunningServer, latest: str
) -> None:
    conversation_id = await create(client, title="latest")
    stream = await client.get(
        f"/api/conversations/{conversation_id}/events/stream",
        params={"latest_event_id": latest},
    )
    assert stream.status_code == 400
    assert stream.json()["field"] == "latest_event_id"
    url = f"{server.ws_url}/api/conversations/{conversation_id}/events?latest_event_id={latest}"
    async with websockets.connect(url) as socket:
        assert orjson.loads(await socket.recv())["field"] == "latest_event_id"
        with pytest.raises(websockets.ConnectionClosed):
            await socket.recv()
    assert socket.close_code == 4400
    sio = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    sio.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(
            f"{server.url}?conversation_id={conversation_id}&latest_event_id={latest}",
            transports=["websocket"],
            wait_timeout=10,
        )
    assert "latest_event_id" in str(errors[0])


async def test_a_malformed_engineio_packet_gets_a_close_frame(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    conversation_id = await create(client, title="engine.io")
    url = f"{server.ws_url}/socket.io/?EIO=4&transport=websocket&conversation_id={conversation_id}"
    for bad in ("", b"\x00\x01binary", "9nonsense"):
        async with websockets.connect(url) as socket:
            assert (await socket.recv()).startswith("0")
            await socket.send("40")
            assert (await socket.recv()).startswith("40")
            await socket.send(bad)
            with contextlib.suppress(orjson.JSONDecodeError):
                await until_closed(socket)
            await socket.wait_closed()
            assert socket.close_code in (1002, 1003), (bad, socket.close_code)
    assert "Traceback" not in server.log.read_text()


async def test_streams_are_capped_per_user(tmp_path: Path) -> None:
    server = RunningServer(
        tmp_path / "server",
        env={
            "THREADLINE_MAX_STREAMS_PER_USER": "2",
            "THREADLINE_ALLOW_LOCAL_RUNTIME_WITH_KEYS": "1",
        },
    )
    key = make_key(server, "carol")
    server.start()
    try:
        async with httpx.AsyncClient(
            base_url=server.url, headers={"X-Session-API-Key": key}
        ) as carol:
            conversation_id = await create(carol, title="capped")
            url = (
                f"{server.ws_url}/api/conversations/{conversation_id}/events?session_api_key={key}"
            )
            async with websockets.connect(url), websockets.connect(url):
                async with websockets.connect(url) as third:
                    refusal = orjson.loads(await third.recv())
                    await until_closed(third)
                assert refusal["error"] == "too_many_requests"
                assert third.close_code == 4429
                over = await carol.get(f"/api/conversations/{conversation_id}/events/stream")
                assert over.status_code == 429
                assert over.headers["Retry-After"]
            # Closed streams give their places back.
            async with websockets.connect(url) as again:
                await again.send('{"action": "think", "args": {"thought": "back"}}')
                assert orjson.loads(await again.recv())["id"] == 0
    finally:
        server.stop()
