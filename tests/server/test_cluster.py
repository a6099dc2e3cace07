"""Three server processes on one PostgreSQL database (one schema per test): events fan
out to subscribers of every process over every transport exactly once; a message or a
control request reaches the run whichever process receives it; when a run's process is
killed (-9), another takes the run over within its lease and records why; the caps and
the queue hold across the processes."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
import socketio

from tests.server.clients import agent_state, create, ended, follow, ids
from tests.server.running import RunningServer
from tests.storage.test_postgres import POSTGRES, _drop

pytestmark = pytest.mark.slow
LEASE = "1.5"
Event = dict[str, Any]


@pytest.fixture
def database() -> Iterator[str]:
    schema = "c_" + uuid.uuid4().hex[:16]
    yield f"{POSTGRES}?schema={schema}"
    asyncio.run(_drop(schema))


def cluster(database: str, directory: Path, **env: str) -> list[RunningServer]:
    settings = {
        "THREADLINE_DATABASE": database,
        "THREADLINE_CLUSTER_LEASE": LEASE,
        "THREADLINE_DEMO_PACE": "0.05",
        "THREADLINE_RATE_LIMIT": "none",
        **env,
    }
    return [RunningServer(directory / name, env=settings) for name in ("a", "b", "c")]


@pytest_asyncio.fixture
async def servers(database: str, tmp_path: Path) -> AsyncIterator[list[RunningServer]]:
    started = [server.start() for server in cluster(database, tmp_path)]
    yield started
    for server in started:
        server.stop()


def clients(servers: list[RunningServer]) -> list[httpx.AsyncClient]:
    return [httpx.AsyncClient(base_url=server.url, timeout=30) for server in servers]


async def follow_sse(server: RunningServer, conversation_id: str) -> list[Event]:
    received: list[Event] = []
    url = f"{server.url}/api/conversations/{conversation_id}/events/stream"
    async with (
        asyncio.timeout(30),
        httpx.AsyncClient(timeout=30) as client,
        client.stream("GET", url) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: ") and '"id"' in line:
                received.append(orjson.loads(line[len("data: ") :]))
                if ended(received[-1]):
                    return received
    return received


async def follow_socketio(server: RunningServer, conversation_id: str) -> list[Event]:
    received: list[Event] = []
    done = asyncio.Event()

    def take(event: Event) -> None:
        received.append(event)
        if ended(event):
            done.set()

    sio = socketio.AsyncClient(reconnection=False)
    sio.on("oh_event", take)
    await sio.connect(
        f"{server.url}?conversation_id={conversation_id}&latest_event_id=-1",
        transports=["websocket"],
    )
    try:
        async with asyncio.timeout(30):
            await done.wait()
    finally:
        await sio.disconnect()
    return received


async def wait_for(
    server: RunningServer, conversation_id: str, after: int, wanted: Callable[[Event], bool]
) -> Event:
    events = await follow(server, conversation_id, after=after, until=wanted)
    return events[-1]


async def test_every_subscriber_of_every_process_gets_each_event_once(
    servers: list[RunningServer],
) -> None:
    a, b, c = servers
    http_a, _, http_c = clients(servers)
    async with http_a, http_c:
        conversation_id = await create(http_a, title="watched from three processes")
        watchers = [
            asyncio.create_task(follow(b, conversation_id)),
            asyncio.create_task(follow_sse(c, conversation_id)),
            asyncio.create_task(follow_socketio(a, conversation_id)),
            asyncio.create_task(follow_socketio(b, conversation_id)),
            asyncio.create_task(follow(c, conversation_id)),
        ]
        await asyncio.sleep(0.5)  # every watcher is subscribed before the run starts
        sent = await http_c.post(
            f"/api/conversations/{conversation_id}/message", json={"message": "go"}
        )
        assert sent.status_code == 200, sent.text
        seen = await asyncio.gather(*watchers)
    expected = list(range(len(seen[0])))
    assert agent_state(seen[0][-1]) == "finished"
    for events in seen:
        assert ids(events) == expected  # 0..N, each once, in order
    assert all(events == seen[0] for events in seen)


async def test_messages_and_controls_reach_the_run_through_any_process(
    servers: list[RunningServer],
) -> None:
    a, b, c = servers
    http_a, http_b, http_c = clients(servers)
    async with http_a, http_b, http_c:
        # A demo run started on a: paused through b, resumed through c.
        conversation_id = await create(http_a, initial_user_msg="look around")
        running = await wait_for(c, conversation_id, -1, lambda e: agent_state(e) == "running")
        paused = await http_b.post(f"/api/conversations/{conversation_id}/pause")
        assert paused.status_code == 200, paused.text
        held = await wait_for(
            c, conversation_id, running["id"], lambda e: agent_state(e) == "paused"
        )
        assert "paused by" in held["extras"]["reason"]
        resumed = await http_c.post(f"/api/conversations/{conversation_id}/resume")
        assert resumed.status_code == 200, resumed.text
        end = await wait_for(a, conversation_id, held["id"], ended)
        assert agent_state(end) == "finished"

        # A shell run on a gets, through b, a message its agent has not seen: it runs next.
        shell = await create(http_a, agent="shell", initial_user_msg="sleep 1")
        await wait_for(b, shell, -1, lambda e: agent_state(e) == "running")
        sent = await http_b.post(
            f"/api/conversations/{shell}/message", json={"message": "echo forwarded"}
        )
        assert sent.status_code == 200, sent.text
        outputs: list[str] = []

        def forwarded_ran(event: Event) -> bool:
            if event.get("observation") == "run":
                outputs.append(event["content"])
            return any("forwarded" in output for output in outputs)

        await follow(c, shell, until=forwarded_ran)

        # Stopped through c, whichever process runs it.
        long = await create(http_b, agent="shell", initial_user_msg="sleep 30")
        start = await wait_for(a, long, -1, lambda e: agent_state(e) == "running")
        stopped = await http_c.post(f"/api/conversations/{long}/stop")
        assert stopped.status_code == 200, stopped.text
        end = await wait_for(a, long, start["id"], ended)
        assert agent_state(end) == "stopped"
        assert end["extras"]["reason"].startswith("stopped by")

        # Deleted through a process that does not run it: stopped there first, then gone.
        doomed = await create(http_a, agent="shell", initial_user_msg="sleep 30")
        await wait_for(b, doomed, -1, lambda e: agent_state(e) == "running")
        deleted = await http_c.delete(f"/api/conversations/{doomed}")
        assert deleted.status_code == 200, deleted.text
        for http in (http_a, http_b, http_c):
            assert (await http.get(f"/api/conversations/{doomed}")).status_code == 404
            assert doomed not in (await http.get("/api/sessions")).json()["running"]


async def test_a_killed_process_s_run_is_taken_over_and_streams_go_on(
    servers: list[RunningServer],
) -> None:
    a, b, c = servers
    http_a, http_b, http_c = clients(servers)
    async with http_a, http_b, http_c:
        conversation_id = await create(http_a, agent="shell", initial_user_msg="sleep 60")
        first = await follow(b, conversation_id, until=lambda e: agent_state(e) == "running")
        watching = asyncio.create_task(follow(c, conversation_id, after=first[-1]["id"]))
        killed_at = time.monotonic()
        a.stop(signal.SIGKILL)
        rest = await asyncio.wait_for(watching, 30)
        took = time.monotonic() - killed_at
        end = rest[-1]
        assert agent_state(end) == "stopped"
        assert "stopped renewing its lease" in end["extras"]["reason"]
        assert end["extras"]["conversation_status"] == "STOPPED"
        sequence = ids(first) + ids(rest)
        assert sequence == list(range(len(sequence)))  # no gap, no duplicate
        print(f"taken over {took:.1f} s after the kill (lease {LEASE} s)")

        record = (await http_b.get(f"/api/conversations/{conversation_id}")).json()
        assert record["status"] == "STOPPED"
        sessions = (await http_c.get("/api/sessions")).json()
        assert conversation_id not in sessions["running"]

        # The conversation goes on, on a live process.
        sent = await http_c.post(
            f"/api/conversations/{conversation_id}/message", json={"message": "echo again"}
        )
        assert sent.status_code == 200, sent.text
        again = await follow(b, conversation_id, after=end["id"])
        assert agent_state(again[-1]) == "finished"


async def test_caps_hold_under_concurrent_creation_across_processes(
    database: str, tmp_path: Path
) -> None:
    servers = [
        server.start()
        for server in cluster(
            database, tmp_path, THREADLINE_MAX_RUNNING="2", THREADLINE_AT_CAP="reject"
        )
    ]
    try:
        https = clients(servers)
        try:
            answers = await asyncio.gather(
                *(
                    https[n % 3].post(
                        "/api/conversations",
                        json={"agent": "shell", "initial_user_msg": "sleep 30"},
                    )
                    for n in range(9)
                )
            )
            statuses = sorted(answer.status_code for answer in answers)
            assert statuses == [201, 201] + [429] * 7, [a.text for a in answers]
            counts = [(await http.get("/api/sessions")).json() for http in https]
            assert {len(count["running"]) for count in counts} == {2}
            # Starting one that already runs (on whichever process) is no new run: no 429.
            running = [a.json()["conversation_id"] for a in answers if a.status_code == 201]
            for http in https:
                again = await http.post(f"/api/conversations/{running[0]}/start")
                assert again.status_code == 200, again.text
        finally:
            for http in https:
                await http.aclose()
    finally:
        for server in servers:
            server.stop()


async def test_the_queue_is_shared_and_starts_where_a_slot_frees(
    database: str, tmp_path: Path
) -> None:
    servers = [server.start() for server in cluster(database, tmp_path, THREADLINE_MAX_RUNNING="1")]
    a, _, c = servers
    https = clients(servers)
    try:
        first = await create(https[0], agent="shell", initial_user_msg="sleep 30")
        await wait_for(a, first, -1, lambda e: agent_state(e) == "running")
        second = await create(https[1], agent="shell", initial_user_msg="echo queued")
        waiting = (await https[2].get(f"/api/conversations/{second}")).json()
        assert waiting["status"] == "QUEUED"
        assert waiting["queue_position"] == 1
        stopped = await https[2].post(f"/api/conversations/{first}/stop")
        assert stopped.status_code == 200, stopped.text
        end = await follow(c, second)
        assert agent_state(end[-1]) == "finished"
        assert any(e.get("content", "").strip() == "queued" for e in end)
    finally:
        for http in https:
            await http.aclose()
        for server in servers:
            server.stop()


async def test_a_graceful_stop_ends_its_runs_itself_and_nobody_takes_them_over(
    servers: list[RunningServer],
) -> None:
    a, b, _ = servers
    http_a, http_b = clients(servers[:2])
    async with http_a, http_b:
        conversation_id = await create(http_a, agent="shell", initial_user_msg="sleep 60")
        await wait_for(b, conversation_id, -1, lambda e: agent_state(e) == "running")
        a.stop()  # SIGTERM: graceful (uvicorn re-raises it once done: exit -15)
        await asyncio.sleep(float(LEASE) * 2)  # long enough for a takeover, were one due
        events = (
            await http_b.get(f"/api/conversations/{conversation_id}/events", params={"limit": 100})
        ).json()["events"]
    ends = [event for event in events if agent_state(event) == "stopped"]
    assert [end["extras"]["reason"] for end in ends] == ["the server is shutting down"]
