"""Value types of tasks, schedules and webhooks, as the stores keep them.

A task is one conversation's job (its id is the conversation's id); a schedule starts
conversations from a saved template and keeps its own log in a conversation of its own
(its ``id``); a webhook follows one conversation's log. Ids are the store's (a user's
id space is the server's business: ``alice/x``). Statuses are plain strings: the store
keeps what the server gives it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# -- tasks -----------------------------------------------------------------------------


class NewTask(BaseModel):
    """A task to create beside its conversation (the task takes the conversation's id)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    """What created it: ``start``, ``background`` or ``single`` (the server's names)."""
    status: str
    detail: str = ""
    priority: int = Field(default=1, ge=1, le=10)
    timeout_seconds: float | None = None
    spec: dict[str, Any] = Field(default_factory=dict)
    """What was asked (task type, description, parameters, the request), as given."""


class TaskRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    owner: str | None
    kind: str
    status: str
    detail: str
    priority: int
    timeout_seconds: float | None
    spec: dict[str, Any]
    outcome: dict[str, Any]
    """What came of it (result, error, reasons, report paths), as the server wrote it."""
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TaskPatch(BaseModel):
    """Fields to change; only those given are written. ``outcome`` replaces the old one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: str | None = None
    detail: str | None = None
    outcome: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: list[TaskRecord]
    next_cursor: str | None


# -- schedules -------------------------------------------------------------------------


class NewSchedule(BaseModel):
    """A schedule to create beside its log conversation (whose id it takes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flow_id: str
    cron_expression: str
    timezone: str = "UTC"
    is_enabled: bool = True
    description: str = ""
    flow: dict[str, Any] = Field(default_factory=dict)
    """The conversation template each run starts from."""
    overlap: str = "skip"
    catch_up: str = "once"
    budget_cap: float | None = None
    next_execution_at: datetime | None = None


class ScheduleRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    """The schedule's log conversation."""
    flow_id: str
    owner: str | None
    cron_expression: str
    timezone: str
    is_enabled: bool
    description: str
    flow: dict[str, Any]
    overlap: str
    catch_up: str
    budget_cap: float | None
    spent: float
    last_execution_at: datetime | None
    next_execution_at: datetime | None
    execution_count: int
    last_conversation_id: str | None
    pending: bool
    """A run is owed, to start once the active one ends (overlap policy ``queue``)."""
    created_at: datetime
    updated_at: datetime


class SchedulePatch(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cron_expression: str | None = None
    timezone: str | None = None
    is_enabled: bool | None = None
    description: str | None = None
    flow: dict[str, Any] | None = None
    overlap: str | None = None
    catch_up: str | None = None
    budget_cap: float | None = None
    spent: float | None = None
    last_execution_at: datetime | None = None
    next_execution_at: datetime | None = None
    execution_count: int | None = None
    last_conversation_id: str | None = None
    pending: bool | None = None

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


@dataclass(frozen=True, slots=True)
class SchedulePage:
    schedules: list[ScheduleRecord]
    next_cursor: str | None


# -- webhooks --------------------------------------------------------------------------


class NewWebhook(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    conversation_id: str
    owner: str | None = None
    origin: str
    """What it was set on (``conversation:<id>``, ``task:<id>``, ``schedule:<id>``):
    deliveries are listed by it."""
    url: str
    secret: str
    event_kinds: list[str] = Field(default_factory=list)
    """Stored kinds (``observation:task_state``); empty: every event."""
    delivered_through: int = -1


class WebhookRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    conversation_id: str
    owner: str | None
    origin: str
    url: str
    secret: str
    event_kinds: list[str]
    delivered_through: int
    """Events up to this id are done with (delivered, or given up on)."""
    created_at: datetime


class NewDelivery(BaseModel):
    """One attempt to deliver one event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    webhook_id: int
    owner: str | None = None
    origin: str
    conversation_id: str
    event_id: int
    event_kind: str
    attempt: int
    outcome: str
    """``delivered``, ``retrying``, ``failed`` (given up) or ``refused`` (not sent)."""
    http_status: int | None = None
    error: str | None = None
    duration_ms: int = 0


class DeliveryRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    webhook_id: int
    owner: str | None
    origin: str
    conversation_id: str
    event_id: int
    event_kind: str
    attempt: int
    outcome: str
    http_status: int | None
    error: str | None
    duration_ms: int
    at: datetime


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    deliveries: list[DeliveryRecord]
    next_cursor: int | None
    """Pass as ``before`` for the next (older) page."""
