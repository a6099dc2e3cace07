"""The client library (client/) against a real server: typed errors, conversations,
paging, search, recordings, and `watch` resuming across a kill -9 of the server."""

from __future__ import annotations

import asyncio
import json
import signal
from decimal import Decimal

import pytest

from client import (
    AsyncThreadline,
    BadRequest,
    Conflict,
    Event,
    NotFound,
    ServerUnreachable,
    Threadline,
    agent_state_of,
)
from tests.server.running import RunningServer

RECORDED = 230  # more than two pages of 100


def recording(count: int) -> bytes:
    events = [
        {"source": "agent", "action": "run", "args": {"command": f"echo step {n}"}}
        for n in range(count)
    ]
    return "\n".join(json.dumps(event) for event in events).encode()


def finished(event: Event) -> bool:
    return agent_state_of(event) == "finished"


async def test_conversations_crud_and_typed_errors(server: RunningServer) -> None:
    async with AsyncThreadline(server.url) as threadline:
        conversation = await threadline.create(title="crud", max_iterations=7)
        assert (conversation.title, conversation.max_iterations) == ("crud", 7)
        assert conversation.cost == Decimal(0)
        assert conversation.currency == "USD"
        assert (await threadline.get(conversation.id)).id == conversation.id
        listed = [c.id async for c in threadline.conversations()]
        assert conversation.id in listed
        assert (await threadline.rename(conversation.id, "renamed")).title == "renamed"

        with pytest.raises(BadRequest) as bad:
            await threadline.create("hi", agent="no-such-agent")
        assert (bad.value.status, bad.value.field) == (400, "agent")
        assert "no-such-agent" in bad.value.message
        with pytest.raises(Conflict):
            await threadline.create(conversation_id=conversation.id)
        with pytest.raises(Conflict) as paused:
            await threadline.control(conversation.id, "pause")
        assert paused.value.error == "conflict"

        await threadline.delete(conversation.id)
        with pytest.raises(NotFound) as missing:
            await threadline.get(conversation.id)
        assert missing.value.error == "not_found"
        assert conversation.id in missing.value.message

    async with AsyncThreadline("http://127.0.0.1:9") as nowhere:
        with pytest.raises(ServerUnreachable):
            await nowhere.health()


async def test_paging_counting_search_and_recordings(server: RunningServer) -> None:
    async with AsyncThreadline(server.url) as threadline:
        imported = await threadline.import_recording(
            recording(RECORDED), lines=True, title="many steps"
        )
        assert imported.events == RECORDED
        ids = [event["id"] async for event in threadline.events(imported.conversation_id)]
        assert ids == list(range(RECORDED))
        later = [e["id"] async for e in threadline.events(imported.conversation_id, after=199)]
        assert later == list(range(200, RECORDED))
        assert await threadline.count(imported.conversation_id, query="step 1") > 0
        filtered = threadline.events(imported.conversation_id, query="step 12")
        assert [e["args"]["command"] async for e in filtered][:2] == [
            "echo step 12",
            "echo step 120",
        ]

        exported = b"".join([chunk async for chunk in threadline.export(imported.conversation_id)])
        assert len(exported.splitlines()) == RECORDED

        for _ in range(100):  # the full-text index trails the log by a moment
            page = await threadline.search_page("step", limit=5)
            if not page.pending and page.hits:
                break
            await asyncio.sleep(0.05)
        assert page.next_cursor is not None
        assert len(page.hits) == 5
        assert {hit.conversation_title for hit in page.hits} == {"many steps"}
        every = [hit async for hit in threadline.search("step")]
        assert len(every) == RECORDED


async def test_watch_resumes_across_a_kill_with_no_gap_and_no_duplicate(
    fresh_server: RunningServer,
) -> None:
    fresh_server.env["THREADLINE_DEMO_PACE"] = "0.1"
    fresh_server.start()
    async with AsyncThreadline(fresh_server.url) as threadline:
        conversation = await threadline.create("look around")
        seen: list[Event] = []
        killed = restarted = False
        async with asyncio.timeout(60):
            async for event in threadline.watch(conversation.id, give_up_after=30):
                seen.append(event)
                if len(seen) == 5 and not killed:
                    # Mid-run: the server dies at once, and comes back on the same port.
                    fresh_server.stop(signal.SIGKILL)
                    killed = True
                    await asyncio.to_thread(fresh_server.start)
                    restarted = True
                    # A new run after the restart; the watch must catch up and go on.
                    await threadline.send(conversation.id, "and now?")
                if restarted and finished(event):
                    break
        ids = [event["id"] for event in seen]
        assert ids == list(range(len(ids)))  # every event once, in order, no gap
        assert len(ids) > 5
        stored = [event["id"] async for event in threadline.events(conversation.id)]
        assert stored[: len(ids)] == ids


async def test_watch_refusals_are_typed(server: RunningServer) -> None:
    async with AsyncThreadline(server.url) as threadline:
        with pytest.raises(NotFound):
            async for _ in threadline.watch("no-such-conversation"):
                pass
        with pytest.raises(NotFound):
            async for _ in threadline.watch("no-such-conversation", transport="socketio"):
                pass


def test_the_blocking_client_over_socketio(server: RunningServer) -> None:
    with Threadline(server.url) as threadline:
        conversation = threadline.create("look around")
        ids = []
        for event in threadline.watch(conversation.id, transport="socketio"):
            ids.append(event["id"])
            if finished(event):
                break
        assert ids == list(range(len(ids)))
        assert ids == [event["id"] for event in threadline.events(conversation.id)]
        # From the middle: only what comes after.
        middle = ids[len(ids) // 2]
        resumed = threadline.watch(conversation.id, after=middle)
        assert next(resumed)["id"] == middle + 1
        resumed.close()
        assert [task["status"] for task in threadline.plan(conversation.id)] == ["done"] * 3
        assert threadline.control(conversation.id, "stop").status in ("STOPPED", "STOPPING")
