"""The plain WebSocket and Server-Sent Events streams."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
import websockets

from tests.server.clients import agent_state, create, ended, follow, ids
from tests.server.running import RunningServer


async def test_websocket_resume_is_gapless(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    conversation_id = await create(client, initial_user_msg="websocket")
    first = await follow(server, conversation_id, until=lambda e: e["id"] >= 5)
    rest = await follow(server, conversation_id, after=first[-1]["id"])
    sequence = ids(first) + ids(rest)
    assert sequence == list(range(len(sequence)))
    assert agent_state(rest[-1]) == "finished"


async def test_websocket_actions_and_errors(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    conversation_id = await create(client, title="ws actions")
    url = f"{server.ws_url}/api/conversations/{conversation_id}/events"
    async with asyncio.timeout(20), websockets.connect(url) as socket:
        await socket.send('{"action": "teleport", "args": {}}')
        error = orjson.loads(await socket.recv())
        assert error["error"] == "invalid_event"
        assert error["field"] == "action"
        await socket.send("not json at all")
        assert orjson.loads(await socket.recv())["error"] == "invalid_event"
        await socket.send(
            orjson.dumps({"action": "think", "args": {"thought": "over ws"}}).decode()
        )
        event = orjson.loads(await socket.recv())
        assert (event["id"], event["source"], event["args"]["thought"]) == (0, "user", "over ws")


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/api/conversations/no-such-thing/events", 4404),
        ("/api/conversations/CID/events?latest_event_id=x", 4400),
    ],
)
async def test_websocket_refusals_give_a_reason(
    client: httpx.AsyncClient, server: RunningServer, path: str, code: int
) -> None:
    conversation_id = await create(client, title="ws refusals")
    url = server.ws_url + path.replace("CID", conversation_id)
    async with websockets.connect(url) as socket:
        reason = orjson.loads(await socket.recv())
        assert reason["message"]
        with pytest.raises(websockets.ConnectionClosed):
            await socket.recv()
    assert socket.close_code == code


async def _sse(
    client: httpx.AsyncClient,
    conversation_id: str,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> list[tuple[int, dict[str, Any]]]:
    """(id, event) pairs from the SSE stream until the run ends."""
    received: list[tuple[int, dict[str, Any]]] = []
    url = f"/api/conversations/{conversation_id}/events/stream"
    async with (
        asyncio.timeout(30),
        client.stream("GET", url, headers=headers, params=params) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        frame_id = None
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                frame_id = int(line[4:])
            elif line.startswith("data: "):
                event = orjson.loads(line[6:])
                assert event["id"] == frame_id
                received.append((frame_id, event))
                if ended(event):
                    return received
    return received


async def test_sse_resumes_from_last_event_id(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    conversation_id = await create(client, initial_user_msg="sse")
    everything = await _sse(client, conversation_id)
    assert [frame for frame, _ in everything] == list(range(len(everything)))
    resumed = await _sse(client, conversation_id, headers={"Last-Event-ID": "9"})
    assert [frame for frame, _ in resumed] == list(range(10, len(everything)))
    from_query = await _sse(client, conversation_id, latest_event_id=len(everything) - 3)
    assert [frame for frame, _ in from_query] == [len(everything) - 2, len(everything) - 1]


async def test_sse_refusals(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/conversations/nope/events/stream")
    assert missing.status_code == 404
    conversation_id = await create(client, title="sse refusals")
    bad = await client.get(
        f"/api/conversations/{conversation_id}/events/stream", headers={"Last-Event-ID": "x"}
    )
    assert bad.status_code == 400


async def test_sse_keeps_idle_streams_alive(tmp_path: Any) -> None:
    server = RunningServer(
        tmp_path / "server", env={"THREADLINE_HEARTBEAT_INTERVAL": "0.2"}
    ).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            conversation_id = await create(http, title="idle")
            url = f"/api/conversations/{conversation_id}/events/stream"
            async with asyncio.timeout(10), http.stream("GET", url) as response:
                lines = response.aiter_lines()
                assert (await anext(lines)).startswith("retry:")
                while (line := await anext(lines)) == "":
                    pass
                assert line.startswith(": keep-alive")
    finally:
        server.stop()
