"""A crowd of clients costs the store one read, not one each: opening streams on one
conversation (one read a second; a deleted conversation is not found the moment this
process deletes it) and asking whether keys are required (through a real SQLite store,
its reads counted)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from server.auth import ANONYMOUS, Authenticator, User
from server.errors import NotFound
from server.streaming.lookups import LOOKUP_SECONDS, ConversationLookups
from storage import ConversationRecord, NewConversation
from storage.sqlite import SqliteStorage


class CountedStore(SqliteStorage):
    reads = 0

    async def get_conversation(self, conversation_id: str) -> ConversationRecord:
        self.reads += 1
        return await super().get_conversation(conversation_id)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_crowd_shares_one_read_until_it_is_a_second_old(tmp_path: Path) -> None:
    async with await CountedStore.open(tmp_path) as store:
        record = await store.create_conversation(NewConversation(title="storm"))
        clock = Clock()
        lookups = ConversationLookups(store, clock=clock)
        found = await asyncio.gather(*(lookups.visible(ANONYMOUS, record.id) for _ in range(200)))
        assert {r.created_at for r in found} == {record.created_at}
        assert store.reads == 1
        clock.now += LOOKUP_SECONDS / 2
        await lookups.visible(ANONYMOUS, record.id)
        assert store.reads == 1
        clock.now += LOOKUP_SECONDS
        await lookups.visible(ANONYMOUS, record.id)
        assert store.reads == 2


async def test_deleted_missing_and_others_conversations_are_not_found(tmp_path: Path) -> None:
    async with await CountedStore.open(tmp_path) as store:
        lookups = ConversationLookups(store, clock=Clock())
        alice, bob = User("alice", 1), User("bob", 2)
        record = await store.create_conversation(NewConversation(id="alice/x", owner="alice"))
        assert (await lookups.visible(alice, "x")).id == "alice/x"
        with pytest.raises(NotFound):
            await lookups.visible(bob, "x")  # bob's "x" is another id: missing
        await store.delete_conversation(record.id)
        lookups.forget(record.id)  # as `StreamSessions.end_conversation` does
        with pytest.raises(NotFound):
            await lookups.visible(alice, "x")
        reads = store.reads
        with pytest.raises(NotFound):
            await lookups.visible(alice, "x")
        assert store.reads == reads + 1  # a missing conversation is never remembered
        again = await store.create_conversation(NewConversation(id="alice/x", owner="alice"))
        assert (await lookups.visible(alice, "x")).created_at == again.created_at


class CountedKeys(SqliteStorage):
    counts = 0

    async def count_api_keys(self, *, include_revoked: bool = False) -> int:
        self.counts += 1
        return await super().count_api_keys(include_revoked=include_revoked)


async def test_a_crowd_asking_whether_keys_are_required_shares_one_read(tmp_path: Path) -> None:
    # Each stale caller used to read for itself: under a storm the reads queued behind
    # one another on the reader connections, so the answer stayed stale and every new
    # request (REST, stream opens, /api/health) added another read, for seconds.
    async with await CountedKeys.open(tmp_path) as store:
        authenticator = Authenticator(store)
        answers = await asyncio.gather(*(authenticator.keys_required() for _ in range(100)))
        assert answers == [False] * 100
        assert store.counts == 1
