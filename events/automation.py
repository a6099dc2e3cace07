"""Observations about tasks and schedules: every change of one is an event of a log.

A task's changes are logged in its conversation (the task's id is the conversation's);
a schedule's in its own log conversation. The server writes them; users cannot.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from events.base import OpenModel
from events.observations import ObservationBase


class TaskStateExtras(OpenModel):
    task_id: str
    kind: str
    """``start``, ``background`` or ``single``."""
    status: str
    previous_status: str | None = None
    reason: str = ""
    result: Any = None
    error: str | None = None


class TaskStateObservation(ObservationBase):
    """A task changed: created, started, a start phase, paused, ended..."""

    openhands_name: ClassVar[str] = "TaskStateObservation"
    observation: Literal["task_state"] = "task_state"
    extras: TaskStateExtras

    def default_message(self) -> str:
        return f"task {self.extras.status}" + (
            f": {self.extras.reason}" if self.extras.reason else ""
        )


class ScheduleExtras(OpenModel):
    flow_id: str
    change: str
    """created, updated, fired, skipped, deferred, missed, failed, exhausted, deleted."""
    reason: str = ""
    is_enabled: bool = True
    next_execution_at: str | None = None
    conversation_id: str | None = None
    due_at: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class ScheduleObservation(ObservationBase):
    openhands_name: ClassVar[str] = "ScheduleObservation"
    observation: Literal["schedule"] = "schedule"
    extras: ScheduleExtras

    def default_message(self) -> str:
        return f"schedule {self.extras.change}" + (
            f": {self.extras.reason}" if self.extras.reason else ""
        )


AUTOMATION_OBSERVATION_TYPES: tuple[type[ObservationBase], ...] = (
    TaskStateObservation,
    ScheduleObservation,
)
