"""The searchable text of an event: what `EventFilter.query` and full-text search match."""

from __future__ import annotations

from typing import Any

from events.actions import ActionBase
from events.base import EventBase
from events.observations import ObservationBase


def searchable_text(event: EventBase) -> str:
    """Casefolded message, content, and every string inside args / extras."""
    parts: list[str] = [event.message] if event.message else []
    if isinstance(event, ActionBase):
        _collect(event.args.model_dump(), parts)
    elif isinstance(event, ObservationBase):
        if event.content and event.content != event.message:
            parts.append(event.content)
        _collect(event.extras.model_dump(), parts)
    return "\n".join(parts).casefold()


def _collect(value: Any, parts: list[str]) -> None:
    if isinstance(value, str):
        if value:
            parts.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _collect(item, parts)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect(item, parts)
