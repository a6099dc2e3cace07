"""Property-based tests of the log's one ordering rule, against the `Storage` protocol.

Hypothesis draws a schedule: several concurrent actors, each a list of steps (append a
few events, walk a conversation forward or backward in pages of random size, subscribe
from a random point, yield to the loop). Whatever the interleaving, no event is lost,
skipped or repeated, and every walk sees at least what was acknowledged before it began.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from events import build_filter
from storage import NewConversation, Storage, Subscription
from tests.storage.factories import numbered

CONVERSATIONS = 3

append_step = st.tuples(st.just("append"), st.integers(0, CONVERSATIONS - 1), st.integers(1, 12))
walk_step = st.tuples(
    st.just("walk"),
    st.integers(0, CONVERSATIONS - 1),
    st.integers(1, 25),  # page size
    st.booleans(),  # reverse
    st.sampled_from([None, "action:run", "message"]),  # type filter
)
subscribe_step = st.tuples(
    st.just("subscribe"), st.integers(0, CONVERSATIONS - 1), st.integers(-1, 30)
)
yield_step = st.tuples(st.just("yield"))
actor = st.lists(st.one_of(append_step, walk_step, subscribe_step, yield_step), max_size=12)
schedules = st.lists(actor, min_size=1, max_size=4)


@dataclass
class Follower:
    index: int
    after: int
    subscription: Subscription
    seen: list[int] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    target: int | None = None
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    async def consume(self) -> None:
        async for event in self.subscription:
            self.seen.append(event.id)
            self._check()

    def expect_through(self, target: int) -> None:
        self.target = target
        self._check()

    def _check(self) -> None:
        last = self.seen[-1] if self.seen else self.after
        if self.target is not None and last >= self.target:
            self.reached.set()


async def run_schedule(storage: Storage, schedule: list[list[tuple[Any, ...]]]) -> None:
    conversation_ids = [
        (await storage.create_conversation(NewConversation(id=uuid.uuid4().hex))).id
        for _ in range(CONVERSATIONS)
    ]
    acknowledged = dict.fromkeys(range(CONVERSATIONS), 0)
    kinds: dict[tuple[int, int], str] = {}  # (conversation, event id) -> kind
    walks: list[tuple[int, bool, str | None, int, list[int]]] = []
    followers: list[Follower] = []

    async def play(steps: list[tuple[Any, ...]]) -> None:
        for step in steps:
            match step:
                case ("append", index, count):
                    batch = [numbered(offset) for offset in range(count)]
                    stored = await storage.append_many(conversation_ids[index], batch)
                    acknowledged[index] = max(acknowledged[index], stored[-1].id + 1)
                    for event, record in zip(batch, stored, strict=True):
                        kinds[index, record.id] = event.kind
                case ("walk", index, limit, reverse, kind):
                    before = acknowledged[index]
                    found = await _walk(storage, conversation_ids[index], limit, reverse, kind)
                    walks.append((index, reverse, kind, before, found))
                case ("subscribe", index, after):
                    subscription = storage.subscribe(conversation_ids[index], after_id=after)
                    follower = Follower(index, after, subscription)
                    follower.task = asyncio.create_task(follower.consume())
                    followers.append(follower)
                case ("yield",):
                    await asyncio.sleep(0)

    await asyncio.gather(*(play(steps) for steps in schedule))

    for index, conversation_id in enumerate(conversation_ids):
        assert await storage.count_events(conversation_id) == acknowledged[index]
        runs = build_filter(include_types=["action:run"])
        walked = await _walk(storage, conversation_id, 100, False, "action:run")
        assert await storage.count_events(conversation_id, filter=runs) == len(walked)
        everything = await _walk(storage, conversation_id, 100, False, None)
        assert everything == list(range(acknowledged[index]))

    for index, reverse, kind, acknowledged_before, found in walks:
        if kind is None:
            expected = list(range(len(found)))
            assert found == (expected[::-1] if reverse else expected), "a walk skipped or repeated"
            assert len(found) >= acknowledged_before, "a walk missed an acknowledged event"
            continue
        assert found == sorted(set(found), reverse=reverse), "a walk repeated or reordered"
        assert all(_matches(kinds[index, i], kind) for i in found), "the filter let one through"
        wanted = {i for i in range(acknowledged_before) if _matches(kinds[index, i], kind)}
        assert wanted <= set(found), "a filtered walk missed an acknowledged event"

    for follower in followers:
        target = acknowledged[follower.index] - 1
        follower.expect_through(target)
        await asyncio.wait_for(follower.reached.wait(), timeout=30)
        follower.subscription.close()
        assert follower.task is not None
        await follower.task
        assert follower.seen == list(range(follower.after + 1, target + 1))


def _matches(kind: str, name: str) -> bool:
    return kind == name or kind.endswith(f":{name}")


async def _walk(
    storage: Storage, conversation_id: str, limit: int, reverse: bool, kind: str | None
) -> list[int]:
    filter = build_filter(include_types=[kind]) if kind else None
    found: list[int] = []
    kwargs: dict[str, Any] = {"limit": limit, "reverse": reverse, "filter": filter}
    while True:
        page = await storage.search_events(conversation_id, **kwargs)
        found.extend(event.id for event in page.events)
        if page.next_cursor is None:
            return found
        kwargs["end_id" if reverse else "start_id"] = page.next_cursor
