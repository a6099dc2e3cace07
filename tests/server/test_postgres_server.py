"""The server on PostgreSQL (`THREADLINE_DATABASE`): runs, streams and search work as
on SQLite, and a subscriber of one server process sees a conversation another process
runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server.clients import agent_state, create, follow, ids
from tests.server.running import RunningServer
from tests.storage.test_postgres import POSTGRES, _drop


@pytest.fixture
def database() -> Iterator[str]:
    schema = "s_" + uuid.uuid4().hex[:16]
    yield f"{POSTGRES}?schema={schema}"
    asyncio.run(_drop(schema))


def on(database: str, directory: Path) -> RunningServer:
    return RunningServer(
        directory, env={"THREADLINE_DATABASE": database, "THREADLINE_DEMO_PACE": "0.05"}
    )


async def test_a_run_streams_resumes_across_a_restart_and_is_searchable(
    database: str, tmp_path: Path
) -> None:
    server = on(database, tmp_path / "one").start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            conversation_id = await create(client, initial_user_msg="postgres please")
            first = await follow(server, conversation_id, until=lambda e: e["id"] >= 4)
            server.restart()
            rest = await follow(server, conversation_id, after=first[-1]["id"])
            sequence = ids(first) + ids(rest)
            assert sequence == list(range(len(sequence)))
            assert agent_state(rest[-1]) in ("finished", "stopped")
            for _ in range(100):
                found = (await client.get("/api/events/search", params={"q": "postgres"})).json()
                if found["results"]:
                    break
                await asyncio.sleep(0.1)
            assert found["results"][0]["conversation_id"] == conversation_id
    finally:
        server.stop()


async def test_a_subscriber_of_another_process_sees_the_whole_run(
    database: str, tmp_path: Path
) -> None:
    runner = on(database, tmp_path / "runner").start()
    watcher = on(database, tmp_path / "watcher").start()
    try:
        async with httpx.AsyncClient(base_url=runner.url, timeout=20) as client:
            conversation_id = await create(client, title="watched from afar")
            watching = asyncio.create_task(follow(watcher, conversation_id))
            await asyncio.sleep(0.3)  # the watcher is subscribed before the run starts
            sent = await client.post(
                f"/api/conversations/{conversation_id}/message", json={"message": "go"}
            )
            assert sent.status_code == 200
            seen = await asyncio.wait_for(watching, 30)
            assert ids(seen) == list(range(len(seen)))
            assert agent_state(seen[-1]) == "finished"
            assert seen == await follow(runner, conversation_id)
    finally:
        runner.stop()
        watcher.stop()
