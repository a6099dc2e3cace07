"""Building events in code, and what the model derives."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from events import (
    AgentStateChangedObservation,
    AgentThinkAction,
    CmdOutputObservation,
    CmdRunAction,
    MessageAction,
    TaskItem,
    TaskTrackingAction,
    event_to_dict,
    parse_event,
    searchable_text,
)
from events.actions import MessageArgs, RunArgs, TaskTrackingArgs, ThinkArgs
from events.observations import AgentStateChangedExtras, CmdOutputExtras, CmdOutputMetadata


def test_message_defaults_like_openhands() -> None:
    action = CmdRunAction(source="agent", args=RunArgs(command="ls -la"))
    assert action.message == "Running command: ls -la"
    wire = event_to_dict(action)
    assert {"id", "timestamp", "cause"}.isdisjoint(wire)
    assert wire["args"]["security_risk"] == -1


def test_run_observation_success_follows_exit_code() -> None:
    failed = CmdOutputObservation(
        source="agent",
        content="boom",
        extras=CmdOutputExtras(command="false", metadata=CmdOutputMetadata(exit_code=1)),
    )
    assert failed.success is False
    assert failed.message == "Command `false` executed with exit code 1."


def test_task_plan_message_counts_items() -> None:
    plan = TaskTrackingAction(
        source="agent",
        args=TaskTrackingArgs(
            command="plan",
            task_list=[TaskItem(id="1", title="a"), TaskItem(id="2", title="b", status="done")],
        ),
    )
    assert plan.message == "Managing 2 task items."
    assert event_to_dict(plan)["args"]["task_list"][1] == {
        "id": "2",
        "title": "b",
        "status": "done",
        "notes": "",
    }


def test_naive_timestamps_are_read_as_utc_and_written_with_offset() -> None:
    event = parse_event(
        {
            "id": 3,
            "timestamp": "2024-08-15T10:20:30.5",
            "source": "user",
            "message": "hi",
            "action": "message",
            "args": {"content": "hi"},
        }
    )
    assert event.timestamp == datetime(2024, 8, 15, 10, 20, 30, 500000, tzinfo=UTC)
    assert event_to_dict(event)["timestamp"] == "2024-08-15T10:20:30.500000+00:00"


def test_invalid_id_means_not_yet_stored() -> None:
    event = parse_event({"id": -1, "action": "message", "args": {"content": "x"}})
    assert event.id is None
    assert "id" not in event_to_dict(event)


def test_hidden_comes_from_args_or_extras() -> None:
    assert CmdRunAction(args=RunArgs(command="x", hidden=True)).hidden
    assert not MessageAction(args=MessageArgs(content="x")).hidden
    state = AgentStateChangedObservation(
        source="environment", extras=AgentStateChangedExtras(agent_state="running")
    )
    assert not state.hidden
    assert state.message == ""


def test_searchable_text_covers_message_args_and_content_casefolded() -> None:
    action = CmdRunAction(args=RunArgs(command="grep Straße README", thought="Look"))
    text = searchable_text(action)
    assert "grep strasse readme" in text
    assert "look" in text
    observation = CmdOutputObservation(
        content="Found IT", extras=CmdOutputExtras(command="grep", hidden=False)
    )
    assert "found it" in searchable_text(observation)


def test_searchable_text_keeps_once_what_the_message_quotes() -> None:
    thought = "Check how the parser handles EMPTY input"
    text = searchable_text(AgentThinkAction(args=ThinkArgs(thought=thought)))
    assert text == f"i am thinking...: {thought}".casefold()
    command = CmdRunAction(args=RunArgs(command="ls", thought="Running"))
    assert searchable_text(command).split("\n")[:2] == ["running command: ls", "confirmed"]
    # Not between whitespace, a quoted string may be another token to a full-text index.
    for thought in ("command", "mand", "unning"):
        command = CmdRunAction(args=RunArgs(command="ls", thought=thought))
        assert searchable_text(command).split("\n")[:2] == ["running command: ls", thought]
    assert searchable_text(MessageAction(args=MessageArgs(content="Hi"))) == "hi"


def test_events_are_immutable() -> None:
    action = MessageAction(args=MessageArgs(content="x"))
    with pytest.raises(ValidationError, match="frozen"):
        action.message = "y"  # type: ignore[misc]
