"""The conformance suite against PostgreSQL (a real server: `scripts/services` starts
one; `THREADLINE_TEST_POSTGRES` names another). Each test gets a schema of its own."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from storage import NewConversation, Subscription
from storage.postgres import PostgresStorage
from storage.postgres.schema import MIGRATIONS
from tests.storage.conformance import StorageConformance
from tests.storage.factories import say

POSTGRES = os.environ.get(
    "THREADLINE_TEST_POSTGRES", "postgresql://postgres:postgres@127.0.0.1:5432/threadline_test"
)


async def _drop(schema: str) -> None:
    connection = await asyncpg.connect(POSTGRES)
    try:
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await connection.close()


class TestPostgresStorage(StorageConformance):
    @pytest.fixture
    def storage_url(self) -> Iterator[str]:
        schema = "t_" + uuid.uuid4().hex[:16]
        yield f"{POSTGRES}?schema={schema}"
        asyncio.run(_drop(schema))


@pytest.fixture
def shared_url() -> Iterator[str]:
    schema = "t_" + uuid.uuid4().hex[:16]
    yield f"{POSTGRES}?schema={schema}"
    asyncio.run(_drop(schema))


async def test_subscribers_of_one_process_see_another_process_s_appends(shared_url: str) -> None:
    """Two stores on one database stand for two server processes: a subscriber of each
    gets every event of both writers, in order, once."""
    first = await PostgresStorage.open(shared_url)
    second = await PostgresStorage.open(shared_url)
    try:
        await first.create_conversation(NewConversation(id="shared"))
        await first.append("shared", say("before anyone watched"))
        watchers = [first.subscribe("shared", -1), second.subscribe("shared", -1)]

        async def collect(subscription: Subscription) -> list[int]:
            seen = []
            async for event in subscription:
                seen.append(event.id)
                if event.id == 40:
                    return seen
            return seen

        readers = [asyncio.create_task(collect(watcher)) for watcher in watchers]
        for index in range(20):
            await first.append("shared", say(f"first {index}"))
            await second.append("shared", say(f"second {index}"))
        results = await asyncio.wait_for(asyncio.gather(*readers), 10)
        assert results == [list(range(41)), list(range(41))]
    finally:
        await first.close()
        await second.close()


async def test_a_lost_notification_connection_comes_back_and_misses_nothing(
    shared_url: str,
) -> None:
    """The listening connection of a process is cut (as by a database restart) while
    another process appends: its subscriber still gets every event, in order, once."""
    writer = await PostgresStorage.open(shared_url)
    watcher = await PostgresStorage.open(shared_url)
    try:
        await writer.create_conversation(NewConversation(id="cut"))
        await writer.append("cut", say("before the cut"))
        subscription = watcher.subscribe("cut", -1)

        async def collect() -> list[int]:
            seen = []
            async for event in subscription:
                seen.append(event.id)
                if event.id == 10:
                    return seen
            return seen

        reader = asyncio.create_task(collect())
        admin = await asyncpg.connect(POSTGRES)
        try:
            cut = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE query LIKE 'LISTEN %' AND query LIKE '%' || $1 || '%'",
                shared_url.rsplit("schema=", 1)[1],
            )
        finally:
            await admin.close()
        assert cut == 2  # both processes' listeners
        for index in range(10):  # while (and after) the watcher is deaf
            await writer.append("cut", say(f"after the cut {index}"))
        assert await asyncio.wait_for(reader, 15) == list(range(11))
    finally:
        await writer.close()
        await watcher.close()


async def test_one_id_is_never_taken_twice_by_two_writers(shared_url: str) -> None:
    """Two processes appending to one conversation at once: the sequence stays gapless
    and unforked (a taken id is a conflict the loser retries)."""
    first = await PostgresStorage.open(shared_url)
    second = await PostgresStorage.open(shared_url)
    try:
        await first.create_conversation(NewConversation(id="contended"))
        appends = [
            store.append("contended", say(f"{name} {index}"))
            for index in range(50)
            for name, store in (("a", first), ("b", second))
        ]
        stored = await asyncio.gather(*appends)
        assert sorted(event.id for event in stored) == list(range(100))
        page = await first.search_events("contended", limit=100)
        assert [event.id for event in page.events] == list(range(100))
        texts = {event.to_dict()["args"]["content"] for event in page.events}
        assert len(texts) == 100
    finally:
        await first.close()
        await second.close()


async def test_a_version_3_log_keeps_its_search_documents_and_indexes_the_rest(
    shared_url: str,
) -> None:
    """Schema 4 moved documents out of ``events``: a log written by schema 3, one event
    indexed and one not yet, migrates with both searchable, the second by the indexer."""
    schema = shared_url.rsplit("=", 1)[1]
    connection = await asyncpg.connect(POSTGRES)
    try:
        await connection.execute(f"CREATE SCHEMA {schema}; SET search_path TO {schema}")
        await connection.execute("CREATE TABLE threadline_schema (version INTEGER NOT NULL)")
        for number, script in enumerate(MIGRATIONS[:3], start=1):
            await connection.execute(script)
            await connection.execute("INSERT INTO threadline_schema VALUES ($1)", number)
        key = await connection.fetchval(
            "INSERT INTO conversations (id, status, created_us, updated_us, settings) "
            "VALUES ('old', 'idle', 0, 0, '\\x7b7d') RETURNING key"
        )
        for event_id, word, indexed in ((0, "walrus", True), (1, "narwhal", False)):
            await connection.execute(
                "INSERT INTO events (conv, id, seq, kind, source, ts_us, hidden, text, data, doc) "
                "VALUES ($1, $2, nextval('events_seq'), 'message', 'user', 0, false, $3, $4, "
                "CASE WHEN $5 THEN to_tsvector('simple', $3) END)",
                key, event_id, word, b'{"id":%d}' % event_id, indexed,
            )  # fmt: skip
    finally:
        await connection.close()
    store = await PostgresStorage.open(shared_url)
    try:
        await store.wait_indexed()
        for event_id, word in ((0, "walrus"), (1, "narwhal")):
            results = await store.search_all(word)
            assert [(hit.conversation_id, hit.event.id) for hit in results.hits] == [
                ("old", event_id)
            ]
            assert results.pending == 0
    finally:
        await store.close()


async def test_conversations_deleted_while_the_indexer_works_leave_no_documents(
    shared_url: str,
) -> None:
    """Deleting a conversation deletes its documents, even when the indexer is writing
    them at that moment: it locks the conversation first, so it either waits for the
    delete and skips, or the delete waits for it and then takes what it wrote."""
    store = await PostgresStorage.open(shared_url, index_interval=0.001)
    try:
        for round in range(40):
            conversation = await store.create_conversation(NewConversation(id=f"gone-{round}"))
            await store.append_many(conversation.id, [say(f"word{n}") for n in range(100)])
            await asyncio.sleep(0.002 * (round % 5))
            await store.delete_conversation(conversation.id)
        await store.wait_indexed()
    finally:
        await store.close()
    connection = await asyncpg.connect(POSTGRES)
    try:
        await connection.execute(f"SET search_path TO {shared_url.rsplit('=', 1)[1]}")
        assert await connection.fetchval("SELECT count(*) FROM event_docs") == 0
        assert await connection.fetchval("SELECT count(*) FROM index_queue") == 0
    finally:
        await connection.close()
