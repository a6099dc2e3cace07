"""Bad events and filters raise one error type that names the field."""

from __future__ import annotations

from typing import Any

import pytest

from events import EventValidationError, build_filter, parse_event

RUN = {"source": "agent", "action": "run", "args": {"command": "ls"}}


@pytest.mark.parametrize(
    ("document", "field", "problem"),
    [
        ({"action": "teleport", "args": {}}, "action", "unknown action kind 'teleport'"),
        ({"observation": "vision", "extras": {}}, "observation", "unknown observation kind"),
        ({"action": 7, "args": {}}, "action", "must be a string"),
        ({"source": "agent", "message": "hi"}, "action", "needs an 'action' or 'observation'"),
        ({"action": "run", "observation": "run"}, "", "not both"),
        ({"action": "run", "args": {}}, "args.command", "field required"),
        ({"action": "run"}, "args", "field required"),
        ({**RUN, "args": {"command": 42}}, "args.command", "valid string"),
        ({**RUN, "args": {"command": "ls", "blocking": "yes"}}, "args.blocking", "valid boolean"),
        ({**RUN, "id": "seven"}, "id", "valid integer"),
        ({**RUN, "source": "robot"}, "source", "'user', 'agent' or 'environment'"),
        ({**RUN, "timestamp": "yesterday"}, "timestamp", "datetime"),
        ({**RUN, "surprise": 1}, "surprise", "unknown field"),
        (
            {
                "action": "task_tracking",
                "args": {
                    "command": "plan",
                    "task_list": [{"id": "1", "title": "t", "status": "?"}],
                },
            },
            "args.task_list[0].status",
            "'todo', 'in_progress' or 'done'",
        ),
        (
            {"observation": "run", "content": "", "extras": {"command": "x", "metadata": []}},
            "extras.metadata",
            "",
        ),
    ],
)
def test_bad_event_names_the_field(document: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(EventValidationError) as caught:
        parse_event(document)
    assert caught.value.field == field
    assert problem in caught.value.problem


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"[]", b'"text"', b"null", b"\xff\xfe"],
)
def test_bytes_that_are_not_an_event_object(data: bytes) -> None:
    with pytest.raises(EventValidationError):
        parse_event(data)


def test_unknown_args_keys_are_kept_not_dropped() -> None:
    document = {**RUN, "args": {"command": "ls", "added_in_a_later_version": [1, 2]}}
    event = parse_event(document)
    assert event.args.model_extra == {"added_in_a_later_version": [1, 2]}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"include_types": ["nonsense"]}, "include_types"),
        ({"exclude_types": ["run", "zzz"]}, "exclude_types"),
        ({"source": "robot"}, "source"),
        ({"start_date": "not a date"}, "start_date"),
        ({"start_date": "0001-01-01T00:00:00+23:59"}, "start_date"),
        ({"end_date": "9999-12-31T23:59:59-23:59"}, "end_date"),
        ({"start_date": "2025-02-01", "end_date": "2025-01-01"}, "filter"),
        ({"limit": 5}, "limit"),
    ],
)
def test_bad_filter_names_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(EventValidationError) as caught:
        build_filter(**fields)
    assert caught.value.field == field


def test_filter_type_names_resolve_to_kinds() -> None:
    assert build_filter(include_types=["run"]).included_kinds == {"action:run", "observation:run"}
    assert build_filter(include_types=["CmdRunAction"]).included_kinds == {"action:run"}
    assert build_filter(exclude_types=["observation:run"]).excluded_kinds == {"observation:run"}
    assert build_filter().is_empty()
    assert not build_filter(query="x").is_empty()
    assert build_filter(query="").is_empty()


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_client_json_nests_at_most_64_levels() -> None:
    # The event object and its args are two levels; the rest is the client's.
    at_bound = {"action": "message", "args": {"content": "x", "deep": _nested(62)}}
    parse_event(at_bound)
    with pytest.raises(EventValidationError) as caught:
        parse_event({"action": "message", "args": {"content": "x", "deep": _nested(63)}})
    assert caught.value.field == "args.deep"
    assert "64 levels" in caught.value.problem
    # orjson parses 300 levels; the bound, not a serializer, refuses them.
    with pytest.raises(EventValidationError, match="64 levels"):
        parse_event(b'{"action":"message","args":{"deep":' + b"[" * 300 + b"]" * 300 + b"}}")
