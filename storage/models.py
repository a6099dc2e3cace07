"""Value types of the stores: stored events, pages, conversation records.

A `StoredEvent` is the log's record: the conversation, the id the log assigned, and the
event's wire bytes (id and timestamp included). Reads and live delivery forward the bytes
as they are; `to_event()` parses them when typed access is needed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from events import EventBase, load_event


@dataclass(frozen=True, slots=True)
class StoredEvent:
    conversation_id: str
    id: int
    data: bytes

    def to_dict(self) -> dict[str, Any]:
        return orjson.loads(self.data)

    def to_event(self) -> EventBase:
        """The typed event; imported history the model does not declare comes back as
        `RecordedAction` / `RecordedObservation`."""
        return load_event(self.data)


@dataclass(frozen=True, slots=True)
class EventPage:
    """One page of `search_events`.

    ``next_cursor`` continues the walk: pass it as ``start_id`` for a forward page or as
    ``end_id`` for a reverse page. It is ``None`` when this page reached the end of the
    range at the time of the read.
    """

    events: list[StoredEvent]
    next_cursor: int | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


@dataclass(frozen=True, slots=True)
class SearchHit:
    conversation_id: str
    event: StoredEvent
    conversation_title: str = ""


@dataclass(frozen=True, slots=True)
class SearchResults:
    """A page of cross-conversation full-text hits, newest first.

    The text index trails the log: ``pending`` events are durable but not yet searchable
    (usually a few milliseconds' worth).
    """

    hits: list[SearchHit]
    next_cursor: str | None
    pending: int


ConversationStatus = Literal["STARTING", "RUNNING", "STOPPED", "QUEUED", "ERROR", "ARCHIVED"]


def new_conversation_id() -> str:
    return uuid.uuid4().hex


class NewConversation(BaseModel):
    """What a caller gives to create a conversation; the store adds the timestamps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=new_conversation_id)
    owner: str | None = None
    title: str = ""
    status: ConversationStatus = "STOPPED"
    repository: str | None = None
    selected_branch: str | None = None
    git_provider: str | None = None
    trigger: str | None = None
    max_iterations: int | None = Field(default=None, ge=1)
    max_budget: float | None = Field(default=None, gt=0)
    priority: int = Field(default=5, ge=1, le=10)
    settings: dict[str, Any] = Field(default_factory=dict)


class ConversationRecord(BaseModel):
    """A conversation's metadata as stored."""

    model_config = ConfigDict(frozen=True)

    id: str
    owner: str | None
    title: str
    status: ConversationStatus
    agent_state: str | None
    created_at: datetime
    updated_at: datetime
    repository: str | None
    selected_branch: str | None
    git_provider: str | None
    trigger: str | None
    accumulated_cost: float
    prompt_tokens: int
    completion_tokens: int
    iterations: int
    max_iterations: int | None
    max_budget: float | None
    priority: int
    settings: dict[str, Any]


class ConversationPatch(BaseModel):
    """Fields to change; only the fields given are written."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str | None = None
    status: ConversationStatus | None = None
    agent_state: str | None = None
    trigger: str | None = None
    accumulated_cost: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    iterations: int | None = None
    max_iterations: int | None = None
    max_budget: float | None = None
    settings: dict[str, Any] | None = None

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


@dataclass(frozen=True, slots=True)
class ConversationPage:
    conversations: list[ConversationRecord]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A stored API key: never the key itself, only its digest."""

    id: int
    user: str
    label: str
    created_at: datetime
    revoked: bool
