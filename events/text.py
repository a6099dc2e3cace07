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
    # A message often quotes an argument whole (a chat message is its content; a think
    # action's message is "I am thinking...: " and its thought): keep each string once,
    # and none the message already quotes, so neither the text column nor the index
    # stores it twice.
    unique = dict.fromkeys(parts)
    if message:
        unique = dict.fromkeys(
            part for part in unique if part is message or not _quotes(message, part)
        )
    return "\n".join(unique).casefold()


def _quotes(message: str, part: str) -> bool:
    """Whether ``part`` stands in ``message`` between whitespace (or its ends): then every
    substring and every word of ``part`` is still found in ``message``, whatever the
    tokenizer of a full-text index."""
    start = message.find(part)
    while start >= 0:
        end = start + len(part)
        if (start == 0 or message[start - 1].isspace()) and (
            end == len(message) or message[end].isspace()
        ):
            return True
        start = message.find(part, start + 1)
    return False


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
