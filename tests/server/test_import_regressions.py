"""Regression tests for issue 9 item 20 on the import path (replay_json on create)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest


def _nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth):
        value = {"deeper": value}
    return value


def _message(text: str, **extra: object) -> dict[str, object]:
    return {"action": "message", "source": "user", "args": {"content": text}, **extra}


@pytest.mark.parametrize("mode", ["view", "execute"])
async def test_a_failed_replay_leaves_no_conversation_behind(
    client: httpx.AsyncClient, mode: str
) -> None:
    before = (await client.get("/api/conversations")).json()["results"]
    bad = [_message("fine"), {"action": "message", "args": {"content": "x", "deep": _nested(300)}}]
    atomic = f"replay-atomic-{mode}"
    body = {"conversation_id": atomic, "replay_json": json.dumps(bad), "replay_mode": mode}
    response = await client.post("/api/conversations", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"].startswith("replay_json[1]")
    assert (await client.get(f"/api/conversations/{atomic}")).status_code == 404
    assert (await client.get("/api/conversations")).json()["results"] == before
    good = {"conversation_id": atomic, "replay_json": json.dumps(bad[:1]), "replay_mode": mode}
    assert (await client.post("/api/conversations", json=good)).status_code == 201


async def test_a_replay_dated_9999_is_refused(client: httpx.AsyncClient) -> None:
    future = [_message("from the future", timestamp="9999-12-31T23:59:59")]
    response = await client.post(
        "/api/conversations",
        json={"conversation_id": "far-future", "replay_json": json.dumps(future)},
    )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "replay_json[0].timestamp"
    assert (await client.get("/api/conversations/far-future")).status_code == 404


async def test_imported_stamps_never_drag_live_events_forward(client: httpx.AsyncClient) -> None:
    # A naive local-time stamp from a zone ahead of UTC reads as a little in the future.
    ahead = (datetime.now(UTC) + timedelta(hours=3)).replace(tzinfo=None).isoformat()
    replay = json.dumps([_message("recorded east of here", timestamp=ahead)])
    created = await client.post(
        "/api/conversations", json={"replay_json": replay, "replay_mode": "view"}
    )
    assert created.status_code == 201, created.text
    conversation_id = created.json()["conversation_id"]
    url = f"/api/conversations/{conversation_id}/events"
    posted = await client.post(url, json={"action": "think", "args": {"thought": "live"}})
    assert posted.status_code == 200, posted.text
    events = (await client.get(url)).json()["events"]
    live = datetime.fromisoformat(events[-1]["timestamp"])
    assert live <= datetime.now(UTC) + timedelta(seconds=5)


async def test_a_replay_date_out_of_range_is_400(client: httpx.AsyncClient) -> None:
    replay = json.dumps([_message("odd", timestamp="0001-01-01T00:00:00+23:59")])
    response = await client.post("/api/conversations", json={"replay_json": replay})
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "replay_json[0].timestamp"
