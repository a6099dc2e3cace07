"""The subscription state machine on its own, fed by hand.

The conformance suite covers subscriptions against real stores; here the hub is driven
directly to reach states a single-process store cannot produce on demand: a live event
arriving ahead of one still missing (as across processes), and duplicates.
"""

from __future__ import annotations

import asyncio

from storage import StoredEvent, Subscription, SubscriptionHub


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
    log, hub = ListLog(), SubscriptionHub(capacity=1000, capacity_bytes=10_000)
    subscription = hub.subscribe("c", -1, log.read_after)
    hub.publish("c", log.add(3, size=4_000))
    assert subscription.log_fallbacks == 0
    hub.publish("c", log.add(1, size=4_000))  # 16,000 bytes buffered: over the bound
    hub.publish("c", log.add(20, size=4_000))
    assert await take(subscription, 24) == list(range(24))
    assert subscription.log_fallbacks == 1
    assert log.reads >= 24 * 4_000 // 10_000  # no page carried more than the bound
