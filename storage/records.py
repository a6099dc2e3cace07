"""The stored form of an event, shared by every backend.

`prepare` does the per-event work (serialization, searchable text) in the caller's task,
before the event joins a write batch; `stamp` adds the id and timestamp the log assigns,
by splicing bytes rather than serializing again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache

import orjson

from events import EventBase, event_to_dict
from events.text import wire_text

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def now_micros() -> int:
    return micros(datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    kind: str
    source: str | None
    hidden: bool
    text: str
    timestamp_us: int | None
    """The event's own timestamp (imported history), or None for "now"."""
    body: bytes
    """Wire JSON without ``id`` and ``timestamp``."""


def prepare(event: EventBase) -> PreparedEvent:
    wire = event_to_dict(event)
    wire.pop("id", None)
    wire.pop("timestamp", None)
    return PreparedEvent(
        kind=event.kind,
        source=event.source,
        hidden=event.hidden,
        text=wire_text(wire),
        timestamp_us=micros(event.timestamp) if event.timestamp is not None else None,
        body=orjson.dumps(wire),
    )


def stamp(prepared: PreparedEvent, event_id: int, timestamp_us: int) -> bytes:
    """The full wire bytes: ``{"id": ..., "timestamp": ..., <body>}``."""
    body = prepared.body
    if body == b"{}":
        return b'{"id":%d,"timestamp":"%s"}' % (event_id, _iso(timestamp_us))
    return b'{"id":%d,"timestamp":"%s",%s' % (event_id, _iso(timestamp_us), body[1:])


@lru_cache(maxsize=64)
def _iso(timestamp_us: int) -> bytes:
    """The wire form of a timestamp; a batch's events share theirs, so it is formatted
    once (formatting a datetime is most of what stamping an event costs)."""
    return from_micros(timestamp_us).isoformat(timespec="microseconds").encode()


COST_UNIT = 1_000_000
"""Costs are stored as integers: millionths of the currency."""


def cost_micros(amount: float | Decimal) -> int:
    """An amount of currency in stored micro-units, rounded half to even: the float
    0.009000000000000001 (a sum of floats) is 9000, as 0.009 is."""
    exact = Decimal(str(amount)) if isinstance(amount, float) else amount
    return int((exact * COST_UNIT).to_integral_value(ROUND_HALF_EVEN))


def from_cost_micros(micros: int) -> float:
    """The float nearest ``micros`` millionths, whose shortest repr is that decimal."""
    return micros / COST_UNIT
