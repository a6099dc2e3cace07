"""Background tasks (reference 003) on a real server: lifecycle in the log, results,
priority through the one queue, a full queue, timeouts, cancel before and after the
start, bad requests, and static paths beside ``/api/tasks/{task_id}``."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import httpx
import pytest
import pytest_asyncio

from tests.server.running import RunningServer
from tests.server.tasks_support import QUICK, documented_client, follow_task

TASK_ID = re.compile(r"task-[0-9a-f]{32}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One run at a time and three places in the queue."""
    env = {**QUICK, "THREADLINE_MAX_RUNNING": "1", "THREADLINE_MAX_QUEUED": "3"}
    running = RunningServer(tmp_path_factory.mktemp("tasks"), env=env).start()
    yield running
    running.stop()


@pytest_asyncio.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async for http, _ in documented_client(server):
        yield http


async def shell(client: httpx.AsyncClient, command: str, **fields: object) -> dict[str, object]:
    body = {"task_type": "shell", "description": command, "parameters": {"command": command}}
    response = await client.post("/api/tasks", json={**body, **fields})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_a_task_walks_its_lifecycle_in_its_log(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    created = await shell(client, "echo hello")
    assert created["status"] == "created"
    assert TASK_ID.fullmatch(str(created["task_id"]))
    task_id = str(created["task_id"])
    assert await follow_task(server, task_id) == ["created", "running", "completed"]
    task = (await client.get(f"/api/tasks/{task_id}")).json()
    assert task["status"] == "completed"
    assert task["result"]["outputs"] == {"exit_code": 0, "output": "hello\n"}
    assert task["error"] is None
    assert task["started_at"] <= task["completed_at"]

    failing = str((await shell(client, "echo oops; exit 3"))["task_id"])
    assert (await follow_task(server, failing))[-1] == "failed"
    task = (await client.get(f"/api/tasks/{failing}")).json()
    assert task["error"] == "the command exited with 3"
    assert task["result"]["outputs"]["output"] == "oops\n"


async def test_a_conversation_task_yields_its_result_and_reports(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    response = await client.post(
        "/api/tasks",
        json={"task_type": "conversation", "description": "Survey the workspace", "priority": 4},
    )
    task_id = response.json()["task_id"]
    assert (await follow_task(server, task_id))[-1] == "completed"
    task = (await client.get(f"/api/tasks/{task_id}")).json()
    assert task["result"]["final_thought"] == "Report written to REPORT.md."
    assert task["report_paths"] == ["REPORT.md"]
    conversation = (await client.get(f"/api/conversations/{task_id}")).json()
    assert (conversation["trigger"], conversation["priority"]) == ("task", 4)


async def test_priority_orders_the_one_queue_and_a_full_queue_answers_503(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    blocker = await shell(client, "sleep 2")
    queued = {}
    for priority in (2, 9, 5):
        task = await shell(client, "true", priority=priority)
        assert task["status"] == "created"
        queued[priority] = task
    assert [queued[p]["queue_position"] for p in (2, 9, 5)] == [1, 1, 2]  # as each arrived
    refused = await client.post(
        "/api/tasks",
        json={"task_type": "shell", "description": "x", "parameters": {"command": "x"}},
    )
    assert refused.status_code == 503
    assert refused.json()["error"] == "queue_full"
    assert int(refused.headers["Retry-After"]) >= 1
    sessions = (await client.get("/api/sessions")).json()
    assert (sessions["running_count"], sessions["queued_count"]) == (1, 3)  # nothing written

    for task in (blocker, *queued.values()):
        assert (await follow_task(server, str(task["task_id"])))[-1] == "completed"
    started = {
        priority: datetime.fromisoformat(
            (await client.get(f"/api/tasks/{task['task_id']}")).json()["started_at"]
        )
        for priority, task in queued.items()
    }
    assert sorted(started, key=started.__getitem__) == [9, 5, 2]


async def test_the_timeout_fails_a_running_task(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    task_id = str((await shell(client, "sleep 30", timeout_seconds=1))["task_id"])
    began = asyncio.get_running_loop().time()
    assert await follow_task(server, task_id) == ["created", "running", "failed"]
    assert asyncio.get_running_loop().time() - began < 10
    task = (await client.get(f"/api/tasks/{task_id}")).json()
    assert task["error"] == "the task's timeout of 1 seconds was reached"


async def test_cancel_before_and_after_the_start(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    running = str((await shell(client, "sleep 30"))["task_id"])
    waiting = str((await shell(client, "echo never"))["task_id"])
    await follow_task(server, running, until=lambda status: status == "running")

    cancelled = await client.post(f"/api/tasks/{waiting}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    assert await follow_task(server, waiting) == ["created", "cancelled"]  # it never ran

    stopped = await client.post(f"/api/tasks/{running}/cancel")
    assert stopped.json()["status"] == "cancelled"
    assert stopped.json()["error"] == "stopped by the local user"
    assert await follow_task(server, running) == ["created", "running", "cancelled"]

    again = await client.post(f"/api/tasks/{running}/cancel")
    assert again.status_code == 409
    assert again.json()["status"] == "cancelled"
    assert (await client.post("/api/tasks/task-0/cancel")).status_code == 404


async def test_bad_requests_and_listing(client: httpx.AsyncClient, server: RunningServer) -> None:
    bad = {
        "task_type": {"task_type": "browser", "description": "x"},
        "priority": {"task_type": "shell", "description": "x", "priority": 11},
        "parameters.command": {"task_type": "shell", "description": "x"},
        "parameters.max_iterations": {
            "task_type": "conversation", "description": "x", "parameters": {"max_iterations": 0}
        },
        "timeout_seconds": {"task_type": "shell", "description": "x", "timeout_seconds": -1},
        "webhook.url": {
            "task_type": "shell", "description": "x",
            "webhook": {"url": "file:///etc/passwd", "secret": "s" * 16},
        },
    }  # fmt: skip
    for field, body in bad.items():
        response = await client.post("/api/tasks", json=body)
        assert response.status_code == 400, (field, response.text)
        assert response.json()["field"] == field
    assert (await client.get("/api/tasks/task-00")).status_code == 404
    assert (await client.get("/api/tasks", params={"status": "paused"})).status_code == 400

    made = [str((await shell(client, "true"))["task_id"]) for _ in range(2)]
    for task_id in made:
        await follow_task(server, task_id)
    first = (await client.get("/api/tasks", params={"limit": 1})).json()
    second = await client.get("/api/tasks", params={"limit": 1, "cursor": first["next_cursor"]})
    assert [task["task_id"] for task in first["tasks"] + second.json()["tasks"]] == made[::-1]
    done = (await client.get("/api/tasks", params={"status": "completed"})).json()["tasks"]
    assert set(made) <= {task["task_id"] for task in done}
    assert {task["status"] for task in done} == {"completed"}


async def test_static_paths_never_meet_a_task_id(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    status = await client.get("/api/tasks/status")
    assert set(status.json()) == {"has_active_task", "active_task"}
    detailed = await client.get("/api/tasks/detailed-status")
    assert "has_active_task" in detailed.json()
    async with httpx.AsyncClient(base_url=server.url) as raw:  # answers no operation lists
        assert (await raw.get("/api/tasks/submit")).json()["error"] == "not_found"
        assert (await raw.post("/api/tasks/status")).status_code == 405
    for name in ("submit", "pause", "resume", "stop", "add-new-task", "status"):
        assert not TASK_ID.fullmatch(name)
