"""``until=end``: a stream that ends with the run, on every transport (so the README's
``curl`` of the SSE stream returns)."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import socketio
import websockets

from tests.server.clients import agent_state, create
from tests.server.running import RunningServer


async def test_sse_ends_after_the_run_and_a_finished_run_ends_at_once(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    conversation_id = await create(client, initial_user_msg="look around")
    url = f"/api/conversations/{conversation_id}/events/stream?until=end"
    async with asyncio.timeout(30):
        body = (await client.get(url, timeout=30)).text  # returns: the stream ended
    frames = [frame for frame in body.split("\n\n") if frame.startswith("id: ")]
    events = [orjson.loads(frame.split("data: ", 1)[1]) for frame in frames]
    assert [event["id"] for event in events] == list(range(len(events)))
    assert agent_state(events[-1]) == "finished"
    assert body.rstrip().endswith('event: end\ndata: {"reason":"the run ended (until=end)"}')

    async with asyncio.timeout(10):  # already over: the replay, then the end
        again = (await client.get(url)).text
    assert again.count("id: ") == len(events)

    refused = await client.get(url.replace("until=end", "until=later"))
    assert refused.status_code == 400
    assert refused.json()["field"] == "until"


async def test_websocket_and_socketio_end_with_the_run(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    conversation_id = await create(client, initial_user_msg="look around")
    address = f"{server.ws_url}/api/conversations/{conversation_id}/events?until=end"
    async with asyncio.timeout(30), websockets.connect(address) as socket:
        received = [orjson.loads(message) async for message in socket]
        assert socket.close_code == 1000
    assert agent_state(received[-1]) == "finished"
    assert [event["id"] for event in received] == list(range(len(received)))

    sio = socketio.AsyncClient(reconnection=False)
    seen: list[int] = []
    gone = asyncio.Event()
    sio.on("oh_event", lambda event: seen.append(event["id"]))
    sio.on("disconnect", lambda *_: gone.set())
    await sio.connect(
        f"{server.url}?conversation_id={conversation_id}&until=end", transports=["websocket"]
    )
    async with asyncio.timeout(20):
        await gone.wait()
    assert sorted(seen) == [event["id"] for event in received]
