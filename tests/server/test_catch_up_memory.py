"""A crowd that reconnects a few events behind catches up from memory, not the database.

The recent events every subscriber shares (`storage.recent.RecentEvents`) answer their
catch-up; ``threadline_catch_up_pages_total`` counts every page by where it came from,
and only a subscriber further back than the recent events reaches reads the log.
"""

from __future__ import annotations

import asyncio

import aiohttp
import httpx
import orjson
import socketio
import websockets

from tests.server.clients import create
from tests.server.prometheus import scrape, value
from tests.server.running import RunningServer

EVENTS = 40
THOUGHT_BYTES = 8 * 1024
"""40 of these exceed what memory keeps of one conversation (256 KiB): the oldest are
only in the log."""
CROWD = 10
"""Subscribers per transport resuming a few events behind the newest."""


async def catch_up(server: RunningServer, transport: str, cid: str, after: int, last: int) -> int:
    """Subscribe after ``after``, read through ``last``; how many events arrived."""
    seen: list[int] = []
    if transport == "ws":
        url = server.url.replace("http://", "ws://") + f"/api/conversations/{cid}/events"
        async with websockets.connect(f"{url}?latest_event_id={after}", max_size=None) as ws:
            while not seen or seen[-1] < last:
                seen.append(orjson.loads(await ws.recv())["id"])
    elif transport == "sse":
        headers = {"Last-Event-ID": str(after)}
        async with (
            httpx.AsyncClient(timeout=10) as http,
            http.stream(
                "GET", f"{server.url}/api/conversations/{cid}/events/stream", headers=headers
            ) as response,
        ):
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    seen.append(orjson.loads(line[5:])["id"])
                    if seen[-1] >= last:
                        break
    else:
        done = asyncio.Event()

        async def on_event(event: dict[str, int]) -> None:
            seen.append(event["id"])
            if event["id"] >= last:
                done.set()

        async with aiohttp.ClientSession() as session:
            client = socketio.AsyncClient(reconnection=False, http_session=session)
            client.on("oh_event", on_event)
            await client.connect(
                f"{server.url}?conversation_id={cid}&latest_event_id={after}",
                transports=["websocket"],
            )
            await asyncio.wait_for(done.wait(), 10)
            await client.disconnect()
    assert seen == list(range(after + 1, last + 1))
    return len(seen)


async def test_a_reconnecting_crowd_reads_memory_and_only_the_far_behind_read_the_log(
    fresh_server: RunningServer,
) -> None:
    fresh_server.env["THREADLINE_RATE_LIMIT"] = "none"
    fresh_server.start()
    async with httpx.AsyncClient(base_url=fresh_server.url, timeout=20) as http:
        cid = await create(http, title="crowd")
        for index in range(EVENTS):
            answer = await http.post(
                f"/api/conversations/{cid}/events",
                json={"action": "think", "args": {"thought": f"{index} " + "x" * THOUGHT_BYTES}},
            )
            assert answer.status_code == 200
        last = answer.json()["event_id"]
        before = scrape((await http.get("/metrics")).text)
        assert value(before, "threadline_catch_up_pages_total", source="log") == 0

        await asyncio.gather(
            *(
                catch_up(fresh_server, transport, cid, last - 5, last)
                for transport in ("ws", "sse", "sio")
                for _ in range(CROWD)
            )
        )
        crowd = scrape((await http.get("/metrics")).text)
        assert value(crowd, "threadline_catch_up_pages_total", source="log") == 0
        assert value(crowd, "threadline_catch_up_pages_total", source="memory") >= 3 * CROWD

        await catch_up(fresh_server, "ws", cid, -1, last)  # from the start: past memory
        far = scrape((await http.get("/metrics")).text)
        assert value(far, "threadline_catch_up_pages_total", source="log") >= 1
