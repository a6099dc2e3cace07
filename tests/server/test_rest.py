"""REST over a real server: conversations, events, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.server.clients import agent_state, create, follow, ids, run_to_end
from tests.server.running import RunningServer


async def test_create_watch_and_page_a_demo_run(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    response = await client.post("/api/conversations", json={"initial_user_msg": "look around"})
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "ok"
    assert body["conversation_status"] in ("STARTING", "RUNNING")
    conversation_id = body["conversation_id"]
    events = await follow(server, conversation_id)
    assert ids(events) == list(range(len(events)))
    kinds = [event.get("action") or event.get("observation") for event in events]
    assert kinds[0] == "message"
    assert "task_tracking" in kinds
    assert "run" in kinds
    assert agent_state(events[-1]) == "finished"
    plans = [e for e in events if e.get("action") == "task_tracking"]
    assert {item["status"] for item in plans[-1]["args"]["task_list"]} == {"done"}

    page = (
        await client.get(f"/api/conversations/{conversation_id}/events", params={"limit": 5})
    ).json()
    assert ids(page["events"]) == [0, 1, 2, 3, 4]
    assert page["has_more"] is True
    everything: list[dict[str, Any]] = []
    start = 0
    while True:
        params = {"start_id": start, "limit": 7}
        page = (
            await client.get(f"/api/conversations/{conversation_id}/events", params=params)
        ).json()
        everything.extend(page["events"])
        if not page["has_more"]:
            break
        start = page["events"][-1]["id"] + 1
    assert everything == events
    backwards = (
        await client.get(
            f"/api/conversations/{conversation_id}/events",
            params={"reverse": "true", "end_id": 10, "start_id": 8},
        )
    ).json()
    assert ids(backwards["events"]) == [10, 9, 8]
    assert backwards["has_more"] is False

    info = (await client.get(f"/api/conversations/{conversation_id}")).json()
    assert info["status"] == "STOPPED"
    assert info["agent_state"] == "finished"
    assert info["title"] == "look around"


async def test_event_filters_and_count(client: httpx.AsyncClient, server: RunningServer) -> None:
    conversation_id, events = await run_to_end(client, server, initial_user_msg="filters")
    url = f"/api/conversations/{conversation_id}/events"

    async def fetch(**params: Any) -> list[int]:
        response = await client.get(url, params={"limit": 100, **params})
        assert response.status_code == 200, response.text
        return ids(response.json()["events"])

    runs = [e["id"] for e in events if "run" in (e.get("action"), e.get("observation"))]
    assert await fetch(include_types="run") == runs
    assert await fetch(include_types="CmdRunAction") == [
        e["id"] for e in events if e.get("action") == "run"
    ]
    assert await fetch(source="user") == [0]
    report = [e["id"] for e in events if "report.md" in str(e).lower()]
    assert await fetch(query="REPORT.MD") == report
    no_state = [e["id"] for e in events if e.get("observation") != "agent_state_changed"]
    assert await fetch(exclude_types="agent_state_changed") == no_state
    count = await client.get(f"{url}/count", params={"include_types": "run"})
    assert count.json() == {"count": len(runs)}
    assert (await client.get(f"{url}/count")).json() == {"count": len(events)}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"start_id": -1}, "start_id"),
        ({"reverse": "maybe"}, "reverse"),
        ({"include_types": "teleport"}, "include_types"),
        ({"source": "robot"}, "source"),
        ({"start_date": "not-a-date"}, "start_date"),
    ],
)
async def test_bad_event_queries_are_400(
    client: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    conversation_id = await create(client, title="queries")
    response = await client.get(f"/api/conversations/{conversation_id}/events", params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == field
    assert body["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"initial_user_msg": "x", "surprise": 1}, "surprise"),
        ({"conversation_id": "a" * 101}, "conversation_id"),
        ({"conversation_id": "../etc"}, "conversation_id"),
        ({"conversation_id": "a/b"}, "conversation_id"),
        ({"conversation_id": "a\\b"}, "conversation_id"),
        ({"conversation_id": "bell\x07"}, "conversation_id"),
        ({"max_iterations": 0}, "max_iterations"),
        ({"max_budget_per_task": 0}, "max_budget_per_task"),
        ({"max_budget_per_task": -1.5}, "max_budget_per_task"),
        ({"agent": "nobody"}, "agent"),
        ({"image_urls": "not a list"}, "image_urls"),
        ({"replay_json": '[{"args": {}}]'}, "replay_json[0].action"),
        ({"replay_json": '[{"action": "run", "args": []}]'}, "replay_json[0].args"),
        ({"replay_json": "[1]"}, "replay_json[0]"),
        ({"replay_json": '{"trajectory": 3}'}, "replay_json"),
        ({"replay_json": "{not json"}, "replay_json"),
    ],
)
async def test_bad_creations_are_400_and_create_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    before = (await client.get("/api/conversations", params={"limit": 100})).json()["results"]
    response = await client.post("/api/conversations", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    after = (await client.get("/api/conversations", params={"limit": 100})).json()["results"]
    assert after == before


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b""])
async def test_bodies_that_are_not_json_objects(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post(
        "/api/conversations", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] in ("invalid_json", "invalid_request")


async def test_client_chosen_ids(client: httpx.AsyncClient) -> None:
    assert await create(client, conversation_id="my-id_1") == "my-id_1"
    response = await client.post("/api/conversations", json={"conversation_id": "my-id_1"})
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"


async def test_list_is_newest_first_and_paged(client: httpx.AsyncClient) -> None:
    created = [await create(client, title=f"list {i}") for i in range(5)]
    seen: list[str] = []
    page_id = None
    while True:
        params = {"limit": 2, **({"page_id": page_id} if page_id else {})}
        page = (await client.get("/api/conversations", params=params)).json()
        seen.extend(item["conversation_id"] for item in page["results"])
        page_id = page["next_page_id"]
        if page_id is None:
            break
    positions = [seen.index(conversation_id) for conversation_id in created]
    assert positions == sorted(positions, reverse=True)
    bad = await client.get("/api/conversations", params={"page_id": "garbage"})
    assert bad.status_code == 400


async def test_rename_and_delete(client: httpx.AsyncClient) -> None:
    conversation_id = await create(client, title="old")
    renamed = await client.patch(f"/api/conversations/{conversation_id}", json={"title": "new"})
    assert renamed.json()["title"] == "new"
    assert (
        await client.patch(f"/api/conversations/{conversation_id}", json={"title": ""})
    ).status_code == 400
    assert (await client.delete(f"/api/conversations/{conversation_id}")).json() == {"status": "ok"}
    for method, path in [
        ("GET", ""),
        ("GET", "/events"),
        ("GET", "/events/count"),
        ("POST", "/start"),
        ("DELETE", ""),
    ]:
        response = await client.request(method, f"/api/conversations/{conversation_id}{path}")
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"


async def test_messages_and_user_events(client: httpx.AsyncClient, server: RunningServer) -> None:
    conversation_id, first_run = await run_to_end(client, server, initial_user_msg="hi")
    url = f"/api/conversations/{conversation_id}"
    assert (await client.post(f"{url}/message", json={"message": ""})).status_code == 400
    assert (await client.post(f"{url}/message", json={})).status_code == 400
    sent = await client.post(f"{url}/message", json={"message": "and now?"})
    assert sent.status_code == 200
    event_id = sent.json()["event_id"]
    assert event_id == len(first_run)
    second_run = await follow(server, conversation_id, after=event_id)
    replies = [e["args"]["content"] for e in second_run if e.get("action") == "message"]
    assert any("and now?" in reply for reply in replies)

    think = {"action": "think", "args": {"thought": "a user's note"}}
    logged = await client.post(f"{url}/events", json=think)
    assert logged.status_code == 200
    stored = (
        await client.get(f"{url}/events", params={"start_id": logged.json()["event_id"]})
    ).json()
    assert stored["events"][0]["source"] == "user"
    assert stored["events"][0]["args"]["thought"] == "a user's note"

    for bad, field in [
        ({"action": "teleport", "args": {}}, "action"),
        ({"observation": "run", "content": "", "extras": {"command": "x"}}, "observation"),
        ({"action": "run", "args": {"command": 5}}, "args.command"),
    ]:
        response = await client.post(f"{url}/events", json=bad)
        assert response.status_code == 400, response.text
        assert response.json()["field"] == field


async def test_full_text_search(client: httpx.AsyncClient) -> None:
    conversation_id = await create(client, title="search")
    marker = {"action": "think", "args": {"thought": "zanzibar quokka"}}
    await client.post(f"/api/conversations/{conversation_id}/events", json=marker)
    results: list[dict[str, Any]] = []
    for _ in range(200):  # the index trails the log by up to 1 s
        body = (await client.get("/api/events/search", params={"q": "quokka"})).json()
        results = body["results"]
        if results:
            break
        await asyncio.sleep(0.02)
    assert [r["conversation_id"] for r in results] == [conversation_id]
    assert results[0]["conversation_title"] == "search"
    assert results[0]["event"]["args"]["thought"] == "zanzibar quokka"
    assert (await client.get("/api/events/search")).status_code == 400
    assert (await client.get("/api/events/search", params={"q": "!!!"})).status_code == 400
    assert (
        await client.get("/api/events/search", params={"q": "x", "cursor": "zz"})
    ).status_code == 400


async def test_start_and_stop(client: httpx.AsyncClient, server: RunningServer) -> None:
    conversation_id = await create(client, title="manual start")
    started = await client.post(f"/api/conversations/{conversation_id}/start")
    assert started.status_code == 200
    await follow(server, conversation_id, until=lambda e: agent_state(e) == "running")
    stopped = await client.post(f"/api/conversations/{conversation_id}/stop")
    assert stopped.json()["conversation_status"] == "STOPPED"
    events = await follow(server, conversation_id)
    assert agent_state(events[-1]) in ("stopped", "finished")


async def test_unknown_paths_and_methods_answer_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = await client.put("/api/conversations")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"


async def test_health_says_whether_keys_are_needed(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/health")).json() == {"status": "ok", "keys_required": False}


async def test_the_page_is_served_and_revalidated(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"


async def test_openapi_and_docs(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    for path in (
        "/api/conversations/{conversation_id}/events",
        "/api/conversations/{conversation_id}/pause",
        "/api/conversations/{conversation_id}/resume",
        "/api/conversations/{conversation_id}/plan",
        "/api/conversations/{conversation_id}/trajectory",
        "/api/conversations/import",
        "/api/sessions",
    ):
        assert path in spec["paths"]
    create_schema = spec["paths"]["/api/conversations"]["post"]["requestBody"]
    assert (
        "initial_user_msg" in create_schema["content"]["application/json"]["schema"]["properties"]
    )
    docs = await client.get("/docs")
    assert docs.headers["content-type"].startswith("text/html")
    assert "/api/events/search" in docs.text
