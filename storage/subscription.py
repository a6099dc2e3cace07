"""Gapless subscriptions: catch up from the log, then follow live appends.

A `Subscription` registers with the `SubscriptionHub` *before* it reads the log, so every
event committed after that moment reaches its buffer, and every event committed before it
is in the log. It yields events strictly in id order, each exactly once: buffered events
at or below the cursor are dropped, and a hole in the buffer sends it back to the log.

The buffer is bounded in events and in bytes, and so is each page read from the log. The
hub never waits for a subscriber: when a buffer would overflow it is emptied and the
subscriber reads from the log until it has caught up, so a slow reader costs the writer
nothing, other subscribers nothing, and the server at most its bound in memory.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Protocol

from storage.models import StoredEvent
from storage.recent import RecentEvents

ReadAfter = Callable[[int, int, int], Awaitable[tuple[list[StoredEvent], bool]]]
"""``read_after(after_id, limit, max_bytes)``: durable events with id > after_id in id
order, at most ``limit`` of them and at most ``max_bytes`` of data (at least one event,
however large, when there is one); and whether more were durable at the read."""

CATCH_UP_PAGE = 100
DEFAULT_CAPACITY_BYTES = 1 << 20


class Subscription:
    """An async iterator of one conversation's events after ``after_id``.

    Ends when closed (`aclose`, the conversation deleted, the store closed). Use it as
    ``async with log.subscribe(cid, after) as events: async for event in events: ...``.
    """

    def __init__(
        self,
        hub: SubscriptionHub,
        conversation_id: str,
        after_id: int,
        read_after: ReadAfter,
        capacity: int,
        capacity_bytes: int = DEFAULT_CAPACITY_BYTES,
    ) -> None:
        self.conversation_id = conversation_id
        self._hub = hub
        self._read_after = read_after
        self._capacity = capacity
        self._capacity_bytes = capacity_bytes
        self._cursor = after_id
        self._live: deque[StoredEvent] = deque()
        self._live_since: deque[float] = deque()  # when each live event was offered
        self._live_bytes = 0
        self._ready: deque[StoredEvent] = deque()
        self._wakeup = asyncio.Event()
        self._overflowed = False
        self._reading_log = True
        self._closed = False
        self._idle = False
        self.log_fallbacks = 0
        """How many times this subscriber fell behind its buffer and went back to the log."""
        self.log_reads = 0
        """Pages it read from the log (not from the hub's recent events)."""
        self.direct: Callable[[StoredEvent], bool] | None = None
        """Optional fast path: while the subscriber is caught up and waiting, new events
        go straight to this callable (which must not block) instead of waking the
        iterating task. It returns False to decline; the event is then buffered."""

    @property
    def caught_up(self) -> bool:
        """True while the iterator has delivered everything and waits for more."""
        return self._idle

    @property
    def cursor(self) -> int:
        """The id of the last event delivered (``after_id`` before the first)."""
        return self._cursor

    def offer(self, events: Sequence[StoredEvent]) -> None:
        """Called by the hub with newly durable events; never blocks."""
        if self._closed or self._overflowed:
            return
        if self._idle and self.direct is not None:
            events = self._deliver_directly(events)
            if not events:
                return
        self._live.extend(events)
        self._live_since.extend(itertools.repeat(time.monotonic(), len(events)))
        self._live_bytes += sum(len(event.data) for event in events)
        if len(self._live) > self._capacity or self._live_bytes > self._capacity_bytes:
            self._overflowed = True
            self._clear_live()
        self._wakeup.set()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._clear_live()
            self._ready.clear()
            self._hub.discard(self)
            self._wakeup.set()

    async def aclose(self) -> None:
        self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> StoredEvent:
        while not self._closed:
            if self._ready:
                event = self._ready.popleft()
                self._cursor = event.id
                return event
            if self._overflowed:
                self._overflowed = False
                self._reading_log = True
                self.log_fallbacks += 1
            if self._reading_log:
                # The newest events are in memory: a subscriber close behind reads none
                # of the log (what is published meanwhile reaches its live buffer).
                recent = self._hub.recent.after(
                    self.conversation_id, self._cursor, CATCH_UP_PAGE, self._capacity_bytes
                )
                self._hub.observer.caught_up(from_log=recent is None)
                if recent is None:
                    recent = await self._read_after(
                        self._cursor, CATCH_UP_PAGE, self._capacity_bytes
                    )
                    self.log_reads += 1
                page, self._reading_log = recent
                self._ready.extend(page)
                continue
            if self._take_live():
                continue
            self._wakeup.clear()
            self._idle = True  # caught up: `direct` may deliver while this waits
            try:
                await self._wakeup.wait()
            finally:
                self._idle = False
        raise StopAsyncIteration

    def _deliver_directly(self, events: Sequence[StoredEvent]) -> Sequence[StoredEvent]:
        """Hand the next in-order events to `direct`; return what it did not take."""
        assert self.direct is not None
        index = 0
        while index < len(events):
            event = events[index]
            if event.id <= self._cursor:
                index += 1  # already delivered
            elif event.id == self._cursor + 1 and self._hand_over(event):
                self._cursor = event.id
                self._hub.observer.delivered(0.0)  # handed over as it became durable
                index += 1
            else:
                break
        return events[index:]

    def _hand_over(self, event: StoredEvent) -> bool:
        assert self.direct is not None
        try:
            return self.direct(event)
        except Exception:
            # It runs inside the log writer's publish: never let it fail there.
            self.direct = None
            return False

    def _clear_live(self) -> None:
        self._live.clear()
        self._live_since.clear()
        self._live_bytes = 0

    def _pop_live(self) -> StoredEvent:
        event = self._live.popleft()
        self._live_since.popleft()
        self._live_bytes -= len(event.data)
        return event

    def _take_live(self) -> bool:
        """Move the next in-order live events to the ready queue; False if there is none."""
        expected = self._cursor + 1
        while self._live:
            event = self._live[0]
            if event.id < expected:
                self._pop_live()  # already read from the log
            elif event.id == expected:
                self._hub.observer.delivered(time.monotonic() - self._live_since[0])
                self._ready.append(self._pop_live())
                expected += 1
            else:
                self._reading_log = True  # a hole: those events are in the log
                return True
        return bool(self._ready)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LogObserver(Protocol):
    """Told what the log does, for metrics; must not block (it runs in the writer)."""

    def appended(self, events: int, seconds: float) -> None:
        """``events`` became durable, ``seconds`` after their append was asked for."""

    def delivered(self, seconds: float) -> None:
        """A live event reached a subscriber ``seconds`` after it became durable."""

    def caught_up(self, *, from_log: bool) -> None:
        """A subscriber took a page of catch-up: from the recent events in memory, or
        (``from_log``) read from the log."""


class _Unobserved:
    def appended(self, events: int, seconds: float) -> None:
        pass

    def delivered(self, seconds: float) -> None:
        pass

    def caught_up(self, *, from_log: bool) -> None:
        pass


class SubscriptionHub:
    """Routes newly durable events to the subscriptions of their conversation, and keeps
    the newest ones of each in memory (`RecentEvents`) for subscribers catching up."""

    def __init__(
        self,
        capacity: int = 1024,
        capacity_bytes: int = DEFAULT_CAPACITY_BYTES,
        recent: RecentEvents | None = None,
    ) -> None:
        self._capacity = capacity
        self._capacity_bytes = capacity_bytes
        self._by_conversation: dict[str, set[Subscription]] = {}
        self._newest: dict[str, int] = {}
        """The newest id of each conversation that has subscribers (for their lag)."""
        self.recent = recent or RecentEvents()
        self.observer: LogObserver = _Unobserved()

    def subscribe(self, conversation_id: str, after_id: int, read_after: ReadAfter) -> Subscription:
        subscription = Subscription(
            self, conversation_id, after_id, read_after, self._capacity, self._capacity_bytes
        )
        self._by_conversation.setdefault(conversation_id, set()).add(subscription)
        return subscription

    def publish(self, conversation_id: str, events: list[StoredEvent]) -> None:
        self.recent.add(conversation_id, events)
        subscriptions = tuple(self._by_conversation.get(conversation_id, ()))
        if subscriptions and events:
            self._newest[conversation_id] = events[-1].id
        for subscription in subscriptions:
            subscription.offer(events)

    def published_through(self, conversation_id: str) -> int | None:
        """The newest id this hub has handed its subscribers of the conversation (or
        where the furthest of them has got to); None when nobody here subscribes."""
        subscribers = self._by_conversation.get(conversation_id)
        if not subscribers:
            return None
        newest = self.recent.newest(conversation_id)
        if newest is not None:
            return newest
        return max(subscription.cursor for subscription in subscribers)

    def lags(self) -> list[int]:
        """How many durable events each subscriber has yet to take (0: caught up)."""
        return [
            max(0, self._newest.get(conversation_id, -1) - subscription.cursor)
            for conversation_id, subscriptions in self._by_conversation.items()
            for subscription in subscriptions
        ]

    def watched(self) -> list[str]:
        """Conversations with subscribers."""
        return list(self._by_conversation)

    def subscriber_count(self, conversation_id: str) -> int:
        return len(self._by_conversation.get(conversation_id, ()))

    def discard(self, subscription: Subscription) -> None:
        subscribers = self._by_conversation.get(subscription.conversation_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._by_conversation[subscription.conversation_id]
                self._newest.pop(subscription.conversation_id, None)

    def end_conversation(self, conversation_id: str) -> None:
        self.recent.forget(conversation_id)
        self._newest.pop(conversation_id, None)
        for subscription in tuple(self._by_conversation.pop(conversation_id, ())):
            subscription.close()

    def close(self) -> None:
        for conversation_id in tuple(self._by_conversation):
            self.end_conversation(conversation_id)
