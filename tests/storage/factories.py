"""Small event builders for storage tests."""

from __future__ import annotations

from datetime import datetime

from events import (
    AgentThinkAction,
    CmdOutputObservation,
    CmdRunAction,
    EventBase,
    MessageAction,
)
from events.actions import MessageArgs, RunArgs, ThinkArgs
from events.observations import CmdOutputExtras, CmdOutputMetadata


def run(command: str, *, hidden: bool = False, timestamp: datetime | None = None) -> CmdRunAction:
    return CmdRunAction(
        source="agent", timestamp=timestamp, args=RunArgs(command=command, hidden=hidden)
    )


def output(command: str, content: str, *, cause: int | None = None) -> CmdOutputObservation:
    return CmdOutputObservation(
        source="agent",
        cause=cause,
        content=content,
        extras=CmdOutputExtras(command=command, metadata=CmdOutputMetadata(exit_code=0)),
    )


def say(text: str, *, source: str = "user") -> MessageAction:
    return MessageAction(source=source, args=MessageArgs(content=text))  # type: ignore[arg-type]


def think(thought: str) -> AgentThinkAction:
    return AgentThinkAction(source="agent", args=ThinkArgs(thought=thought))


def numbered(index: int) -> EventBase:
    """A mix of kinds, so filters have something to tell apart."""
    match index % 4:
        case 0:
            return run(f"echo step-{index}")
        case 1:
            return output(f"echo step-{index}", f"step-{index}")
        case 2:
            return say(f"message number {index}")
        case _:
            return think(f"thinking about {index}")
