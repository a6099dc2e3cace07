"""Plans are diffable: each applied plan says what it changed."""

from __future__ import annotations

import httpx

from events import TaskItem
from server.plans import plan_changes
from tests.server.clients import run_to_end
from tests.server.running import RunningServer


def test_plan_changes() -> None:
    before = [TaskItem(id="a", title="A"), TaskItem(id="b", title="B", status="in_progress")]
    after = [TaskItem(id="b", title="B", status="done"), TaskItem(id="c", title="C")]
    changes = plan_changes(before, after)
    assert [(c["id"], c["change"]) for c in changes] == [
        ("b", "updated"),
        ("c", "added"),
        ("a", "removed"),
    ]
    assert changes[0]["from"]["status"] == "in_progress"
    assert changes[0]["to"]["status"] == "done"
    assert plan_changes(after, after) == []


async def test_plan_events_and_endpoint(client: httpx.AsyncClient, server: RunningServer) -> None:
    conversation_id, events = await run_to_end(client, server, initial_user_msg="plan")
    applied = [e for e in events if e.get("observation") == "task_tracking"]
    assert [c["change"] for c in applied[0]["extras"]["changes"]] == ["added"] * 3
    ticks = [c for e in applied[1:] for c in e["extras"]["changes"]]
    assert {(c["from"]["status"], c["to"]["status"]) for c in ticks} == {
        ("todo", "in_progress"),
        ("in_progress", "done"),
    }
    plan = (await client.get(f"/api/conversations/{conversation_id}/plan")).json()
    last_plan = [e for e in events if e.get("action") == "task_tracking"][-1]
    assert plan["event_id"] == last_plan["id"]
    assert [task["status"] for task in plan["tasks"]] == ["done", "done", "done"]
    assert (await client.get("/api/conversations/nope/plan")).status_code == 404
