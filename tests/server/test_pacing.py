"""Paced replay's timing, on a real SQLite log with an injected clock (no real sleeps):
gaps scaled by speed, pause and resume, a speed change mid-gap, seeks to an id and to a
time, a long gap capped, and the end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import ValidationError

from events import parse_event
from server.streaming.pacing import PacedReplay, ReplayControl, ReplayNotice, ReplayStart
from storage import NewConversation, Storage, StoredEvent
from storage.factory import open_storage

BEGIN = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
OFFSETS = [0.0, 1.0, 3.0, 7.0, 107.0]
"""Seconds after BEGIN at which the recorded events happened."""


class ManualClock:
    """Time moves only when the test says; sleepers wake when it passes their time."""

    def __init__(self) -> None:
        self.time = 1000.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []
        self._changed = asyncio.Event()

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self.time + seconds, waiter)
        self._sleepers.append(entry)
        self._changed.set()
        try:
            await waiter
        finally:
            self._sleepers.remove(entry)

    def advance(self, seconds: float) -> None:
        self.time += seconds
        for due, waiter in self._sleepers:
            if due <= self.time + 1e-9 and not waiter.done():
                waiter.set_result(None)

    async def sleeping_for(self) -> float:
        """Once the replay sleeps: how long until it wakes."""
        while not self._sleepers:
            self._changed.clear()
            await self._changed.wait()
        return round(min(due for due, _ in self._sleepers) - self.time, 6)


@pytest_asyncio.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    store = await open_storage(str(tmp_path / "log"))
    try:
        yield store
    finally:
        await store.close()


@pytest_asyncio.fixture
async def conversation(storage: Storage) -> str:
    events = [
        parse_event(
            {
                "action": "think",
                "source": "agent",
                "timestamp": (BEGIN + timedelta(seconds=offset)).isoformat(),
                "args": {"thought": f"step {index}"},
            }
        )
        for index, offset in enumerate(OFFSETS)
    ]
    record, _ = await storage.create_conversation_with_events(NewConversation(), events)
    return record.id


def replay_of(storage: Storage, conversation: str, clock: ManualClock, **start: Any) -> PacedReplay:
    return PacedReplay(
        storage, conversation, start=ReplayStart(**start), last_id=len(OFFSETS) - 1, clock=clock
    )


async def take(replay: PacedReplay) -> StoredEvent | ReplayNotice:
    return await asyncio.wait_for(anext(replay), 5)  # a guard against hanging, not timing


async def event_id(replay: PacedReplay) -> int:
    item = await take(replay)
    assert isinstance(item, StoredEvent), item
    return item.id


async def notice(replay: PacedReplay) -> dict[str, Any]:
    item = await take(replay)
    assert isinstance(item, ReplayNotice), item
    return item.body


async def test_gaps_are_scaled_by_speed_and_the_end_is_told(
    storage: Storage, conversation: str
) -> None:
    clock = ManualClock()
    replay = replay_of(storage, conversation, clock, speed=2.0)
    started = await notice(replay)
    assert (started["replay"], started["state"], started["last_id"]) == ("started", "playing", 4)
    assert await event_id(replay) == 0  # the first event at once
    for expected_id, wait in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 50.0)]:
        pending = asyncio.ensure_future(event_id(replay))
        assert await clock.sleeping_for() == wait
        clock.advance(wait)
        assert await pending == expected_id
    ended = await notice(replay)
    assert (ended["replay"], ended["state"], ended["next_id"]) == ("ended", "ended", 5)
    replay.close()


async def test_pause_resume_and_speed_change_mid_gap(storage: Storage, conversation: str) -> None:
    clock = ManualClock()
    replay = replay_of(storage, conversation, clock, from_id=1)
    assert (await notice(replay))["next_id"] == 1
    assert await event_id(replay) == 1
    pending = asyncio.ensure_future(take(replay))
    assert await clock.sleeping_for() == 2.0  # events 1 -> 2: two seconds
    clock.advance(0.5)
    assert (await replay.control(ReplayControl(command="pause")))["state"] == "paused"
    assert _body(await pending)["replay"] == "pause"
    waiting = asyncio.ensure_future(take(replay))
    clock.advance(3600)  # paused: an hour passes, nothing is delivered
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiting.done()
    await replay.control(ReplayControl(command="resume"))
    assert _body(await waiting)["replay"] == "resume"
    pending = asyncio.ensure_future(take(replay))
    assert await clock.sleeping_for() == 1.5  # what was left of the gap
    clock.advance(0.5)
    changed = await replay.control(ReplayControl(command="speed", speed=4))
    assert (changed["speed"], changed["state"]) == (4.0, "playing")
    assert _body(await pending)["replay"] == "speed"
    pending = asyncio.ensure_future(event_id(replay))
    assert await clock.sleeping_for() == 0.25  # one second of the recording left, at 4x
    clock.advance(0.25)
    assert await pending == 2
    replay.close()
    with pytest.raises(StopAsyncIteration):
        await take(replay)


async def test_seek_to_an_id_or_a_time_and_play_on_after_the_end(
    storage: Storage, conversation: str
) -> None:
    clock = ManualClock()
    replay = replay_of(storage, conversation, clock, speed=1000.0)
    await notice(replay)
    for expected in range(5):
        pending = asyncio.ensure_future(event_id(replay))
        if expected:
            clock.advance(await clock.sleeping_for())
        assert await pending == expected
    assert (await notice(replay))["state"] == "ended"
    # A seek after the end plays again from there: the target at once, then paced.
    sought = await replay.control(ReplayControl(command="seek", id=2))
    assert (sought["state"], sought["next_id"]) == ("playing", 2)
    assert (await notice(replay))["replay"] == "seek"
    assert await event_id(replay) == 2
    pending = asyncio.ensure_future(take(replay))
    assert await clock.sleeping_for() == 0.004  # 4 s of the recording at 1000x
    await replay.control(ReplayControl(command="seek", timestamp=BEGIN + timedelta(seconds=2)))
    assert _body(await pending)["next_id"] == 2  # the first event at or after 10:00:02
    pending = asyncio.ensure_future(event_id(replay))
    assert await clock.sleeping_for() == 0.001  # from 10:00:02 to event 2 at 10:00:03
    clock.advance(0.001)
    assert await pending == 2
    replay.close()


async def test_a_start_time_and_a_capped_gap(storage: Storage, conversation: str) -> None:
    clock = ManualClock()
    start = BEGIN + timedelta(seconds=5)
    replay = replay_of(storage, conversation, clock, from_time=start, max_gap=3.0)
    assert (await notice(replay))["next_id"] == 3  # the first event at or after 10:00:05
    pending = asyncio.ensure_future(event_id(replay))
    assert await clock.sleeping_for() == 2.0
    clock.advance(2.0)
    assert await pending == 3
    pending = asyncio.ensure_future(event_id(replay))
    assert await clock.sleeping_for() == 3.0  # a hundred seconds, capped at three
    clock.advance(3.0)
    assert await pending == 4
    replay.close()


@pytest.mark.parametrize(
    "document",
    [
        {"command": "jump"},
        {"command": "speed"},
        {"command": "speed", "speed": 0},
        {"command": "speed", "speed": 1e9},
        {"command": "seek"},
        {"command": "seek", "id": 1, "timestamp": "2025-01-01T00:00:00Z"},
        {"command": "seek", "id": -1},
        {"command": "pause", "extra": 1},
    ],
)
def test_bad_controls_are_refused(document: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):  # a 400 at the session
        ReplayControl.model_validate(document)


def _body(item: StoredEvent | ReplayNotice) -> dict[str, Any]:
    assert isinstance(item, ReplayNotice), item
    return item.body
