"""Cron expressions (croniter) in a time zone, and the clock schedules are read by.

An expression has five fields (minute hour day month weekday) or six (a trailing
seconds field, as croniter reads it). Times are computed in the schedule's IANA time
zone (so "9:00" stays 9:00 across daylight saving) and stored in UTC.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

SAMPLED_FIRINGS = 20
MAX_COUNTED = 1000


class Clock(Protocol):
    """What the scheduler reads time from; tests inject one they move by hand."""

    def now(self) -> datetime:
        """Aware, UTC."""
        ...

    async def sleep_until(self, moment: datetime) -> None:
        """Return at ``moment`` (or later); the caller checks the time again."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, moment: datetime) -> None:
        delay = (moment - self.now()).total_seconds()
        if delay > 0:
            # Bounded: a wall clock that jumps is looked at again within the hour.
            await asyncio.sleep(min(delay, 3600.0))


def zone(name: str) -> ZoneInfo:
    """Raises `ValueError` for a name that is not an IANA time zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name, e.g. Europe/Paris)") from None


def check_expression(expression: str, timezone: str, min_interval: float) -> None:
    """Raises `ValueError` naming what is wrong with the expression."""
    fields = expression.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(expression):
        raise ValueError(
            f"{expression!r} is not a valid cron expression (five fields: minute hour "
            "day-of-month month day-of-week, or six with trailing seconds)"
        )
    moments = list(_firings(expression, timezone, datetime.now(UTC), SAMPLED_FIRINGS))
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(moments)]
    if gaps and min(gaps) < min_interval:
        raise ValueError(
            f"{expression!r} fires every {min(gaps):g} seconds; this server runs a schedule "
            f"at most every {min_interval:g} seconds (THREADLINE_SCHEDULE_MIN_INTERVAL)"
        )


def next_after(expression: str, timezone: str, moment: datetime) -> datetime:
    """The first firing strictly after ``moment``, in UTC."""
    return next(_firings(expression, timezone, moment, 1))


def count_between(expression: str, timezone: str, first: datetime, until: datetime) -> int:
    """Firings from ``first`` (a firing) up to ``until``, at most `MAX_COUNTED`."""
    if first > until:
        return 0
    count = 1
    for moment in _firings(expression, timezone, first, MAX_COUNTED - 1):
        if moment > until:
            break
        count += 1
    return count


def _firings(expression: str, timezone: str, after: datetime, count: int) -> Iterator[datetime]:
    iterator = croniter(expression, after.astimezone(zone(timezone)))
    for _ in range(count):
        yield iterator.get_next(datetime).astimezone(UTC)


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def stamp(moment: datetime) -> str:
    """A firing as part of an id: ``20260101T090000Z``."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
