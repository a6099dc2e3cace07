"""Tasks, start tasks, schedules and webhooks between two users: each belongs to the
user whose key created it; the other gets 404 (never 403: nothing says it exists), sees
none of it in lists, and has an id space of its own (both may name a flow ``nightly``)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.server.running import ACCEPT_LOCAL_WITH_KEYS, RunningServer
from tests.server.tasks_support import QUICK, documented_client, follow_task
from tests.server.test_auth import make_key


async def test_each_user_sees_only_their_own(tmp_path: Path) -> None:
    server = RunningServer(tmp_path / "users", env={**QUICK, **ACCEPT_LOCAL_WITH_KEYS})
    alice_key, bob_key = make_key(server, "alice"), make_key(server, "bob")
    server.start()
    try:
        async for alice, _ in documented_client(server, {"X-Session-API-Key": alice_key}):
            async for bob, _ in documented_client(server, {"Authorization": f"Bearer {bob_key}"}):
                await _isolated(server, alice, bob, alice_key)
    finally:
        server.stop()


async def _isolated(
    server: RunningServer, alice: httpx.AsyncClient, bob: httpx.AsyncClient, alice_key: str
) -> None:
    task = (
        await alice.post(
            "/api/tasks",
            json={"task_type": "shell", "description": "x", "parameters": {"command": "true"}},
        )
    ).json()
    task_id = task["task_id"]
    assert (await follow_task(server, task_id, key=alice_key))[-1] == "completed"
    start = (
        await alice.post(
            "/api/v1/app-conversations",
            json={"initial_message": {"role": "user", "content": [{"type": "text", "text": "hi"}]}},
        )
    ).json()
    submitted = (await alice.post("/api/tasks/submit", json={"task_description": "hi"})).json()
    nightly = {"flow_id": "nightly", "cron_expression": "0 3 * * *", "flow": {"message": "m"}}
    mine = (await alice.post("/api/schedule", json=nightly)).json()

    for path in (
        f"/api/tasks/{task_id}",
        f"/api/tasks/{task_id}/webhooks/deliveries",
        f"/api/v1/app-conversations/start-tasks/{start['id']}",
        "/api/schedule/nightly",
        "/api/schedule/nightly/webhooks/deliveries",
        f"/api/conversations/{task_id}/webhooks/deliveries",
        f"/api/conversations/{mine['id']}",
    ):
        answer = await bob.get(path)
        assert answer.status_code == 404, path
    assert (await bob.post(f"/api/tasks/{task_id}/cancel")).status_code == 404
    assert (await bob.put("/api/schedule/nightly", json={"is_enabled": False})).status_code == 404
    assert (await bob.delete("/api/schedule/nightly")).status_code == 404
    batch = await bob.get("/api/v1/app-conversations/start-tasks", params={"ids": start["id"]})
    assert batch.json() == [None]
    assert (await bob.get("/api/tasks")).json()["tasks"] == []
    assert (await bob.get("/api/schedule")).json() == []
    assert (await bob.get("/api/tasks/status")).json()["has_active_task"] is False
    pause = await bob.post("/api/tasks/pause", json={})
    assert pause.status_code == 409  # alice's active task is not bob's

    # The same names in bob's own id space.
    theirs = (await bob.post("/api/schedule", json=nightly)).json()
    assert theirs["flow_id"] == "nightly"
    assert theirs["id"] != mine["id"]
    assert (await alice.get("/api/schedule/nightly")).json()["id"] == mine["id"]
    assert (await bob.post("/api/tasks/submit", json={"task_description": "b"})).status_code == 200
    assert (await alice.get("/api/tasks/status")).json()["active_task"]["task_id"] == (
        submitted["task_id"]
    )
    assert [t["task_id"] for t in (await alice.get("/api/tasks")).json()["tasks"]] == [
        submitted["task_id"],
        task_id,
    ]
