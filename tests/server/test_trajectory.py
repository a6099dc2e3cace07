"""Import and export of whole conversations over a real server: every fixture recording
(OpenHands and OpenDevin versions, threadline's own agents) imports, streams and exports
equivalent to what was recorded."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.events.test_recorded import FIXTURES, fixture_documents
from tests.server.clients import agent_state, create, follow, ids, run_to_end
from tests.server.running import RunningServer
from tests.server.test_auth import make_key
from tests.server.test_socketio import Watcher

Event = dict[str, Any]
ASSIGNED = {"id", "timestamp", "cause", "original_id", "original_cause"}


def instant(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def assert_equivalent(recorded: list[Event], exported: list[Event]) -> None:
    """Kinds, args, content, extras, sources, timestamps, order and every other recorded
    key come back as recorded; ids are 0, 1, ... with the recorded ones recoverable."""
    assert ids(exported) == list(range(len(recorded)))
    for before, after in zip(recorded, exported, strict=True):
        kept = {key: value for key, value in before.items() if key not in ASSIGNED}
        assert {key: after[key] for key in kept if key in after} == kept
        assert set(after) - ASSIGNED == set(kept)
        recorded_id = before.get("original_id", before.get("id", -1))
        assert after.get("original_id") == (None if recorded_id == -1 else recorded_id)
        if "timestamp" in before:
            assert instant(after["timestamp"]) == instant(before["timestamp"])
        if before.get("cause") is not None:
            if "cause" in after:
                assert exported[after["cause"]]["original_id"] == before["cause"]
            else:
                assert after["original_cause"] == before["cause"]


async def import_file(
    client: httpx.AsyncClient, path: Path, *, lines: bool | None = None, **params: str
) -> str:
    lines = path.suffix == ".jsonl" if lines is None else lines
    response = await client.post(
        "/api/conversations/import",
        content=recording_body(path, lines),
        params=params,
        headers={"Content-Type": "application/x-ndjson" if lines else "application/json"},
    )
    assert response.status_code == 201, response.text
    return response.json()["conversation_id"]  # type: ignore[no-any-return]


def recording_body(path: Path, lines: bool) -> bytes:
    """The file as it is, or (``lines``) as JSON Lines."""
    if lines and path.suffix != ".jsonl":
        return b"\n".join(orjson.dumps(event) for event in fixture_documents(path))
    return path.read_bytes()


async def export(client: httpx.AsyncClient, conversation_id: str, **params: str) -> list[Event]:
    response = await client.get(f"/api/conversations/{conversation_id}/trajectory", params=params)
    assert response.status_code == 200, response.text
    if params.get("format") == "jsonl":
        assert response.headers["content-type"] == "application/x-ndjson"
        return [orjson.loads(line) for line in response.content.splitlines()]
    return response.json()["trajectory"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda path: path.name)
async def test_every_recording_imports_and_exports_as_recorded(
    client: httpx.AsyncClient, path: Path
) -> None:
    recorded = fixture_documents(path)
    as_json = await import_file(client, path, lines=False)
    as_lines = await import_file(client, path, lines=True)
    for conversation_id in (as_json, as_lines):
        everything = await export(client, conversation_id, include_hidden="true")
        assert_equivalent(recorded, everything)
        assert (
            await export(client, conversation_id, format="jsonl", include_hidden="1") == everything
        )
        shown = [event for event in everything if not _hidden(event)]
        assert await export(client, conversation_id) == shown
        assert await export(client, conversation_id, format="jsonl") == shown
    info = (await client.get(f"/api/conversations/{as_json}")).json()
    assert (info["status"], info["trigger"]) == ("STOPPED", "import")


def _hidden(event: Event) -> bool:
    return (event.get("args") or event.get("extras") or {}).get("hidden") is True


async def test_replay_mode_view_on_create_is_the_same_copy(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    path = next(p for p in FIXTURES if p.name == "opendevin_0_6.json")
    recorded = fixture_documents(path)
    conversation_id = await create(
        client, replay_json=path.read_text(), replay_mode="view", title="replayed"
    )
    assert_equivalent(recorded, await export(client, conversation_id, include_hidden="true"))
    # With a first message: the recording, then the message, and the agent starts.
    started = await create(
        client,
        replay_json=orjson.dumps({"trajectory": recorded}).decode(),
        replay_mode="view",
        initial_user_msg="go on",
    )
    events = await follow(server, started, after=len(recorded) - 1)
    assert events[0]["id"] == len(recorded)
    assert events[0]["args"]["content"] == "go on"
    assert agent_state(events[-1]) == "finished"


async def test_the_accept_header_asks_for_json_lines(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    conversation_id, events = await run_to_end(client, server, initial_user_msg="export me")
    response = await client.get(
        f"/api/conversations/{conversation_id}/trajectory",
        headers={"Accept": "application/x-ndjson"},
    )
    assert response.headers["content-type"] == "application/x-ndjson"
    assert f'filename="{conversation_id}.jsonl"' in response.headers["content-disposition"]
    assert [orjson.loads(line) for line in response.content.splitlines()] == events
    assert await export(client, conversation_id) == events


@pytest.mark.parametrize(
    "name", ["newer_unknown_kinds.jsonl", "openhands_0_48_condense.json", "opendevin_0_6.json"]
)
async def test_imported_events_stream_as_they_export(
    client: httpx.AsyncClient, server: RunningServer, name: str
) -> None:
    conversation_id = await import_file(client, next(p for p in FIXTURES if p.name == name))
    everything = await export(client, conversation_id, include_hidden="true")
    last = everything[-1]["id"]
    over_websocket = await follow(server, conversation_id, until=lambda e: e["id"] == last)
    assert over_websocket == everything
    watcher = Watcher()
    await watcher.connect(server.url, conversation_id)
    await watcher.wait_until(lambda e: e["id"] == last)
    await watcher.client.disconnect()
    assert watcher.events == everything
    assert await _sse_until(client, conversation_id, last) == everything


async def _sse_until(client: httpx.AsyncClient, conversation_id: str, last: int) -> list[Event]:
    received: list[Event] = []
    url = f"/api/conversations/{conversation_id}/events/stream"
    async with asyncio.timeout(20), client.stream("GET", url) as response:
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                received.append(orjson.loads(line.removeprefix("data:").strip()))
                if received[-1]["id"] == last:
                    return received
    return received


async def test_an_imported_conversation_can_be_continued(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    for name in ("newer_unknown_kinds.jsonl", "openhands_0_21_gui.json"):
        path = next(p for p in FIXTURES if p.name == name)
        conversation_id = await import_file(client, path)
        count = len(fixture_documents(path))
        posted = await client.post(
            f"/api/conversations/{conversation_id}/message", json={"message": "carry on"}
        )
        assert posted.json()["event_id"] == count
        events = await follow(server, conversation_id, after=count - 1)
        assert agent_state(events[-1]) == "finished", events[-1]
        assert all(event["id"] == count + index for index, event in enumerate(events))


async def test_the_title_is_the_first_user_message_or_given(client: httpx.AsyncClient) -> None:
    path = next(p for p in FIXTURES if p.name == "openhands_0_14_delegate.json")
    derived = await import_file(client, path)
    info = (await client.get(f"/api/conversations/{derived}")).json()
    assert info["title"].startswith("What changed in the httpx changelog")
    named = await import_file(client, path, title="httpx bump", conversation_id="named-import")
    assert named == "named-import"
    assert (await client.get("/api/conversations/named-import")).json()["title"] == "httpx bump"


def _deep(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"deeper": value}
    return value


@pytest.mark.parametrize(
    ("body", "content_type", "field"),
    [
        (b"", "application/json", "trajectory"),
        (b"{not json", "application/json", "trajectory"),
        (b'{"trajectory": 3}', "application/json", "trajectory"),
        (b'[{"action": "null"}, 7]', "application/json", "trajectory[1]"),
        (b'[{"action": "null"}, {"args": {}}]', "application/json", "trajectory[1].action"),
        (b'{"action": "null"}\n{"action": "null"}\n{oops', "application/x-ndjson", "trajectory[2]"),
        (b'{"action": "null"}\n{"observation": "null", "extras": []}', "", "trajectory[1].extras"),
        (
            json.dumps([{"action": "run", "args": {"deep": _deep(300)}}]).encode(),
            "application/json",
            "trajectory[0]",
        ),
        (
            orjson.dumps([{"action": "run", "timestamp": "9999-01-01T00:00:00"}]),
            "application/json",
            "trajectory[0].timestamp",
        ),
    ],
)
async def test_a_bad_recording_is_400_and_imports_nothing(
    client: httpx.AsyncClient, body: bytes, content_type: str, field: str
) -> None:
    response = await client.post(
        "/api/conversations/import",
        content=body,
        params={"conversation_id": "never-imported"},
        headers={"Content-Type": content_type} if content_type else {},
    )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert response.json()["message"]
    assert (await client.get("/api/conversations/never-imported")).status_code == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [({"conversation_id": "../x"}, "conversation_id"), ({"title": "t" * 201}, "title")],
)
async def test_bad_import_parameters(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await client.post("/api/conversations/import", content=b"[]", params=params)
    assert response.status_code == 400
    assert response.json()["field"] == field


async def test_an_import_onto_a_taken_id_is_409_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    taken = await create(client, conversation_id="taken-by-import", title="mine")
    response = await client.post(
        "/api/conversations/import",
        content=b'[{"action": "null"}]',
        params={"conversation_id": taken},
    )
    assert response.status_code == 409
    assert await export(client, taken) == []


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [({"format": "xml"}, 400, "format"), ({"include_hidden": "maybe"}, 400, "include_hidden")],
)
async def test_bad_export_parameters(
    client: httpx.AsyncClient, params: dict[str, str], status: int, field: str
) -> None:
    conversation_id = await create(client, title="export parameters")
    response = await client.get(f"/api/conversations/{conversation_id}/trajectory", params=params)
    assert response.status_code == status
    assert response.json()["field"] == field
    missing = await client.get("/api/conversations/nobody-here/trajectory")
    assert missing.status_code == 404


async def test_an_empty_conversation_exports_an_empty_trajectory(
    client: httpx.AsyncClient,
) -> None:
    conversation_id = await create(client, title="nothing yet")
    response = await client.get(f"/api/conversations/{conversation_id}/trajectory")
    assert response.json() == {"trajectory": []}
    lines = await client.get(f"/api/conversations/{conversation_id}/trajectory?format=jsonl")
    assert lines.content == b""


async def test_an_import_larger_than_the_bound_is_413(tmp_path: Path) -> None:
    small = RunningServer(
        tmp_path / "server",
        env={"THREADLINE_IMPORT_MAX_BYTES": "2000", "THREADLINE_MAX_BODY_BYTES": "1024"},
    )
    try:
        await _refused_while_streaming(small.start())
    finally:
        small.stop()


async def _refused_while_streaming(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        big = orjson.dumps([{"action": "null", "message": "x" * 3000}])
        response = await client.post("/api/conversations/import", content=big)
        assert response.status_code == 413
        assert response.json()["error"] == "too_large"

        async def chunks() -> Any:  # no Content-Length: refused while it streams in
            for _ in range(10):
                yield b" " * 1000

        streamed = await client.post("/api/conversations/import", content=chunks())
        assert streamed.status_code == 413
        assert (await client.get("/api/conversations")).json()["results"] == []


async def test_search_results_as_json_lines(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    recording = [
        {"action": "message", "source": "user", "args": {"content": f"quagga sighting {n}"}}
        for n in range(130)
    ]
    conversation_id = await create(
        client, replay_json=orjson.dumps(recording).decode(), replay_mode="view"
    )
    for _ in range(200):
        page = (await client.get("/api/events/search", params={"q": "quagga"})).json()
        if page["pending"] == 0:
            break
        await asyncio.sleep(0.05)
    response = await client.get("/api/events/search", params={"q": "quagga", "format": "jsonl"})
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["x-search-pending"] == "0"
    hits = [orjson.loads(line) for line in response.content.splitlines()]
    assert [hit["event"]["id"] for hit in hits] == list(range(129, -1, -1))
    assert {hit["conversation_id"] for hit in hits} == {conversation_id}
    capped = await client.get(
        "/api/events/search",
        params={"q": "quagga", "limit": "7"},
        headers={"Accept": "application/x-ndjson"},
    )
    assert [orjson.loads(line)["event"]["id"] for line in capped.content.splitlines()] == list(
        range(129, 122, -1)
    )
    page = (await client.get("/api/events/search", params={"q": "quagga", "limit": 3})).json()
    resumed = await client.get(
        "/api/events/search",
        params={"q": "quagga", "format": "jsonl", "cursor": page["next_cursor"]},
    )
    assert len(resumed.content.splitlines()) == 127


async def test_keys_keep_imports_and_exports_to_their_owner(fresh_server: RunningServer) -> None:
    keys = [make_key(fresh_server, user) for user in ("alice", "bob")]
    fresh_server.start()
    path = next(p for p in FIXTURES if p.name == "openhands_0_21_gui.json")
    async with httpx.AsyncClient(base_url=fresh_server.url, timeout=20) as anonymous:
        refused = await anonymous.post(
            "/api/conversations/import", content=recording_body(path, False)
        )
        assert refused.status_code == 401
    alice, bob = (
        httpx.AsyncClient(base_url=fresh_server.url, timeout=20, headers={"X-Session-API-Key": key})
        for key in keys
    )
    async with alice, bob:
        conversation_id = await import_file(alice, path)
        assert (await alice.get(f"/api/conversations/{conversation_id}")).json()["owner"] == "alice"
        assert len(await export(alice, conversation_id)) == len(fixture_documents(path))
        theirs = await bob.get(f"/api/conversations/{conversation_id}/trajectory")
        assert theirs.status_code == 404


async def test_an_export_cut_short_never_looks_complete(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    recording = b"\n".join(
        orjson.dumps({"action": "think", "args": {"thought": f"{n} " + "x" * 1000}})
        for n in range(20_000)
    )
    conversation_id = await import_file_body(client, recording)
    received: list[int] = []
    with pytest.raises(httpx.RemoteProtocolError):
        await _read_deleting_midway(client, conversation_id, received)
    assert 0 < sum(received) < 20_000
    assert "Traceback" not in server.log.read_text()


async def _read_deleting_midway(
    client: httpx.AsyncClient, conversation_id: str, received: list[int]
) -> None:
    url = f"/api/conversations/{conversation_id}/trajectory"
    async with client.stream("GET", url, params={"format": "jsonl"}) as response:
        async for chunk in response.aiter_bytes():
            if not received:
                assert (await client.delete(f"/api/conversations/{conversation_id}")).is_success
            received.append(chunk.count(b"\n"))


async def import_file_body(client: httpx.AsyncClient, body: bytes) -> str:
    response = await client.post(
        "/api/conversations/import", content=body, headers={"Content-Type": "application/x-ndjson"}
    )
    assert response.status_code == 201, response.text
    return response.json()["conversation_id"]  # type: ignore[no-any-return]
