"""The storage conformance suite: one set of tests against the `Storage` protocol.

Each backend runs all of it with a small subclass that says how to open a store at a
location (see test_sqlite.py). Nothing here knows which backend it is testing.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings

from events import EventBase, build_filter
from storage import (
    ApiKeyNotFound,
    ConversationExists,
    ConversationNotFound,
    ConversationPatch,
    InvalidCursor,
    InvalidSearchQuery,
    NewConversation,
    Storage,
    StoredEvent,
)
from storage.factory import open_storage
from tests.storage import properties
from tests.storage.conformance_automation import AutomationConformance
from tests.storage.factories import numbered, output, run, say, think

Opener = Callable[[], Awaitable[Storage]]
REPOSITORY = Path(__file__).resolve().parents[2]


async def walk(storage: Storage, conversation_id: str, **kwargs: Any) -> list[StoredEvent]:
    """Follow `next_cursor` to the end; returns every event of the walk."""
    reverse = kwargs.get("reverse", False)
    events: list[StoredEvent] = []
    while True:
        page = await storage.search_events(conversation_id, **kwargs)
        events.extend(page.events)
        if page.next_cursor is None:
            return events
        kwargs["end_id" if reverse else "start_id"] = page.next_cursor


class StorageConformance(AutomationConformance):
    """Subclasses define the ``storage_url`` fixture: a URL for `open_storage` naming a
    fresh, persistent location (reopening it finds the same data). Tasks, schedules and
    webhooks: `AutomationConformance`."""

    @pytest.fixture
    def storage_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def opener(self, storage_url: str) -> Opener:
        return functools.partial(open_storage, storage_url)

    @pytest_asyncio.fixture
    async def storage(self, opener: Opener) -> AsyncIterator[Storage]:
        store = await opener()
        try:
            yield store
        finally:
            await store.close()

    @pytest_asyncio.fixture
    async def conversation(self, storage: Storage) -> str:
        return (await storage.create_conversation(NewConversation(title="test"))).id

    # -- conversations ---------------------------------------------------------------

    async def test_create_and_get(self, storage: Storage) -> None:
        created = await storage.create_conversation(
            NewConversation(
                id="conv-1",
                owner="alice",
                title="Fix the bug",
                repository="acme/widgets",
                selected_branch="main",
                git_provider="github",
                trigger="gui",
                max_iterations=10,
                max_budget=2.5,
                priority=8,
                settings={"agent": "demo"},
            )
        )
        fetched = await storage.get_conversation("conv-1")
        assert fetched == created
        assert fetched.owner == "alice"
        assert fetched.status == "STOPPED"
        assert fetched.settings == {"agent": "demo"}
        assert (fetched.max_iterations, fetched.max_budget, fetched.priority) == (10, 2.5, 8)
        assert fetched.iterations == 0
        assert fetched.created_at.tzinfo is not None
        assert fetched.created_at == fetched.updated_at

    async def test_generated_ids_are_unique(self, storage: Storage) -> None:
        created = [await storage.create_conversation(NewConversation()) for _ in range(5)]
        assert len({record.id for record in created}) == 5

    async def test_duplicate_id_is_refused_and_changes_nothing(self, storage: Storage) -> None:
        await storage.create_conversation(NewConversation(id="dup", title="first"))
        with pytest.raises(ConversationExists):
            await storage.create_conversation(NewConversation(id="dup", title="second"))
        assert (await storage.get_conversation("dup")).title == "first"

    async def test_missing_conversation(self, storage: Storage) -> None:
        with pytest.raises(ConversationNotFound):
            await storage.get_conversation("nope")
        with pytest.raises(ConversationNotFound):
            await storage.update_conversation("nope", ConversationPatch(title="x"))
        with pytest.raises(ConversationNotFound):
            await storage.delete_conversation("nope")
        with pytest.raises(ConversationNotFound):
            await storage.append("nope", say("hello"))
        with pytest.raises(ConversationNotFound):
            await storage.search_events("nope")
        with pytest.raises(ConversationNotFound):
            await storage.count_events("nope")
        with pytest.raises(ConversationNotFound):
            await storage.latest_event_id("nope")

    async def test_update_writes_only_given_fields(self, storage: Storage) -> None:
        created = await storage.create_conversation(NewConversation(id="u", title="before"))
        updated = await storage.update_conversation(
            "u",
            ConversationPatch(
                status="RUNNING", accumulated_cost=0.25, prompt_tokens=10, iterations=3
            ),
        )
        assert updated.title == "before"
        assert updated.iterations == 3
        assert (updated.status, updated.accumulated_cost, updated.prompt_tokens) == (
            "RUNNING",
            0.25,
            10,
        )
        assert updated.updated_at >= created.updated_at
        assert await storage.get_conversation("u") == updated

    async def test_list_is_newest_first_and_cursor_paged(self, storage: Storage) -> None:
        ids = [
            (await storage.create_conversation(NewConversation(id=f"c{i:02d}"))).id
            for i in range(7)
        ]
        seen: list[str] = []
        cursor = None
        while True:
            page = await storage.list_conversations(limit=3, cursor=cursor)
            seen.extend(record.id for record in page.conversations)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == ids[::-1]

    async def test_list_by_owner(self, storage: Storage) -> None:
        for index, owner in enumerate(["alice", "bob", "alice"]):
            await storage.create_conversation(NewConversation(id=f"o{index}", owner=owner))
        page = await storage.list_conversations(owner="alice")
        assert [record.id for record in page.conversations] == ["o2", "o0"]
        assert (await storage.list_conversations(owner="carol")).conversations == []

    async def test_list_rejects_foreign_cursor(self, storage: Storage) -> None:
        with pytest.raises(InvalidCursor):
            await storage.list_conversations(cursor="not-a-cursor")

    async def test_delete_removes_events_and_frees_the_id(self, storage: Storage) -> None:
        await storage.create_conversation(NewConversation(id="gone"))
        await storage.append_many("gone", [say("one"), say("two")])
        await storage.delete_conversation("gone")
        with pytest.raises(ConversationNotFound):
            await storage.get_conversation("gone")
        with pytest.raises(ConversationNotFound):
            await storage.search_events("gone")
        await storage.create_conversation(NewConversation(id="gone"))
        stored = await storage.append("gone", say("fresh"))
        assert stored.id == 0
        assert [event.id for event in (await storage.search_events("gone")).events] == [0]

    # -- API keys --------------------------------------------------------------------

    async def test_api_keys(self, storage: Storage) -> None:
        assert await storage.count_api_keys() == 0
        alice = await storage.add_api_key("alice", b"digest-a", "laptop")
        await storage.add_api_key("bob", b"digest-b")
        assert await storage.count_api_keys() == 2
        found = await storage.find_api_key(b"digest-a")
        assert found == alice
        assert (found.user, found.label, found.revoked) == ("alice", "laptop", False)
        assert await storage.find_api_key(b"unknown") is None
        assert [key.user for key in await storage.list_api_keys()] == ["alice", "bob"]
        assert [key.user for key in await storage.list_api_keys("bob")] == ["bob"]
        await storage.revoke_api_key(alice.id)
        assert await storage.find_api_key(b"digest-a") is None
        assert await storage.count_api_keys() == 1
        assert await storage.count_api_keys(include_revoked=True) == 2
        assert [key.revoked for key in await storage.list_api_keys("alice")] == [True]
        with pytest.raises(ApiKeyNotFound):
            await storage.revoke_api_key(9999)

    # -- appends ---------------------------------------------------------------------

    async def test_append_assigns_id_and_timestamp(
        self, storage: Storage, conversation: str
    ) -> None:
        before = datetime.now(UTC)
        stored = await storage.append(conversation, say("hello"))
        wire = stored.to_dict()
        assert (stored.id, wire["id"]) == (0, 0)
        stamped = datetime.fromisoformat(wire["timestamp"])
        assert stamped.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=1) <= stamped <= datetime.now(UTC)
        assert wire["args"]["content"] == "hello"
        assert stored.to_event().id == 0

    async def test_append_ignores_the_callers_id_and_keeps_its_timestamp(
        self, storage: Storage, conversation: str
    ) -> None:
        recorded = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
        event = run("ls", timestamp=recorded).model_copy(update={"id": 41})
        stored = await storage.append(conversation, event)
        assert stored.id == 0
        assert stored.to_event().timestamp == recorded

    async def test_timestamps_never_go_backwards(self, storage: Storage, conversation: str) -> None:
        for index in range(20):
            await storage.append(conversation, say(f"m{index}"))
        stamps = [e.to_event().timestamp for e in await walk(storage, conversation)]
        assert stamps == sorted(stamps)

    async def test_racing_appends_get_gapless_ids(self, storage: Storage) -> None:
        conversations = [
            (await storage.create_conversation(NewConversation())).id for _ in range(10)
        ]

        async def writer(conversation_id: str, count: int) -> list[int]:
            ids = []
            for index in range(count):
                ids.append((await storage.append(conversation_id, numbered(index))).id)
            return ids

        results = await asyncio.gather(
            *(writer(cid, 30) for cid in conversations for _ in range(3))
        )
        for position, conversation_id in enumerate(conversations):
            ids = sorted(i for r in results[position * 3 : position * 3 + 3] for i in r)
            assert ids == list(range(90))
            stored = await walk(storage, conversation_id)
            assert [event.id for event in stored] == list(range(90))
            assert [event.to_dict()["id"] for event in stored] == list(range(90))

    async def test_append_many_is_consecutive(self, storage: Storage, conversation: str) -> None:
        await storage.append(conversation, say("first"))
        batches = await asyncio.gather(
            *(storage.append_many(conversation, [numbered(i) for i in range(5)]) for _ in range(4))
        )
        for batch in batches:
            ids = [event.id for event in batch]
            assert ids == list(range(ids[0], ids[0] + 5))
        assert await storage.latest_event_id(conversation) == 20
        assert await storage.append_many(conversation, []) == []

    async def test_failed_append_does_not_disturb_the_batch(
        self, storage: Storage, conversation: str
    ) -> None:
        results = await asyncio.gather(
            storage.append(conversation, say("a")),
            storage.append("missing", say("b")),
            storage.append(conversation, say("c")),
            return_exceptions=True,
        )
        assert isinstance(results[1], ConversationNotFound)
        assert sorted(r.id for r in results if isinstance(r, StoredEvent)) == [0, 1]

    async def test_events_survive_reopening(self, opener: Opener) -> None:
        store = await opener()
        conversation_id = (await store.create_conversation(NewConversation(id="durable"))).id
        await store.append_many(conversation_id, [numbered(i) for i in range(12)])
        await store.close()
        store = await opener()
        try:
            assert await store.latest_event_id(conversation_id) == 11
            stored = await store.append(conversation_id, say("after restart"))
            assert stored.id == 12
            events = await walk(store, conversation_id)
            assert [event.id for event in events] == list(range(13))
        finally:
            await store.close()

    # -- a conversation created with its events -------------------------------------

    async def test_create_with_events_is_one_step(self, storage: Storage) -> None:
        recorded = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
        record, stored = await storage.create_conversation_with_events(
            NewConversation(id="imported", title="imported"),
            [say("hello"), run("ls", timestamp=recorded), output("ls", "a.txt", cause=1)],
        )
        assert (record.id, record.title) == ("imported", "imported")
        assert [event.id for event in stored] == [0, 1, 2]
        assert await walk(storage, "imported") == stored
        assert stored[1].to_event().timestamp == recorded
        assert stored[2].to_dict()["cause"] == 1
        async with storage.subscribe("imported") as live:
            later = await storage.append("imported", say("after the import"))
            seen = [(await anext(live)).id for _ in range(4)]
        assert later.id == 3
        assert seen == [0, 1, 2, 3]

    async def test_create_with_no_events(self, storage: Storage) -> None:
        record, stored = await storage.create_conversation_with_events(
            NewConversation(id="empty"), []
        )
        assert (record.id, stored) == ("empty", [])
        assert (await storage.append("empty", say("first"))).id == 0

    async def test_create_with_events_refuses_a_taken_id_and_writes_nothing(
        self, storage: Storage
    ) -> None:
        await storage.create_conversation(NewConversation(id="taken", title="first"))
        with pytest.raises(ConversationExists):
            await storage.create_conversation_with_events(
                NewConversation(id="taken", title="second"), [say("x"), say("y")]
            )
        assert await storage.latest_event_id("taken") == -1
        assert (await storage.get_conversation("taken")).title == "first"
        assert (await storage.append("taken", say("z"))).id == 0

    async def test_create_with_events_writes_nothing_when_the_events_fail(
        self, storage: Storage
    ) -> None:
        def events() -> Iterator[EventBase]:
            yield say("first")
            raise RuntimeError("the recording broke")

        with pytest.raises(RuntimeError):
            await storage.create_conversation_with_events(NewConversation(id="broken"), events())
        with pytest.raises(ConversationNotFound):
            await storage.get_conversation("broken")
        _, stored = await storage.create_conversation_with_events(
            NewConversation(id="broken"), [say("again")]
        )
        assert [event.id for event in stored] == [0]

    async def test_create_with_events_beside_busy_appends(self, storage: Storage) -> None:
        busy = (await storage.create_conversation(NewConversation())).id

        async def append_some() -> list[int]:
            return [(await storage.append(busy, numbered(i))).id for i in range(200)]

        appended, (_, created) = await asyncio.gather(
            append_some(),
            storage.create_conversation_with_events(
                NewConversation(id="big"), [numbered(i) for i in range(3000)]
            ),
        )
        assert appended == list(range(200))
        assert [event.id for event in created] == list(range(3000))
        assert [event.id for event in await walk(storage, "big")] == list(range(3000))
        assert await storage.count_events("big", filter=build_filter(include_types=["run"])) == 1500

    @pytest.mark.parametrize("with_taken_id", [False, True])
    async def test_creations_at_once_beside_appends_each_get_their_own_answer(
        self, storage: Storage, with_taken_id: bool
    ) -> None:
        """Creations queued together (a burst of admissions) with appends between them:
        each gets its own answer, a taken id fails alone, ids stay gapless."""
        busy = (await storage.create_conversation(NewConversation())).id
        await storage.create_conversation(NewConversation(id="taken", title="first"))

        async def create_then_append(name: str) -> list[int]:
            _, stored = await storage.create_conversation_with_events(
                NewConversation(id=name), [say(f"{name} 0"), say(f"{name} 1")]
            )
            later = await storage.append(name, say(f"{name} 2"))
            return [*(event.id for event in stored), later.id]

        names = [f"burst-{index}" for index in range(20)]
        outcomes = await asyncio.gather(
            *(storage.append(busy, numbered(index)) for index in range(10)),
            *map(create_then_append, names),
            *([storage.create_conversation_with_events(NewConversation(id="taken"), [say("x")])]
              if with_taken_id else []),
            *(storage.append(busy, numbered(index)) for index in range(10, 20)),
            return_exceptions=True,
        )  # fmt: skip
        assert [event.id for event in outcomes[:10]] == list(range(10))  # type: ignore[union-attr]
        assert outcomes[10:30] == [[0, 1, 2]] * 20
        if with_taken_id:
            assert isinstance(outcomes[30], ConversationExists)
        assert [event.id for event in outcomes[-10:]] == list(range(10, 20))  # type: ignore[union-attr]
        for name in names:
            texts = [event.to_dict()["args"]["content"] for event in await walk(storage, name)]
            assert texts == [f"{name} {index}" for index in range(3)]
        assert await storage.latest_event_id("taken") == -1
        assert (await storage.append("taken", say("z"))).id == 0

    async def test_an_append_queued_behind_its_conversations_creation_follows_it(
        self, storage: Storage
    ) -> None:
        """Queued together (one batch): the append lands after the creation's events,
        whatever else is written beside them."""
        busy = (await storage.create_conversation(NewConversation())).id
        outcomes = await asyncio.gather(
            storage.append(busy, numbered(0)),
            storage.create_conversation_with_events(NewConversation(id="fresh"), [say("a")]),
            storage.append("fresh", say("b")),
            storage.create_conversation_with_events(NewConversation(id="other"), [say("c")]),
            storage.append(busy, numbered(1)),
        )
        assert outcomes[2].id == 1  # type: ignore[union-attr]
        texts = [event.to_dict()["args"]["content"] for event in await walk(storage, "fresh")]
        assert texts == ["a", "b"]
        assert [event.id for event in await walk(storage, busy)] == [0, 1]
        assert await storage.latest_event_id("other") == 0

    async def test_record_patches_of_one_batch_each_land_and_in_order(
        self, storage: Storage
    ) -> None:
        """Patches queued together (many runs changing state at once, one record patched
        twice) each reach their record, the later of two last."""
        names = [(await storage.create_conversation(NewConversation())).id for _ in range(12)]
        twice = names[0]
        await asyncio.gather(
            *(
                storage.append(name, say("go"), patch=ConversationPatch(status="RUNNING"))
                for name in names[1:]
            ),
            storage.append(
                twice, say("first"), patch=ConversationPatch(status="STARTING", title="t")
            ),
            storage.append(twice, say("second"), patch=ConversationPatch(status="STOPPED")),
        )
        assert (await storage.get_conversation(twice)).status == "STOPPED"
        assert (await storage.get_conversation(twice)).title == "t"
        for name in names[1:]:
            assert (await storage.get_conversation(name)).status == "RUNNING"

    async def test_a_kept_timestamp_ahead_of_the_clock_drags_nothing(self, opener: Opener) -> None:
        ahead = datetime.now(UTC) + timedelta(hours=6)
        store = await opener()
        try:
            await store.create_conversation_with_events(
                NewConversation(id="ahead"), [run("ls", timestamp=ahead)]
            )
            stamps = [(await store.append("ahead", say("now"))).to_event().timestamp]
            await store.append("ahead", run("pwd", timestamp=ahead))
            stamps.append((await store.append("ahead", say("still now"))).to_event().timestamp)
        finally:
            await store.close()
        store = await opener()
        try:
            stamps.append(
                (await store.append("ahead", say("after reopening"))).to_event().timestamp
            )
        finally:
            await store.close()
        assert all(stamp is not None and stamp <= datetime.now(UTC) for stamp in stamps)
        assert stamps == sorted(stamps, key=lambda stamp: stamp or ahead)

    # -- search_events ---------------------------------------------------------------

    async def test_pages_forward_and_reverse(self, storage: Storage, conversation: str) -> None:
        await storage.append_many(conversation, [numbered(i) for i in range(250)])
        page = await storage.search_events(conversation)
        assert [e.id for e in page.events] == list(range(100))
        assert page.next_cursor == 100
        assert [e.id for e in await walk(storage, conversation, limit=7)] == list(range(250))
        backwards = await walk(storage, conversation, reverse=True, limit=9)
        assert [e.id for e in backwards] == list(range(249, -1, -1))

    async def test_range_is_inclusive(self, storage: Storage, conversation: str) -> None:
        await storage.append_many(conversation, [numbered(i) for i in range(30)])
        page = await storage.search_events(conversation, start_id=10, end_id=20)
        assert [e.id for e in page.events] == list(range(10, 21))
        assert page.next_cursor is None
        page = await storage.search_events(conversation, start_id=10, end_id=20, reverse=True)
        assert [e.id for e in page.events] == list(range(20, 9, -1))
        page = await storage.search_events(conversation, start_id=5, end_id=4)
        assert page.events == []
        page = await storage.search_events(conversation, start_id=1000)
        assert (page.events, page.next_cursor) == ([], None)

    async def test_exact_last_page_has_no_cursor(self, storage: Storage, conversation: str) -> None:
        await storage.append_many(conversation, [numbered(i) for i in range(20)])
        page = await storage.search_events(conversation, limit=20)
        assert len(page.events) == 20
        assert page.next_cursor is None

    @pytest.mark.parametrize(
        "kwargs",
        [{"limit": 0}, {"limit": 101}, {"start_id": -1}, {"end_id": -5}],
    )
    async def test_bad_page_arguments(
        self, storage: Storage, conversation: str, kwargs: dict[str, int]
    ) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - the message is the contract's own
            await storage.search_events(conversation, **kwargs)

    async def test_filters(self, storage: Storage, conversation: str) -> None:
        await storage.append_many(
            conversation,
            [
                say("Please build the Straße map"),  # 0
                run("make map"),  # 1
                output("make map", "BUILD OK", cause=1),  # 2
                run("cat secret", hidden=True),  # 3
                think("the build passed"),  # 4
                say("thanks", source="agent"),  # 5
            ],
        )

        async def ids(**fields: Any) -> list[int]:
            events = await walk(storage, conversation, filter=build_filter(**fields))
            return [event.id for event in events]

        assert await ids(include_types=["run"]) == [1, 2, 3]
        assert await ids(include_types=["CmdRunAction"]) == [1, 3]
        assert await ids(include_types=["message", "think"]) == [0, 4, 5]
        assert await ids(exclude_types=["run", "message"]) == [4]
        assert await ids(source="user") == [0]
        assert await ids(exclude_hidden=True) == [0, 1, 2, 4, 5]
        assert await ids(query="build") == [0, 2, 4]
        assert await ids(query="STRASSE") == [0]  # casefolded, not just lowercased
        assert await ids(query="map", include_types=["run"]) == [1, 2]
        assert await ids(query="no such words") == []

    async def test_text_filter_is_a_substring_match_indexed_or_not(
        self, storage: Storage, conversation: str
    ) -> None:
        """`query` matches any casefolded substring (inside words, across punctuation),
        the same for events already in a full-text index as for the newest ones."""
        other = (await storage.create_conversation(NewConversation())).id
        texts = [
            "an xHeisenbugs inside a word",  # 0
            "heisen bug, split apart",  # 1
            'quoted "heisenbug" here',  # 2
            "Die Straße-Karte",  # 3
            "path a/b.c_d: failed",  # 4
            "nothing to see",  # 5
        ]
        await storage.append(other, say("heisenbug of another conversation"))
        await storage.append_many(conversation, [say(text) for text in texts])
        await storage.wait_indexed()
        await storage.append_many(conversation, [say(text) for text in texts])  # 6..11

        async def ids(query: str, **page: Any) -> list[int]:
            events = await walk(storage, conversation, filter=build_filter(query=query), **page)
            return [event.id for event in events]

        assert await ids("heisenbug") == [0, 2, 6, 8]
        assert await ids("HEISENBUGS inside") == [0, 6]
        assert await ids('"heisenbug"') == [2, 8]
        assert await ids("n bug, s") == [1, 7]
        assert await ids("strasse-k") == [3, 9]
        assert await ids("b.c_d: f") == [4, 10]
        assert await ids("bu") == [0, 1, 2, 6, 7, 8]  # shorter than a trigram
        assert await ids("no such heisenbug") == []
        assert await ids("heisenbug", start_id=2, end_id=6) == [2, 6]
        assert await ids("heisenbug", reverse=True) == [8, 6, 2, 0]

    async def test_date_filters(self, storage: Storage, conversation: str) -> None:
        base = datetime(2025, 1, 1, tzinfo=UTC)
        days = [run(f"day {day}", timestamp=base + timedelta(days=day)) for day in range(5)]
        await storage.append_many(conversation, days)
        window = build_filter(
            start_date=base + timedelta(days=1), end_date=base + timedelta(days=3)
        )
        events = await walk(storage, conversation, filter=window)
        assert [event.id for event in events] == [1, 2, 3]
        assert await storage.count_events(conversation, filter=window) == 3

    async def test_filtered_pages_do_not_skip_or_repeat(
        self, storage: Storage, conversation: str
    ) -> None:
        await storage.append_many(conversation, [numbered(i) for i in range(200)])
        only_runs = build_filter(include_types=["action:run"])
        forward = await walk(storage, conversation, filter=only_runs, limit=6)
        assert [e.id for e in forward] == list(range(0, 200, 4))
        backward = await walk(storage, conversation, filter=only_runs, limit=6, reverse=True)
        assert [e.id for e in backward] == list(range(196, -1, -4))

    async def test_walk_while_appending_sees_each_event_once(
        self, storage: Storage, conversation: str
    ) -> None:
        await storage.append_many(conversation, [numbered(i) for i in range(50)])
        done = asyncio.Event()

        async def keep_appending() -> None:
            for index in range(50, 400):
                await storage.append(conversation, numbered(index))
            done.set()

        appender = asyncio.create_task(keep_appending())
        seen: list[int] = []
        cursor = 0
        while True:
            page = await storage.search_events(conversation, start_id=cursor, limit=13)
            seen.extend(event.id for event in page.events)
            if page.next_cursor is not None:
                cursor = page.next_cursor
            elif done.is_set() and seen and seen[-1] == 399:
                break
            else:
                cursor = seen[-1] + 1 if seen else 0
                await asyncio.sleep(0)
        await appender
        assert seen == list(range(400))

    # -- counts ----------------------------------------------------------------------

    async def test_counts_match_walks(self, storage: Storage, conversation: str) -> None:
        assert await storage.count_events(conversation) == 0
        assert await storage.latest_event_id(conversation) == -1
        await storage.append_many(conversation, [numbered(i) for i in range(103)])
        assert await storage.count_events(conversation) == 103
        assert await storage.count_events(conversation, start_id=100) == 3
        assert await storage.count_events(conversation, start_id=10, end_id=19) == 10
        assert await storage.count_events(conversation, start_id=200) == 0
        for fields in (
            {"include_types": ["think"]},
            {"query": "step"},
            {"exclude_types": ["message"], "source": "agent"},
        ):
            expected = len(await walk(storage, conversation, filter=build_filter(**fields)))
            assert await storage.count_events(conversation, filter=build_filter(**fields)) == (
                expected
            )
            assert expected > 0

    async def test_kind_counts_follow_appends_and_deletes(self, storage: Storage) -> None:
        await storage.create_conversation(NewConversation(id="counted"))
        runs = build_filter(include_types=["action:run"])
        not_runs = build_filter(exclude_types=["action:run"])
        assert await storage.count_events("counted", filter=runs) == 0
        await storage.append_many("counted", [numbered(i) for i in range(40)])
        assert await storage.count_events("counted", filter=runs) == 10
        assert await storage.count_events("counted", filter=not_runs) == 30
        await asyncio.gather(*(storage.append("counted", run(f"more {i}")) for i in range(7)))
        assert await storage.count_events("counted", filter=runs) == 17
        await storage.delete_conversation("counted")
        with pytest.raises(ConversationNotFound):
            await storage.count_events("counted", filter=runs)
        await storage.create_conversation(NewConversation(id="counted"))
        await storage.append("counted", run("fresh"))
        assert await storage.count_events("counted", filter=runs) == 1

    # -- cross-conversation search ---------------------------------------------------

    async def test_search_all(self, storage: Storage) -> None:
        first = (await storage.create_conversation(NewConversation(id="s1", title="First"))).id
        second = (await storage.create_conversation(NewConversation(id="s2"))).id
        await storage.append_many(
            first, [say("the quick brown fox"), run("grep fox zoo.txt"), say("nothing here")]
        )
        await storage.append_many(second, [say("a quick brown dog"), say("foxes and hounds")])
        await storage.wait_indexed()

        results = await storage.search_all("fox")
        assert [(hit.conversation_id, hit.event.id) for hit in results.hits] == [
            ("s1", 1),
            ("s1", 0),
        ]
        assert results.pending == 0
        assert results.hits[0].conversation_title == "First"
        prefix = await storage.search_all("fox*")
        assert [(h.conversation_id, h.event.id) for h in prefix.hits] == [
            ("s2", 1),
            ("s1", 1),
            ("s1", 0),
        ]
        phrase = await storage.search_all('"quick brown"')
        assert {(h.conversation_id, h.event.id) for h in phrase.hits} == {("s1", 0), ("s2", 0)}
        assert (await storage.search_all("QUICK dog")).hits[0].conversation_id == "s2"
        mine = await storage.search_all("quick", conversation_ids=[second])
        assert [h.conversation_id for h in mine.hits] == ["s2"]
        assert (await storage.search_all("quick", conversation_ids=[])).hits == []

    async def test_search_all_by_owner(self, storage: Storage) -> None:
        for owner in ("alice", "bob"):
            record = await storage.create_conversation(NewConversation(owner=owner))
            await storage.append(record.id, say(f"shared word from {owner}"))
        await storage.wait_indexed()
        hits = (await storage.search_all("shared", owner="bob")).hits
        assert [hit.event.to_dict()["args"]["content"] for hit in hits] == ["shared word from bob"]
        assert len((await storage.search_all("shared")).hits) == 2

    async def test_search_all_pages_newest_first(self, storage: Storage, conversation: str) -> None:
        await storage.append_many(conversation, [say(f"needle {i}") for i in range(25)])
        await storage.wait_indexed()
        found: list[int] = []
        cursor = None
        while True:
            results = await storage.search_all("needle", limit=10, cursor=cursor)
            found.extend(hit.event.id for hit in results.hits)
            cursor = results.next_cursor
            if cursor is None:
                break
        assert found == list(range(24, -1, -1))

    async def test_search_all_narrowed_to_conversations(self, storage: Storage) -> None:
        ids = [(await storage.create_conversation(NewConversation())).id for _ in range(4)]
        for index, conversation_id in enumerate(ids):
            await storage.append_many(
                conversation_id, [say(f"quince {index} {n}") for n in range(3)]
            )
        await storage.wait_indexed()
        chosen = [ids[2], ids[0], "no-such-conversation"]
        results = await storage.search_all("quince", conversation_ids=chosen, limit=4)
        first = [(hit.conversation_id, hit.event.id) for hit in results.hits]
        assert first == [(ids[2], 2), (ids[2], 1), (ids[2], 0), (ids[0], 2)]
        assert results.next_cursor is not None
        rest = await storage.search_all(
            "quince", conversation_ids=chosen, limit=4, cursor=results.next_cursor
        )
        assert [(hit.conversation_id, hit.event.id) for hit in rest.hits] == [
            (ids[0], 1),
            (ids[0], 0),
        ]
        assert rest.next_cursor is None
        alone = await storage.search_all("quince 3", conversation_ids=[ids[3]])
        assert [hit.event.id for hit in alone.hits] == [2, 1, 0]
        assert (await storage.search_all("quince", conversation_ids=["nope"])).hits == []

    async def test_search_all_forgets_deleted_conversations(self, storage: Storage) -> None:
        kept = (await storage.create_conversation(NewConversation())).id
        dropped = (await storage.create_conversation(NewConversation())).id
        await storage.append(kept, say("unique marmalade"))
        await storage.append(dropped, say("unique marmalade too"))
        await storage.wait_indexed()
        await storage.delete_conversation(dropped)
        await storage.append(dropped := kept, say("marmalade again"))
        await storage.wait_indexed()
        hits = (await storage.search_all("marmalade")).hits
        assert [(h.conversation_id, h.event.id) for h in hits] == [(dropped, 1), (kept, 0)]

    async def test_search_deleted_before_indexed(self, storage: Storage) -> None:
        doomed = (await storage.create_conversation(NewConversation())).id
        await storage.append_many(doomed, [say(f"ephemeral {i}") for i in range(50)])
        await storage.delete_conversation(doomed)
        other = (await storage.create_conversation(NewConversation())).id
        await storage.append(other, say("ephemeral survivor"))
        await storage.wait_indexed()
        hits = (await storage.search_all("ephemeral")).hits
        assert [(h.conversation_id, h.event.id) for h in hits] == [(other, 0)]

    @pytest.mark.parametrize("query", ["", "   ", "!!! ---", '""'])
    async def test_search_all_needs_words(self, storage: Storage, query: str) -> None:
        with pytest.raises(InvalidSearchQuery):
            await storage.search_all(query)

    async def test_search_all_rejects_foreign_cursor(self, storage: Storage) -> None:
        with pytest.raises(InvalidCursor):
            await storage.search_all("x", cursor="abc")

    # -- subscriptions ---------------------------------------------------------------

    async def test_subscribe_catches_up_then_follows(
        self, storage: Storage, conversation: str
    ) -> None:
        await storage.append_many(conversation, [numbered(i) for i in range(10)])
        received: list[int] = []
        async with storage.subscribe(conversation, after_id=4) as events:
            async for event in events:
                received.append(event.id)
                if event.id == 9:
                    await storage.append(conversation, say("live"))
                if event.id == 10:
                    assert event.to_dict()["args"]["content"] == "live"
                    break
        assert received == [5, 6, 7, 8, 9, 10]

    async def test_subscribe_during_heavy_appends_is_gapless(self, storage: Storage) -> None:
        conversation_id = (await storage.create_conversation(NewConversation())).id
        await storage.append_many(conversation_id, [numbered(i) for i in range(300)])
        total = 2000

        async def writer(offset: int) -> None:
            for index in range(offset, total - 300, 4):
                await storage.append(conversation_id, numbered(index))

        async def reader(after: int) -> list[int]:
            seen = []
            async with storage.subscribe(conversation_id, after_id=after) as events:
                async for event in events:
                    seen.append(event.id)
                    if event.id == total - 1:
                        return seen
            return seen

        readers = [asyncio.create_task(reader(after)) for after in (-1, 150, 299)]
        await asyncio.gather(*(writer(offset) for offset in range(4)))
        results = await asyncio.wait_for(asyncio.gather(*readers), timeout=30)
        for after, seen in zip((-1, 150, 299), results, strict=True):
            assert seen == list(range(after + 1, total))

    async def test_large_events_are_read_and_followed_in_bounded_pages(
        self, storage: Storage, conversation: str
    ) -> None:
        """Events far larger than a subscriber's byte bound (1 MiB by default) still
        arrive, in order, once each: from the log in pages, then live."""
        big = [think(f"{index}:" + "x" * 200_000) for index in range(12)]
        await storage.append_many(conversation, big)
        received: list[int] = []
        async with storage.subscribe(conversation) as events:
            async for event in events:
                received.append(event.id)
                if event.id == 11:
                    await storage.append_many(conversation, big)  # live, over the bound
                if event.id == 23:
                    break
        assert received == list(range(24))

    async def test_slow_subscriber_falls_back_to_the_log(
        self, storage: Storage, conversation: str
    ) -> None:
        release = asyncio.Event()
        seen: list[int] = []
        fast_seen: list[int] = []
        total = 3000

        async def slow() -> int:
            async with storage.subscribe(conversation) as events:
                async for event in events:
                    if not release.is_set():
                        await release.wait()  # stalls while the writer runs ahead
                    seen.append(event.id)
                    if event.id == total - 1:
                        return events.log_fallbacks
            return -1

        async def fast() -> None:
            async with storage.subscribe(conversation) as events:
                async for event in events:
                    fast_seen.append(event.id)
                    if event.id == total - 1:
                        return

        slow_task = asyncio.create_task(slow())
        fast_task = asyncio.create_task(fast())
        await asyncio.sleep(0.01)
        # The writer is never held up by the stalled reader: every append completes.
        for start in range(0, total, 100):
            await asyncio.wait_for(
                storage.append_many(conversation, [numbered(i) for i in range(start, start + 100)]),
                timeout=10,
            )
        await asyncio.wait_for(fast_task, timeout=10)
        release.set()
        fallbacks = await asyncio.wait_for(slow_task, timeout=30)
        assert fast_seen == list(range(total))
        assert seen == list(range(total))
        assert fallbacks >= 1

    async def test_subscription_ends_when_conversation_is_deleted(
        self, storage: Storage, conversation: str
    ) -> None:
        await storage.append(conversation, say("hello"))
        received: list[int] = []
        first = asyncio.Event()

        async def consume() -> None:
            async with storage.subscribe(conversation) as events:
                async for event in events:
                    received.append(event.id)
                    first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), timeout=5)
        await storage.delete_conversation(conversation)
        await asyncio.wait_for(task, timeout=5)
        assert received == [0]

    async def test_subscription_ends_when_store_closes(self, opener: Opener) -> None:
        store = await opener()
        conversation_id = (await store.create_conversation(NewConversation())).id
        events = store.subscribe(conversation_id)

        async def consume() -> list[int]:
            return [event.id async for event in events]

        task = asyncio.create_task(consume())
        await store.append(conversation_id, say("one"))
        await asyncio.sleep(0.05)
        await store.close()
        assert await asyncio.wait_for(task, timeout=5) == [0]

    async def test_random_walks_agree_with_a_full_read(
        self, storage: Storage, conversation: str
    ) -> None:
        await storage.append_many(conversation, [numbered(i) for i in range(120)])
        everything = {event.id: event.data for event in await walk(storage, conversation)}
        generator = random.Random(7)
        for _ in range(25):
            start = generator.randrange(0, 130)
            end = generator.choice([None, generator.randrange(0, 130)])
            limit = generator.randrange(1, 101)
            reverse = generator.random() < 0.5
            events = await walk(
                storage, conversation, start_id=start, end_id=end, limit=limit, reverse=reverse
            )
            top = 119 if end is None else min(end, 119)
            expected = list(range(start, top + 1))
            assert [e.id for e in events] == (expected[::-1] if reverse else expected)
            assert all(everything[e.id] == e.data for e in events)

    # -- properties ------------------------------------------------------------------

    @pytest.mark.slow
    @settings(
        max_examples=60,
        deadline=None,
        # Every backend's subclass runs this same method: by design, not a flaky executor.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.differing_executors,
        ],
    )
    @given(schedule=properties.schedules)
    def test_no_interleaving_loses_skips_or_repeats(
        self, opener: Opener, schedule: list[list[tuple[Any, ...]]]
    ) -> None:
        async def scenario() -> None:
            store = await opener()
            try:
                await properties.run_schedule(store, schedule)
            finally:
                await store.close()

        asyncio.run(scenario())

    # -- durability ------------------------------------------------------------------

    @pytest.mark.slow
    async def test_acknowledged_appends_survive_kill_9(self, storage_url: str) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.storage.crash_writer", storage_url, "4", "5",
            cwd=REPOSITORY, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stdout is not None
        assert (await asyncio.wait_for(process.stdout.readline(), 30)).strip() == b"ready"
        acknowledged: list[tuple[str, int, str]] = []
        while len(acknowledged) < 3000:
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            conversation_id, event_id, marker = line.decode().split()
            acknowledged.append((conversation_id, int(event_id), marker))
        os.kill(process.pid, signal.SIGKILL)  # mid-load: appends are in flight
        for line in (await process.stdout.read()).decode().splitlines():
            conversation_id, event_id, marker = line.split()  # acked before the kill
            acknowledged.append((conversation_id, int(event_id), marker))
        await process.wait()

        store = await open_storage(storage_url)
        try:
            for index in range(4):
                conversation_id = f"crash-{index}"
                events = await walk(store, conversation_id)
                assert [event.id for event in events] == list(range(len(events)))
                markers = [event.to_dict()["args"]["content"] for event in events]
                assert len(set(markers)) == len(markers)
                for acked_conversation, event_id, marker in acknowledged:
                    if acked_conversation == conversation_id:
                        assert markers[event_id] == marker
                after = await store.append(conversation_id, say("after the crash"))
                assert after.id == len(events)
        finally:
            await store.close()
