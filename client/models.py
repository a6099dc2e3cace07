"""What the client returns: small frozen records over the server's JSON. Each keeps the
whole answer as ``raw``, so fields this version does not name are not lost. Events stay
in their wire shape (``Event``, a dict): recordings may hold kinds no version knows, and
`events.parse_event` types the ones that are known."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

Event = dict[str, Any]
"""One event in the OpenHands V0 wire shape: ``id``, ``timestamp``, ``source``, and
``action`` + ``args`` or ``observation`` + ``content`` + ``extras``."""

ENDED_STATES = frozenset({"finished", "stopped", "error", "rejected"})
"""Agent states in which a run has ended or waits for the user (``error`` at a limit)."""


def kind_of(event: Event) -> str:
    """``action:run``, ``observation:agent_state_changed``, ..."""
    if "action" in event:
        return f"action:{event['action']}"
    return f"observation:{event.get('observation', 'unknown')}"


def agent_state_of(event: Event) -> str | None:
    """The state an ``agent_state_changed`` observation reports, else None."""
    if event.get("observation") != "agent_state_changed":
        return None
    state = (event.get("extras") or {}).get("agent_state")
    return state if isinstance(state, str) else None


def _decimal(value: Any) -> Decimal | None:
    # str() first: the JSON number 0.009 is the float nearest it; its shortest repr is
    # the decimal the server meant.
    return None if value is None else Decimal(str(value))


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    title: str
    status: str
    """RUNNING, STARTING, QUEUED, STOPPED, ... (the run), as OpenHands names it."""
    agent_state: str | None
    """running, paused, awaiting_user_input, error (also: held at a limit), finished, ..."""
    created_at: datetime | None
    updated_at: datetime | None
    iteration: int
    max_iterations: int | None
    cost: Decimal
    max_budget: Decimal | None
    currency: str
    queue_position: int | None
    agent: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Conversation:
        return cls(
            id=body["conversation_id"],
            title=body.get("title") or "",
            status=body.get("status") or "",
            agent_state=body.get("agent_state"),
            created_at=_time(body.get("created_at")),
            updated_at=_time(body.get("last_updated_at")),
            iteration=int(body.get("iteration") or 0),
            max_iterations=body.get("max_iterations"),
            cost=_decimal(body.get("accumulated_cost")) or Decimal(0),
            max_budget=_decimal(body.get("max_budget_per_task")),
            currency=body.get("currency") or "USD",
            queue_position=body.get("queue_position"),
            agent=body.get("agent"),
            raw=body,
        )


@dataclass(frozen=True, slots=True)
class ConversationList:
    conversations: list[Conversation]
    next_page_id: str | None


@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[Event]
    has_more: bool


@dataclass(frozen=True, slots=True)
class SearchHit:
    conversation_id: str
    conversation_title: str
    event: Event


@dataclass(frozen=True, slots=True)
class SearchPage:
    hits: list[SearchHit]
    next_cursor: str | None
    pending: int
    """Events appended too recently to be in the full-text index yet."""


@dataclass(frozen=True, slots=True)
class ControlResult:
    conversation_id: str
    status: str
    agent_state: str | None
    queue_position: int | None


@dataclass(frozen=True, slots=True)
class Imported:
    conversation_id: str
    events: int
