"""The single-task API (reference 002) on a real server: submit (409 while one is
active), pause / resume / add-new-task / stop with their answers and reasons, status and
detailed status (plan progress, result, report paths)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio

from tests.server.clients import agent_state, follow
from tests.server.running import RunningServer
from tests.server.tasks_support import QUICK, documented_client, follow_task


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A demo agent slow enough to be paused mid-run."""
    env = {**QUICK, "THREADLINE_DEMO_PACE": "0.4"}
    running = RunningServer(tmp_path_factory.mktemp("single"), env=env).start()
    yield running
    running.stop()


@pytest_asyncio.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async for http, _ in documented_client(server):
        yield http


async def test_nothing_to_control_before_a_submission(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/tasks/status")).json() == {
        "has_active_task": False,
        "active_task": None,
    }
    detailed = (await client.get("/api/tasks/detailed-status")).json()
    assert (detailed["has_active_task"], detailed["task_id"]) == (False, None)
    for operation in ("pause", "resume", "stop", "add-new-task"):
        response = await client.post(f"/api/tasks/{operation}", json={"reason": "x"})
        assert response.status_code == 409
        assert response.json()["error"] == "no_active_task"
    assert (await client.post("/api/tasks/submit", json={})).json()["field"] == "task_description"


async def test_submit_control_and_status(client: httpx.AsyncClient, server: RunningServer) -> None:
    submitted = await client.post(
        "/api/tasks/submit", json={"task_description": "look around", "session_id": "s-1"}
    )
    body = submitted.json()
    assert (body["success"], body["session_id"], body["status"]) == (True, "s-1", "created")
    task_id = body["task_id"]

    again = await client.post("/api/tasks/submit", json={"task_description": "another"})
    assert again.status_code == 409
    assert again.json()["active_task"]["task_id"] == task_id

    await follow(server, task_id, until=lambda event: event.get("action") == "run")
    paused = await client.post("/api/tasks/pause", json={"reason": "lunch"})
    assert paused.json() == {"success": True, "message": "task paused", "operation": "pause"}
    await follow(server, task_id, until=lambda event: agent_state(event) == "paused")
    detailed = (await client.get("/api/tasks/detailed-status")).json()
    assert (detailed["status"], detailed["pause_reason"]) == ("paused", "lunch")
    assert detailed["has_active_task"] is True
    assert 0 <= detailed["vibesurf_status"]["progress"] < 1
    assert detailed["plan"]
    status = (await client.get("/api/tasks/status")).json()
    assert (status["has_active_task"], status["active_task"]["task_id"]) == (True, task_id)

    added = await client.post("/api/tasks/add-new-task", json={"reason": "also count files"})
    assert added.json() == {
        "success": True,
        "message": "new task added",
        "operation": "add_new_task",
        "new_task": "also count files",
    }
    empty = await client.post("/api/tasks/add-new-task", json={})
    assert (empty.status_code, empty.json()["field"]) == (400, "reason")
    resumed = await client.post("/api/tasks/resume", json={"reason": "back"})
    assert resumed.json()["operation"] == "resume"
    assert (await follow_task(server, task_id))[-1] == "completed"
    events = await follow(server, task_id)
    replies = [e["args"]["content"] for e in events if e.get("action") == "message"]
    assert any("also count files" in reply for reply in replies)

    done = (await client.get("/api/tasks/detailed-status")).json()
    assert (done["has_active_task"], done["status"], done["error"]) == (False, "completed", None)
    assert done["vibesurf_status"]["progress"] == 1
    assert done["result"]["final_thought"] == "Report written to REPORT.md."
    assert done["report_paths"] == ["REPORT.md"]
    assert done["end_time"] >= done["start_time"]
    reasons = [e["extras"]["reason"] for e in events if e.get("observation") == "task_state"]
    assert "paused: lunch" in reasons
    assert "new task added: also count files" in reasons


async def test_stop_records_its_reason(client: httpx.AsyncClient, server: RunningServer) -> None:
    task_id = (await client.post("/api/tasks/submit", json={"task_description": "stop me"})).json()[
        "task_id"
    ]
    await follow(server, task_id, until=lambda event: event.get("action") == "run")
    stopped = await client.post("/api/tasks/stop", json={"reason": "wrong repository"})
    assert stopped.json() == {"success": True, "message": "task cancelled", "operation": "stop"}
    detailed = (await client.get("/api/tasks/detailed-status")).json()
    assert (detailed["status"], detailed["stop_reason"]) == ("cancelled", "wrong repository")
    assert (await client.get("/api/tasks/status")).json()["has_active_task"] is False
    assert (await client.get(f"/api/tasks/{task_id}")).json()["kind"] == "single"
    missing = await client.post("/api/tasks/add-new-task", json={})
    assert missing.status_code == 409  # nothing active any more
