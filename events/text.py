"""The searchable text of an event: what `EventFilter.query` and full-text search match."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from events.base import EventBase
from events.serialization import event_to_dict


def searchable_text(event: EventBase) -> str:
    """Casefolded message, content, and every string inside args / extras."""
    return wire_text(event_to_dict(event))


def wire_text(wire: Mapping[str, Any]) -> str:
    """`searchable_text` of an event already in wire shape (no second serialization)."""
    message = wire.get("message") or ""
    parts: list[str] = [message] if message else []
    content = wire.get("content")
    if content and content != message:
        parts.append(content)
    _collect(wire.get("args") or wire.get("extras") or {}, parts)
    # A message often repeats an argument verbatim (a chat message is its content): keep
    # each string once, so neither the text column nor the index stores it twice.
    return "\n".join(dict.fromkeys(parts)).casefold()


def _collect(value: Any, parts: list[str]) -> None:
    """Every non-empty string inside ``value`` (dicts and lists, any depth). Iterative:
    this runs for every append."""
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is str:
            if item:
                parts.append(item)
        elif kind is dict:
            pending.extend(reversed(item.values()))
        elif kind is list:
            pending.extend(reversed(item))
