"""Paced replay: a finished conversation delivered "as it happened".

A `PacedReplay` is what a stream session reads from instead of a live subscription
when a client asks for ``replay=1``: the conversation's logged events, from ``from_id``
(or the first at or after ``from_time``) up to the newest event when the replay opened,
each delivered when the replay's clock reaches its timestamp. The replay's clock runs
at ``speed`` times real time while playing, so the original gaps are scaled by
``speed``; ``max_gap`` (seconds, real time) caps a long idle stretch.

Controls (`ReplayControl`): pause, resume, speed, and seek to an id or a timestamp (the
target is delivered at once and the clock goes on from its time). Every change, the
start and the end are told to the client in order with the events as a `ReplayNotice`
(``{"replay": what, "state": playing|paused|ended, ...}``). The end leaves the replay
open: a seek plays again from there; the client leaves when it is done.

Time comes from a `Clock`, so tests drive it by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from events import build_filter
from server.errors import BadRequest
from storage import Storage, StoredEvent

MAX_SPEED = 10_000.0
MIN_SPEED = 0.01
PAGE = 50
State = Literal["playing", "paused", "ended"]


class Clock(Protocol):
    def now(self) -> float:
        """Seconds, monotonic."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class LoopClock:
    """The event loop's clock."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ReplayControl(BaseModel):
    """``{"command": "pause" | "resume" | "speed" | "seek", "speed": n, "id": n,
    "timestamp": iso}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: Literal["pause", "resume", "speed", "seek"]
    speed: float | None = Field(default=None, ge=MIN_SPEED, le=MAX_SPEED, allow_inf_nan=False)
    id: int | None = Field(default=None, ge=0, le=2**63 - 1)
    timestamp: datetime | None = None

    @model_validator(mode="after")
    def _complete(self) -> ReplayControl:
        if self.command == "speed" and self.speed is None:
            raise ValueError("speed: a speed command needs a speed")
        if self.command == "seek" and (self.id is None) == (self.timestamp is None):
            raise ValueError("a seek names an id or a timestamp (one of them)")
        return self


@dataclass(frozen=True, slots=True)
class ReplayNotice:
    """A replay's news for its client, in order with the events."""

    body: dict[str, Any]

    @property
    def data(self) -> bytes:
        return orjson.dumps(self.body)


@dataclass(slots=True)
class _Timed:
    stored: StoredEvent
    at: float
    """The event's timestamp, seconds since the epoch."""


@dataclass(kw_only=True)
class ReplayStart:
    """What a client asked for (see `replay_start_from`)."""

    from_id: int = 0
    from_time: datetime | None = None
    speed: float = 1.0
    max_gap: float | None = None


def _timestamp(stored: StoredEvent) -> float:
    stamp = orjson.loads(stored.data).get("timestamp")
    return datetime.fromisoformat(stamp).timestamp() if isinstance(stamp, str) else 0.0


