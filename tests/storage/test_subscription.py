"""The subscription state machine on its own, fed by hand.

The conformance suite covers subscriptions against real stores; here the hub is driven
directly to reach states a single-process store cannot produce on demand: a live event
arriving ahead of one still missing (as across processes), and duplicates.
"""

from __future__ import annotations

import asyncio
import gc

from storage import StoredEvent, Subscription, SubscriptionHub
from storage.recent import RecentEvents


def nothing() -> RecentEvents:
    """No events kept in memory: every catch-up reads the log."""
    return RecentEvents(total_bytes=0)


class ListLog:
    """An in-memory stand-in for the durable log: ``read_after`` over a list."""

    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self.reads = 0

    def add(self, count: int, size: int = 2) -> list[StoredEvent]:
        start = len(self.events)
        new = [StoredEvent("c", i, b"x" * size) for i in range(start, start + count)]
        self.events.extend(new)
        return new

    async def read_after(
        self, after: int, limit: int, max_bytes: int
    ) -> tuple[list[StoredEvent], bool]:
        self.reads += 1
        page: list[StoredEvent] = []
        size = 0
        for event in self.events[after + 1 : after + 1 + limit]:
            if page and size + len(event.data) > max_bytes:
                break
            page.append(event)
            size += len(event.data)
        return page, len(self.events) > after + 1 + len(page)


async def take(subscription: object, count: int) -> list[int]:
    iterator = subscription.__aiter__()  # type: ignore[attr-defined]
    return [(await asyncio.wait_for(anext(iterator), 1)).id for _ in range(count)]


async def caught_up(subscription: Subscription) -> None:
    for _ in range(100):
        if subscription.caught_up:
            return
        await asyncio.sleep(0)
    raise AssertionError("the subscription never caught up")


async def test_a_hole_in_live_events_is_filled_from_the_log() -> None:
    log, hub = ListLog(), SubscriptionHub()
    log.add(3)
    subscription = hub.subscribe("c", -1, log.read_after)
    assert await take(subscription, 3) == [0, 1, 2]
    missing, arrived = log.add(1), log.add(1)
    hub.publish("c", arrived)  # event 4 arrives before event 3 was published
    assert await take(subscription, 2) == [3, 4]
    hub.publish("c", missing)  # the late one is dropped, not repeated
    hub.publish("c", log.add(1))
    assert await take(subscription, 1) == [5]


async def test_events_published_during_catch_up_are_not_repeated() -> None:
    log, hub = ListLog(), SubscriptionHub()
    log.add(150)
    subscription = hub.subscribe("c", 9, log.read_after)
    hub.publish("c", log.events[140:150])  # already in the log it is about to read
    hub.publish("c", log.add(5))
    assert await take(subscription, 145) == list(range(10, 155))


async def test_overflow_drops_to_the_log_and_keeps_order() -> None:
    log, hub = ListLog(), SubscriptionHub(capacity=8)
    subscription = hub.subscribe("c", -1, log.read_after)
    for _ in range(10):
        hub.publish("c", log.add(5))  # 50 events into a buffer of 8
    assert await take(subscription, 50) == list(range(50))
    assert subscription.log_fallbacks == 1


async def test_close_ends_iteration_and_unregisters() -> None:
    log, hub = ListLog(), SubscriptionHub()
    subscription = hub.subscribe("c", -1, log.read_after)
    assert hub.subscriber_count("c") == 1

    async def drain() -> list[int]:
        return [event.id async for event in subscription]

    task = asyncio.create_task(drain())
    hub.publish("c", log.add(2))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    hub.end_conversation("c")
    assert await asyncio.wait_for(task, 1) == [0, 1]
    assert hub.subscriber_count("c") == 0


async def test_direct_delivery_while_caught_up_keeps_order() -> None:
    log, hub = ListLog(), SubscriptionHub()
    log.add(2)
    subscription = hub.subscribe("c", -1, log.read_after)
    delivered: list[int] = []
    accepting = True

    def direct(event: StoredEvent) -> bool:
        if accepting:
            delivered.append(event.id)
        return accepting

    subscription.direct = direct
    iterated = await take(subscription, 2)  # catch-up goes through the iterator
    waiting = asyncio.create_task(take(subscription, 1))
    await caught_up(subscription)
    hub.publish("c", log.add(3))  # 2, 3, 4: straight to `direct`, the task stays asleep
    assert delivered == [2, 3, 4]
    assert not waiting.done()
    accepting = False
    hub.publish("c", log.add(1))  # declined: buffered, and the iterator wakes for it
    assert await asyncio.wait_for(waiting, 1) == [5]
    assert iterated + delivered + [5] == list(range(6))


