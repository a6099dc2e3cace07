"""``threadline serve --workers N``: N server processes on one port and one PostgreSQL
database, each in the cluster with its own lease; a worker that dies is replaced (its run
taken over by another); SIGTERM stops them all. Without a database it is refused."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.server.clients import agent_state, create, follow
from tests.server.running import REPOSITORY, RunningServer
from tests.storage.test_postgres import POSTGRES, _drop

pytestmark = pytest.mark.slow


@pytest.fixture
def schema() -> Iterator[str]:
    name = "w_" + uuid.uuid4().hex[:16]
    yield name
    asyncio.run(_drop(name))


def workers_of(pid: int) -> list[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    return found


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def nodes(schema: str) -> list[str]:
    connection = await asyncpg.connect(POSTGRES)
    try:
        rows = await connection.fetch(
            f"SELECT node FROM {schema}.cluster_nodes WHERE expires > clock_timestamp()"
        )
        return sorted(row["node"] for row in rows)
    finally:
        await connection.close()


async def until(condition: Callable[[], Awaitable[bool]], seconds: float = 20) -> None:
    for _ in range(int(seconds * 10)):
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not so within {seconds:g} s")


async def test_workers_share_the_port_replace_the_dead_and_stop_together(
    schema: str, tmp_path: Path
) -> None:
    server = RunningServer(
        tmp_path,
        env={
            "THREADLINE_DATABASE": f"{POSTGRES}?schema={schema}",
            "THREADLINE_WORKERS": "2",
            "THREADLINE_CLUSTER_LEASE": "1.5",
        },
    ).start()
    try:
        assert server.process is not None
        await until(lambda: _count_is(schema, 2))
        workers = workers_of(server.process.pid)
        assert len(workers) == 2

        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            conversation_id = await create(client, agent="shell", initial_user_msg="echo hi")
            events = await follow(server, conversation_id)
            assert agent_state(events[-1]) == "finished"

            before = await nodes(schema)
            os.kill(workers[0], signal.SIGKILL)
            # Another worker takes its place (a new node) and the dead one's lease ends.
            await until(lambda: _replaced(schema, before))
            assert len(workers_of(server.process.pid)) == 2
            again = await create(client, agent="shell", initial_user_msg="echo again")
            assert agent_state((await follow(server, again))[-1]) == "finished"
    finally:
        assert server.stop() == 0
    assert not any(alive(pid) for pid in workers)


async def _count_is(schema: str, count: int) -> bool:
    try:
        return len(await nodes(schema)) == count
    except asyncpg.UndefinedTableError:
        return False


async def _replaced(schema: str, before: list[str]) -> bool:
    now = await nodes(schema)
    return len(now) == 2 and len(set(now) & set(before)) == 1


def test_workers_without_a_database_are_refused(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--workers", "2",
         "--data-dir", str(tmp_path)],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert finished.returncode == 2
    assert "need database" in finished.stderr
    assert "Traceback" not in finished.stderr