class PacedReplay:
    """An async iterator of `StoredEvent` and `ReplayNotice`, until closed."""

    direct: Callable[[StoredEvent], bool] | None = None
    """Present for the session's sake (live subscriptions hand events over directly);
    a replay never does."""

    def __init__(
        self,
        storage: Storage,
        conversation_id: str,
        *,
        start: ReplayStart,
        last_id: int,
        clock: Clock,
    ) -> None:
        self.replay_id = secrets.token_urlsafe(12)
        self._storage = storage
        self._conversation_id = conversation_id
        self._start = start
        self._last_id = last_id
        self._clock = clock
        self._speed = start.speed
        self._max_gap = start.max_gap
        self._cursor = start.from_id
        self._buffer: deque[_Timed] = deque()
        self._notices: deque[ReplayNotice] = deque()
        self._state: State = "playing"
        self._began = False
        self._closed = False
        self._wake = asyncio.Event()
        self._replay_time = 0.0
        """The replay clock's reading at ``_wall``."""
        self._wall = 0.0

    # -- reading -----------------------------------------------------------------------

    def __aiter__(self) -> PacedReplay:
        return self

    async def __anext__(self) -> StoredEvent | ReplayNotice:
        if not self._began:
            await self._begin()
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._notices:
                return self._notices.popleft()
            if self._state != "playing":
                await self._wake.wait()
                self._wake.clear()
                continue
            upcoming = await self._peek()
            if upcoming is None:
                self._state = "ended"
                self._tell("ended")
                continue
            wait = self._wait_for(upcoming)
            if wait > 0 and await self._interrupted(wait):
                continue
            self._buffer.popleft()
            self._cursor = upcoming.stored.id + 1
            return upcoming.stored

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    # -- controls ----------------------------------------------------------------------

    async def control(self, control: ReplayControl) -> dict[str, Any]:
        """Carry out a control; returns the replay's state (also told in the stream)."""
        if not self._began:
            await self._begin()
        now = self._clock.now()
        if control.command == "pause" and self._state == "playing":
            self._replay_time, self._wall = self._reading(now), now
            self._state = "paused"
        elif control.command == "resume" and self._state == "paused":
            self._wall = now
            self._state = "playing"
        elif control.command == "speed" and control.speed is not None:
            self._replay_time, self._wall = self._reading(now), now
            self._speed = control.speed
        elif control.command == "seek":
            await self._seek(control)
            self._wall = self._clock.now()
            if self._state == "ended":
                self._state = "playing"
        self._tell(control.command)
        return self.describe()

    def describe(self) -> dict[str, Any]:
        return {
            "replay_id": self.replay_id,
            "state": self._state,
            "next_id": self._cursor,
            "first_id": 0,
            "last_id": self._last_id,
            "speed": self._speed,
        }

    # -- internals ---------------------------------------------------------------------

    async def _begin(self) -> None:
        self._began = True
        if self._start.from_time is not None:
            self._cursor = await self._first_at(self._start.from_time)
            self._replay_time = self._start.from_time.timestamp()
        else:
            first = await self._peek()
            self._replay_time = first.at if first is not None else 0.0
        self._wall = self._clock.now()
        self._tell("started")

    async def _seek(self, control: ReplayControl) -> None:
        self._buffer.clear()
        if control.timestamp is not None:
            self._cursor = await self._first_at(control.timestamp)
            self._replay_time = control.timestamp.timestamp()
            return
        self._cursor = min(control.id or 0, self._last_id + 1)
        target = await self._peek()
        if target is not None:
            self._replay_time = target.at

    async def _first_at(self, moment: datetime) -> int:
        page = await self._storage.search_events(
            self._conversation_id,
            start_id=0,
            end_id=self._last_id,
            filter=build_filter(start_date=moment),
            limit=1,
        )
        return page.events[0].id if page.events else self._last_id + 1

    async def _peek(self) -> _Timed | None:
        if not self._buffer and self._cursor <= self._last_id:
            page = await self._storage.search_events(
                self._conversation_id, start_id=self._cursor, end_id=self._last_id, limit=PAGE
            )
            self._buffer.extend(_Timed(stored, _timestamp(stored)) for stored in page.events)
        return self._buffer[0] if self._buffer else None

    def _reading(self, now: float) -> float:
        if self._state != "playing":
            return self._replay_time
        return self._replay_time + (now - self._wall) * self._speed

    def _wait_for(self, upcoming: _Timed) -> float:
        """Real seconds until the replay clock reaches the event (a gap longer than
        ``max_gap`` is cut to it)."""
        now = self._clock.now()
        wait = (upcoming.at - self._reading(now)) / self._speed
        if self._max_gap is not None and wait > self._max_gap:
            self._replay_time += (wait - self._max_gap) * self._speed
            wait = self._max_gap
        return wait

    async def _interrupted(self, seconds: float) -> bool:
        """Sleep; True when a control (or close) came first."""
        self._wake.clear()
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            done, _ = await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if waker in done:
            self._wake.clear()
            return True
        return False

    def _tell(self, what: str) -> None:
        self._notices.append(ReplayNotice({"replay": what, **self.describe()}))
        self._wake.set()


def replay_start_from(query: dict[str, str], after_id: int) -> ReplayStart | None:
    """The replay a stream's query asks for (``replay=1``), or None. ``from_id`` (else
    the event after ``latest_event_id``), ``from_time``, ``speed``, ``max_gap``. Raises
    `BadRequest` naming the parameter."""
    if query.get("replay", "") in ("", "0", "false"):
        return None
    if query["replay"] not in ("1", "true"):
        raise BadRequest("replay must be 1 or 0", field="replay")
    start = ReplayStart(from_id=after_id + 1)
    if raw := query.get("from_id"):
        start.from_id = _number(raw, "from_id", int, 0, 2**63 - 1)
    if raw := query.get("from_time"):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise BadRequest(
                f"from_time is not an ISO 8601 time: {raw[:40]!r}", field="from_time"
            ) from None
        start.from_time = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if raw := query.get("speed"):
        start.speed = _number(raw, "speed", float, MIN_SPEED, MAX_SPEED)
    if raw := query.get("max_gap"):
        start.max_gap = _number(raw, "max_gap", float, 0.0, 86_400.0)
    return start


def _number(raw: str, name: str, kind: type[Any], low: float, high: float) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a number, got {raw[:40]!r}", field=name) from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low:g} and {high:g}", field=name)
    return value
