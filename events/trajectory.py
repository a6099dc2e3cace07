"""Reading a recorded trajectory into events for a new conversation.

A trajectory is what OpenHands' V0 server exports: a JSON array of events, or
``{"trajectory": [...]}``. Each event is validated as recorded (`parse_recorded`):
whatever kinds and fields it holds are kept, but its envelope must be sound, its nesting
at most `MAX_DEPTH` deep, its size at most `MAX_EVENT_BYTES`, and its timestamp no later
than the clock allows.

Recorded ids may start anywhere and have gaps (OpenHands leaves hidden events out of an
export). The events are renumbered 0, 1, 2, ... in recorded order; each keeps the id it
had as ``original_id`` (or the ``original_id`` it already carries, when it is the export
of an earlier import), and every ``cause`` is remapped to the new id of the event it
names. A cause naming an event the recording does not hold is moved to
``original_cause``.

Errors are `EventValidationError`s whose field names the event: ``trajectory[3].args``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from events.base import EventBase
from events.errors import EventValidationError
from events.recorded import parse_recorded

MAX_DEPTH = 64
"""Nesting levels one event may use (the event object is level 1). Real recordings use
about ten; the bound keeps a hostile one from exhausting serializer recursion."""

MAX_EVENT_BYTES = 8 * 1024 * 1024
"""The largest one imported event may be, as compact JSON."""

MAX_FUTURE = timedelta(days=1)
"""How far past the server's clock an imported timestamp may lie. OpenHands wrote naive
local times, read here as UTC, so a recording made east of Greenwich looks up to 14 hours
ahead; anything later is refused."""


def trajectory_items(document: Any, name: str = "trajectory") -> list[Any]:
    """The events of a parsed trajectory document: a JSON array, ``{"trajectory": [...]}``,
    or one event object. Raises `EventValidationError`."""
    if isinstance(document, list):
        return document
    if isinstance(document, Mapping):
        if "trajectory" in document:
            items = document["trajectory"]
            if isinstance(items, list):
                return items
            raise EventValidationError(name, "'trajectory' must be a JSON array of events")
        if "action" in document or "observation" in document:
            return [document]
    raise EventValidationError(
        name, 'expected a JSON array of events, {"trajectory": [...]}, or JSON Lines'
    )


def recorded_events(
    documents: list[Any],
    *,
    name: str = "trajectory",
    now: datetime | None = None,
    release: bool = False,
) -> Iterator[EventBase]:
    """The events of a recording, renumbered from 0, one at a time (so a caller can turn
    each into bytes and let it go; with ``release``, each document of the list is
    replaced by None once read, so a large recording is not held twice). Raises
    `EventValidationError` at the first event at fault; a caller writes only once the
    iteration completed."""
    latest = (now or datetime.now(UTC)) + MAX_FUTURE
    first_position = _first_positions(documents)
    seen: dict[int, int] = {}
    for index, document in enumerate(documents):
        where = f"{name}[{index}]"
        event = _validated(document, where, latest)
        if release:
            documents[index] = None
        update: dict[str, Any] = {"id": None}
        recorded_id = event.id
        if recorded_id is not None:
            seen[recorded_id] = index
            if event.original_id is None:
                update["original_id"] = recorded_id
        cause = event.cause
        if cause is not None:
            target = seen.get(cause, first_position.get(cause))
            if target is not None and target != index:
                update["cause"] = target
            else:
                update["cause"] = None
                if event.original_cause is None:
                    update["original_cause"] = cause
        yield event.model_copy(update=update)


def _validated(document: Any, where: str, latest: datetime) -> EventBase:
    if not isinstance(document, Mapping):
        raise EventValidationError(where, "an event must be a JSON object")
    _check_depth(document, where)
    if len(orjson.dumps(document)) > MAX_EVENT_BYTES:
        raise EventValidationError(where, f"is larger than {MAX_EVENT_BYTES} bytes")
    try:
        event = parse_recorded(document)
    except EventValidationError as exc:
        raise EventValidationError(_join(where, exc.field), exc.problem) from None
    if event.timestamp is not None:
        try:
            moment = event.timestamp.astimezone(UTC)
        except OverflowError:
            raise EventValidationError(
                f"{where}.timestamp", "is out of range once converted to UTC"
            ) from None
        if moment > latest:
            raise EventValidationError(
                f"{where}.timestamp",
                f"{moment.isoformat()} is later than the server's clock allows "
                f"(now + {MAX_FUTURE.days} day)",
            )
    return event


def _check_depth(document: Mapping[str, Any], where: str) -> None:
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise EventValidationError(where, f"is nested deeper than {MAX_DEPTH} levels")
        for child in value.values() if isinstance(value, Mapping) else value:
            if isinstance(child, Mapping | list):
                pending.append((child, depth + 1))


def _first_positions(documents: Sequence[Any]) -> dict[int, int]:
    """Each recorded id's first position, for causes that name a later event."""
    positions: dict[int, int] = {}
    for index, document in enumerate(documents):
        if isinstance(document, Mapping):
            recorded_id = document.get("id")
            if type(recorded_id) is int and recorded_id != -1:
                positions.setdefault(recorded_id, index)
    return positions


def _join(where: str, field: str) -> str:
    if not field:
        return where
    return f"{where}{field}" if field.startswith("[") else f"{where}.{field}"
