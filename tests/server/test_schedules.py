"""The schedule API (reference 002) on a real server: create / list / get / update /
delete with the document's fields and errors, a schedule firing on the real clock (its
log streamed), and schedules surviving a restart. (Timing rules are tested with an
injected clock in test_scheduler.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.server.clients import follow
from tests.server.running import RunningServer
from tests.server.tasks_support import QUICK, documented_client

FIELDS = {
    "id", "flow_id", "cron_expression", "is_enabled", "description", "last_execution_at",
    "next_execution_at", "execution_count", "created_at", "updated_at",
}  # fmt: skip
ENV = {**QUICK, "THREADLINE_SCHEDULE_MIN_INTERVAL": "2"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(tmp_path_factory.mktemp("schedules"), env=ENV).start()
    yield running
    running.stop()


@pytest_asyncio.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async for http, _ in documented_client(server):
        yield http


def schedule(flow_id: str, cron: str = "0 9 * * 1-5", **fields: object) -> dict[str, object]:
    return {"flow_id": flow_id, "cron_expression": cron, "flow": {"message": "report"}, **fields}


async def test_create_read_update_delete(client: httpx.AsyncClient, server: RunningServer) -> None:
    created = await client.post(
        "/api/schedule",
        json=schedule("weekday", description="weekday report", timezone="Asia/Shanghai"),
    )
    assert created.status_code == 200
    body = created.json()
    assert set(body) >= FIELDS
    assert (body["flow_id"], body["is_enabled"], body["execution_count"]) == ("weekday", True, 0)
    assert body["next_execution_at"].endswith("T01:00:00+00:00")  # 9:00 in Shanghai
    assert body["last_execution_at"] is None
    assert [s["flow_id"] for s in (await client.get("/api/schedule")).json()] == ["weekday"]
    assert (await client.get("/api/schedule/weekday")).json()["id"] == body["id"]

    disabled = (await client.put("/api/schedule/weekday", json={"is_enabled": False})).json()
    assert (disabled["is_enabled"], disabled["next_execution_at"]) == (False, None)
    changed = (
        await client.put(
            "/api/schedule/weekday",
            json={"is_enabled": True, "cron_expression": "30 6 * * *", "timezone": "UTC"},
        )
    ).json()
    assert changed["next_execution_at"].endswith("T06:30:00+00:00")
    assert changed["updated_at"] > body["updated_at"]

    assert (await client.delete("/api/schedule/weekday")).status_code == 200
    assert (await client.get("/api/schedule/weekday")).status_code == 404
    assert (await client.delete("/api/schedule/weekday")).status_code == 404
    log = await follow(
        server, body["id"], until=lambda e: e.get("observation") == "schedule"
        and e["extras"]["change"] == "deleted",
    )  # fmt: skip
    assert [e["extras"]["change"] for e in log if e.get("observation") == "schedule"] == [
        "created", "updated", "updated", "deleted",
    ]  # fmt: skip


async def test_errors_name_the_problem(client: httpx.AsyncClient) -> None:
    bad = {
        "cron_expression": schedule("a", cron="61 * * * *"),
        "timezone": schedule("b", timezone="Mars/Olympus"),
        "flow_id": schedule("../etc"),
        "flow.message": {"flow_id": "c", "cron_expression": "0 9 * * *", "flow": {}},
        "overlap_policy": schedule("d", overlap_policy="sometimes"),
    }
    for field, body in bad.items():
        response = await client.post("/api/schedule", json=body)
        assert response.status_code == 400, (field, response.text)
        assert response.json()["field"] == field
    too_fast = await client.post("/api/schedule", json=schedule("e", cron="* * * * * *"))
    assert "at most every 2 seconds" in too_fast.json()["message"]
    assert (await client.post("/api/schedule", json=schedule("dup"))).status_code == 200
    taken = await client.post("/api/schedule", json=schedule("dup"))
    assert taken.status_code == 409
    bad_change = await client.put("/api/schedule/dup", json={"cron_expression": "nope"})
    assert bad_change.json()["field"] == "cron_expression"
    assert (await client.put("/api/schedule/none", json={})).status_code == 404
    assert (await client.get("/api/schedule/none/webhooks/deliveries")).status_code == 404


async def test_a_schedule_fires_on_the_real_clock(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    body = (
        await client.post(
            "/api/schedule",
            json=schedule("often", cron="* * * * * */2", flow={"message": "hi", "agent": "shell"}),
        )
    ).json()
    log = await follow(
        server, body["id"], until=lambda e: e.get("observation") == "schedule"
        and e["extras"]["change"] == "fired",
    )  # fmt: skip
    run = log[-1]["extras"]["conversation_id"]
    await client.put("/api/schedule/often", json={"is_enabled": False})
    shown = (await client.get("/api/schedule/often")).json()
    assert shown["execution_count"] >= 1
    assert shown["last_execution_at"] is not None
    assert shown["last_run"]["conversation_id"].startswith(body["id"])  # its firing's name
    conversation = (await client.get(f"/api/conversations/{run}")).json()
    assert conversation["trigger"] == "schedule"


async def test_schedules_survive_a_restart(tmp_path: Path) -> None:
    server = RunningServer(tmp_path / "restart", env=ENV).start()
    try:
        async for client, _ in documented_client(server):
            before = (await client.post("/api/schedule", json=schedule("kept"))).json()
        server.restart()
        async for client, _ in documented_client(server):
            after = (await client.get("/api/schedule/kept")).json()
            assert after == before
    finally:
        server.stop()