async def test_a_failing_direct_path_falls_back_to_the_iterator() -> None:
    log, hub = ListLog(), SubscriptionHub()
    subscription = hub.subscribe("c", -1, log.read_after)

    def broken(event: StoredEvent) -> bool:
        raise RuntimeError("socket gone")

    subscription.direct = broken
    waiting = asyncio.create_task(take(subscription, 2))
    await caught_up(subscription)
    hub.publish("c", log.add(2))  # must not raise into the publisher
    assert await asyncio.wait_for(waiting, 1) == [0, 1]
    assert subscription.direct is None


async def test_the_buffer_is_bounded_in_bytes() -> None:
    """A few large events overflow a buffer that would hold many small ones: the
    subscriber goes back to the log, which it reads in pages bounded in bytes too."""
    log, hub = ListLog(), SubscriptionHub(capacity=1000, capacity_bytes=10_000, recent=nothing())
    subscription = hub.subscribe("c", -1, log.read_after)
    hub.publish("c", log.add(3, size=4_000))
    assert subscription.log_fallbacks == 0
    hub.publish("c", log.add(1, size=4_000))  # 16,000 bytes buffered: over the bound
    hub.publish("c", log.add(20, size=4_000))
    assert await take(subscription, 24) == list(range(24))
    assert subscription.log_fallbacks == 1
    assert log.reads >= 24 * 4_000 // 10_000  # no page carried more than the bound


async def test_a_subscriber_close_behind_catches_up_from_memory() -> None:
    log, hub = ListLog(), SubscriptionHub()
    hub.publish("c", log.add(10))
    subscription = hub.subscribe("c", 5, log.read_after)
    assert await take(subscription, 4) == [6, 7, 8, 9]
    assert (log.reads, subscription.log_reads) == (0, 0)
    hub.publish("c", log.add(2))
    assert await take(subscription, 2) == [10, 11]


async def test_a_subscriber_far_behind_reads_the_log_then_memory() -> None:
    log = ListLog()
    hub = SubscriptionHub(recent=RecentEvents(per_conversation=4))
    for _ in range(20):
        hub.publish("c", log.add(1))
    subscription = hub.subscribe("c", -1, log.read_after)
    assert await take(subscription, 20) == list(range(20))
    assert subscription.log_reads == 1  # 0..15 from the log, 16..19 from memory


def test_recent_events_are_bounded_and_contiguous() -> None:
    recent = RecentEvents(per_conversation=3, per_conversation_bytes=10, total_bytes=25)
    events = [StoredEvent("a", i, b"x" * 4) for i in range(5)]
    recent.add("a", events)  # 10 bytes hold two of them: 3 and 4
    assert recent.after("a", 2, 10, 100) == ([events[3], events[4]], False)
    assert recent.after("a", 1, 10, 100) is None  # 2 is no longer held: read the log
    assert recent.after("a", 2, 1, 100) == ([events[3]], True)
    assert recent.after("a", 4, 10, 100) == ([], False)  # caught up
    recent.add("a", [StoredEvent("a", 9, b"y")])  # not the next id: start afresh
    assert recent.after("a", 8, 10, 100) == ([StoredEvent("a", 9, b"y")], False)
    for name in "bcdef":
        recent.add(name, [StoredEvent(name, 0, b"z" * 8)])
    assert recent.size <= 25
    assert recent.after("a", 8, 10, 100) is None  # the least recently written went first


def test_recent_events_hold_no_object_per_event() -> None:
    """The tails are packed (a buffer and its offsets): events held as objects were
    replaced one by one all through a reconnect storm and stayed scattered over its
    heap, each keeping an allocator arena from being returned."""
    recent = RecentEvents()
    for index in range(300):
        recent.add("a", [StoredEvent("a", index, b'{"id":%d}' % index)])
    assert _reachable_events(recent) == 0
    page, more = recent.after("a", 290, 100, 1 << 20) or ([], True)
    assert [(e.id, e.data) for e in page] == [(i, b'{"id":%d}' % i) for i in range(291, 300)]
    assert not more


def _reachable_events(root: object) -> int:
    """How many `StoredEvent`s ``root`` keeps alive (counted by walking what it refers
    to, so other tests' objects do not count)."""
    seen: set[int] = set()
    pending = [root]
    found = 0
    while pending:
        item = pending.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        found += isinstance(item, StoredEvent)
        pending.extend(gc.get_referents(item))
    return found
