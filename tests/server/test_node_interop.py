"""Interop with the official JavaScript client: ``socket.io-client`` (v4, from npm) under
node, connected the way the OpenHands frontend connects (``tests/js/watch.mjs``)."""

from __future__ import annotations

import httpx
import pytest

from tests.server.clients import agent_state, create
from tests.server.node import Record, node_script, of_type
from tests.server.running import RunningServer

CLIENT = "socket.io-client"


async def watch(server: RunningServer, *arguments: str) -> tuple[int, list[Record]]:
    async with node_script("watch.mjs", "--url", server.url, *arguments, needs=CLIENT) as script:
        return await script.finish()


def received(records: list[Record]) -> list[Record]:
    return [record["event"] for record in of_type(records, "event")]


async def stored_events(client: httpx.AsyncClient, conversation_id: str) -> list[Record]:
    response = await client.get(
        f"/api/conversations/{conversation_id}/events", params={"limit": 100}
    )
    assert response.status_code == 200
    page = response.json()
    assert page["has_more"] is False
    return page["events"]  # type: ignore[no-any-return]


async def test_a_dropped_connection_resumes_with_no_gap_and_no_duplicate(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    # No initial message: the run starts with the message the JS client sends, so the
    # whole conversation, id 0 on, happens while it watches.
    conversation_id = await create(client)
    text = "hello from socket.io-client"
    code, records = await watch(
        server, "--conversation", conversation_id, "--drop-after", "5", "--send", text
    )
    assert code == 0, records

    assert of_type(records, "ack") == [{"type": "ack", "ack": {"status": "ok", "event_id": 0}}]
    events = received(records)
    ids = [event["id"] for event in events]
    assert ids == list(range(len(ids)))  # 0..N: no gap, no duplicate, across the reconnect
    assert events[0]["source"] == "user"
    assert events[0]["action"] == "message"
    assert events[0]["args"]["content"] == text
    assert agent_state(events[-1]) == "finished"
    assert of_type(records, "end") == [{"type": "end", "id": ids[-1], "state": "finished"}]

    # The drop really happened mid-run, and the client's own reconnection asked the
    # server to resume right after the last event it had.
    [drop] = of_type(records, "drop")
    assert drop["after_id"] >= 4
    assert drop["after_id"] < ids[-1]
    connects = [record["latest_event_id"] for record in of_type(records, "connect")]
    assert connects == [-1, drop["after_id"]]
    steps = [record["type"] for record in records if record["type"] != "event"]
    assert steps == ["connect", "ack", "drop", "disconnect", "connect", "end", "disconnect"]

    # What the JS client parsed is exactly what the log holds.
    assert events == await stored_events(client, conversation_id)


async def test_the_frontend_flow_replays_history_then_resumes_from_an_id(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    # The OpenHands frontend creates the conversation over REST, then connects with
    # latest_event_id=-1: what already happened is replayed, the rest arrives live.
    conversation_id = await create(client, initial_user_msg="look around")
    code, records = await watch(server, "--conversation", conversation_id)
    assert code == 0, records
    events = received(records)
    assert [event["id"] for event in events] == list(range(len(events)))
    assert agent_state(events[-1]) == "finished"
    assert events == await stored_events(client, conversation_id)

    # A later connection from a given id gets exactly what follows it.
    last = events[-1]["id"]
    code, records = await watch(
        server, "--conversation", conversation_id, "--latest-event-id", str(last - 5)
    )
    assert code == 0, records
    assert received(records) == events[last - 4 :]


@pytest.mark.parametrize(
    ("arguments", "message", "error"),
    [
        pytest.param([], "conversation_id is required", "bad_request", id="missing"),
        pytest.param(
            ["--conversation", "no-such-conversation"],
            "conversation 'no-such-conversation' not found",
            "not_found",
            id="unknown",
        ),
    ],
)
async def test_a_refused_connection_gets_connect_error_with_the_reason(
    server: RunningServer, arguments: list[str], message: str, error: str
) -> None:
    code, records = await watch(server, *arguments)
    assert code == 2, records
    assert records == [{"type": "connect_error", "message": message, "data": {"error": error}}]


async def test_a_bad_latest_event_id_gets_connect_error(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    conversation_id = await create(client)
    code, records = await watch(
        server, "--conversation", conversation_id, "--latest-event-id", "soon"
    )
    assert code == 2, records
    assert records == [
        {
            "type": "connect_error",
            "message": "latest_event_id must be an integer, got 'soon'",
            "data": {"error": "bad_request"},
        }
    ]
