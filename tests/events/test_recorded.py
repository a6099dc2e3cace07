"""Recorded events: kept exactly as given, their envelope validated; and a recording read
into a new conversation's events (renumbered, causes remapped, original ids kept)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from events import (
    CmdRunAction,
    EventValidationError,
    RecordedAction,
    RecordedObservation,
    event_to_dict,
    load_event,
    parse_recorded,
    recorded_events,
    trajectory_items,
)
from events.trajectory import MAX_DEPTH, MAX_EVENT_BYTES

TRAJECTORIES = Path(__file__).parent.parent / "fixtures" / "trajectories"


def fixture_documents(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return trajectory_items(orjson.loads(path.read_bytes()))


FIXTURES = sorted(TRAJECTORIES.glob("*.json*"))
EVERY_EVENT = [
    pytest.param(document, id=f"{path.stem}[{index}]")
    for path in FIXTURES
    for index, document in enumerate(fixture_documents(path))
]


def canonical(document: dict[str, Any]) -> dict[str, Any]:
    """What serializing back gives: an id of -1 left out, the timestamp in UTC with
    microseconds and an offset (a naive one read as UTC)."""
    expected = {key: value for key, value in document.items() if key != "id" or value != -1}
    if "timestamp" in expected:
        moment = datetime.fromisoformat(expected["timestamp"])
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        expected["timestamp"] = moment.astimezone(UTC).isoformat(timespec="microseconds")
    return expected


@pytest.mark.parametrize("document", EVERY_EVENT)
def test_every_recorded_event_serializes_back_as_given(document: dict[str, Any]) -> None:
    event = parse_recorded(document)
    assert event_to_dict(event) == canonical(document)
    category = "action" if "action" in document else "observation"
    assert event.kind == f"{category}:{document[category]}"


def test_the_fixture_set_spans_the_versions() -> None:
    kinds = {
        parse_recorded(document).kind for path in FIXTURES for document in fixture_documents(path)
    }
    for kind in (
        "action:delegate", "observation:delegate", "action:condensation", "observation:condense",
        "action:condensation_request", "action:recall", "observation:recall", "action:system",
        "action:add_task", "action:summarize", "action:kill", "observation:null",
        "action:call_tool_mcp", "observation:mcp", "observation:user_rejected",
        "observation:error", "action:plan_review", "observation:plan_verdict",
    ):  # fmt: skip
        assert kind in kinds, kind
    documents = [document for path in FIXTURES for document in fixture_documents(path)]
    states = {
        (document.get("extras") or {}).get("agent_state")
        for document in documents
        if document.get("observation") == "agent_state_changed"
    }
    assert {"init", "rate_limited", "user_rejected", "hibernating"} <= states
    assert any(parse_recorded(document).hidden for document in documents)
    assert any("llm_metrics" in document for document in documents)
    assert any("tool_call_metadata" in document for document in documents)


def test_a_stored_event_reads_typed_when_it_fits_and_as_recorded_otherwise() -> None:
    typed = load_event({"action": "run", "args": {"command": "ls"}})
    assert isinstance(typed, CmdRunAction)
    assert typed.args.thought == ""  # typed: defaults filled in
    old_state = load_event(
        {"action": "change_agent_state", "args": {"agent_state": "init", "thought": ""}}
    )
    assert isinstance(old_state, RecordedAction)
    unknown = load_event({"observation": "plan_verdict", "content": "ok", "extras": {"x": 1}})
    assert isinstance(unknown, RecordedObservation)
    assert event_to_dict(unknown) == {
        "observation": "plan_verdict",
        "content": "ok",
        "extras": {"x": 1},
    }


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"args": {}}, "action"),
        ({"action": "run", "observation": "run"}, ""),
        ({"action": 3}, "action"),
        ({"action": ""}, "action"),
        ({"action": "run", "args": ["ls"]}, "args"),
        ({"observation": "run", "extras": "x"}, "extras"),
        ({"observation": "run", "content": None}, "content"),
        ({"action": "run", "id": "3"}, "id"),
        ({"action": "run", "cause": True}, "cause"),
        ({"action": "run", "source": "robot"}, "source"),
        ({"action": "run", "message": 7}, "message"),
        ({"action": "run", "timestamp": "yesterday"}, "timestamp"),
        ({"action": "run", "timeout": "soon"}, "timeout"),
        (
            {"action": "run", "tool_call_metadata": {"function_name": "f"}},
            "tool_call_metadata.tool_call_id",
        ),
        (
            {"action": "run", "llm_metrics": {"accumulated_cost": "free"}},
            "llm_metrics.accumulated_cost",
        ),
    ],
)
def test_a_broken_envelope_names_its_field(document: dict[str, Any], field: str) -> None:
    with pytest.raises(EventValidationError) as caught:
        parse_recorded(document)
    assert caught.value.field == field


def _read(documents: list[Any], **options: Any) -> list[dict[str, Any]]:
    return [event_to_dict(event) for event in recorded_events(documents, **options)]


def test_ids_are_renumbered_and_causes_follow() -> None:
    recorded = [
        {"id": 3, "action": "run", "args": {"command": "ls"}},
        {"id": 4, "cause": 3, "observation": "run", "content": "", "extras": {"command": "ls"}},
        {"id": 9, "cause": 7, "observation": "null", "content": "", "extras": {}},
        {"id": 10, "cause": 12, "observation": "null", "content": "", "extras": {}},
        {"id": 12, "action": "null", "args": {}},
        {"id": -1, "cause": 12, "observation": "null", "content": "", "extras": {}},
        {"id": 13, "cause": 13, "observation": "null", "content": "", "extras": {}},
    ]
    events = _read(recorded)
    assert [event.get("original_id") for event in events] == [3, 4, 9, 10, 12, None, 13]
    assert [event.get("cause") for event in events] == [None, 0, None, 4, None, 4, None]
    assert [event.get("original_cause") for event in events] == [
        None,
        None,
        7,
        None,
        None,
        None,
        13,
    ]
    assert all("id" not in event for event in events)  # the log assigns 0, 1, 2, ...


def test_an_export_of_an_import_keeps_the_first_recordings_ids() -> None:
    exported = [
        {"id": 0, "original_id": 5, "action": "run", "args": {"command": "ls"}},
        {"id": 1, "original_id": 6, "cause": 0, "observation": "null", "content": "", "extras": {}},
        {"id": 2, "original_id": 9, "original_cause": 7, "observation": "null", "content": ""},
    ]
    events = _read(exported)
    assert [(e["original_id"], e.get("cause"), e.get("original_cause")) for e in events] == [
        (5, None, None),
        (6, 0, None),
        (9, None, 7),
    ]


def test_a_duplicated_id_maps_causes_to_the_latest_before() -> None:
    recorded = [
        {"id": 1, "action": "run", "args": {"command": "a"}},
        {"id": 1, "action": "run", "args": {"command": "b"}},
        {"id": 2, "cause": 1, "observation": "null", "content": "", "extras": {}},
    ]
    assert _read(recorded)[2]["cause"] == 1


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("document", "field", "problem"),
    [
        (3, "replay_json[1]", "JSON object"),
        ({"action": "run", "args": {"deep": _nested(MAX_DEPTH)}}, "replay_json[1]", "nested"),
        ({"action": "run", "args": {"big": "x" * MAX_EVENT_BYTES}}, "replay_json[1]", "larger"),
        ({"action": "run", "args": []}, "replay_json[1].args", ""),
        (
            {"action": "run", "timestamp": "9999-12-31T23:59:59"},
            "replay_json[1].timestamp",
            "later",
        ),
        (
            {"action": "run", "timestamp": "0001-01-01T00:00:00+23:59"},
            "replay_json[1].timestamp",
            "range",
        ),
    ],
)
def test_a_bad_event_is_named_by_its_index(document: Any, field: str, problem: str) -> None:
    with pytest.raises(EventValidationError) as caught:
        _read([{"action": "null", "args": {}}, document], name="replay_json")
    assert caught.value.field == field
    assert problem in caught.value.problem


def test_the_deepest_allowed_nesting_and_a_day_ahead_are_accepted() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    ahead = (now + timedelta(hours=23)).replace(tzinfo=None).isoformat()
    documents = [
        {"action": "run", "args": {"deep": _nested(MAX_DEPTH - 2)}},  # level 64
        {"action": "run", "timestamp": ahead, "args": {"command": "ls"}},
    ]
    assert len(_read(documents, now=now)) == 2
    with pytest.raises(EventValidationError):
        _read([{"action": "run", "args": {"deep": _nested(MAX_DEPTH - 1)}}])


@pytest.mark.parametrize(
    ("document", "count"),
    [([], 0), ({"trajectory": []}, 0), ({"action": "null"}, 1), ([{"action": "null"}] * 3, 3)],
)
def test_the_shapes_of_a_trajectory(document: Any, count: int) -> None:
    assert len(trajectory_items(document)) == count


@pytest.mark.parametrize("document", [3, "x", {"trajectory": 3}, {"events": []}, None])
def test_what_is_not_a_trajectory(document: Any) -> None:
    with pytest.raises(EventValidationError) as caught:
        trajectory_items(document)
    assert caught.value.field == "trajectory"
