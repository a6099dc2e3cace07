"""`PostgresStorage`: the scale-out backend (asyncpg), behind the same protocols as
SQLite and passing the same conformance suite.

Open with ``await PostgresStorage.open("postgresql://user:pass@host/db")``; a
``?schema=name`` in the URL keeps the tables in a schema of their own (created if
needed), so several stores can share one database. Reads go through a connection pool;
writes through this process's single writer (`PostgresWriter`: group commit, gapless
ids even when other processes write too); the full-text index trails the log
(`PostgresIndexer`). Subscribers of any process see every process's appends: each
append transaction announces itself with NOTIFY, and each process's `RemoteFeed` reads
what others appended once and publishes it to its own subscribers (`storage/remote.py`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from events import EventBase, EventFilter
from storage.common import (
    check_range,
    decode_seq,
    encode_cursor,
    prepare_all_off_loop,
    to_record,
    types_only,
)
from storage.errors import (
    ApiKeyNotFound,
    ConversationNotFound,
    StorageClosed,
    StorageError,
    StorageFull,
)
from storage.models import (
    ApiKeyRecord,
    ConversationPage,
    ConversationPatch,
    ConversationRecord,
    EventPage,
    NewConversation,
    SearchHit,
    SearchResults,
    StoredEvent,
)
from storage.postgres import automation, queries, records
from storage.postgres.automation_store import PostgresAutomation
from storage.postgres.cluster import PostgresLedger
from storage.postgres.indexer import PostgresIndexer
from storage.postgres.notify import Announcer, Listener, channel_for
from storage.postgres.schema import migrate
from storage.postgres.writer import PostgresWriter
from storage.protocols import MAX_PAGE
from storage.records import now_micros, prepare
from storage.remote import RemoteFeed
from storage.subscription import (
    DEFAULT_CAPACITY_BYTES,
    LogObserver,
    Subscription,
    SubscriptionHub,
)

T = TypeVar("T")
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def split_url(url: str) -> tuple[str, str | None]:
    """The DSN asyncpg takes, and the ``schema`` query parameter (ours) if any."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schemas = [value for name, value in query if name == "schema"]
    rest = urlencode([(name, value) for name, value in query if name != "schema"])
    schema = schemas[-1] if schemas else None
    if schema is not None and not SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"schema {schema!r} must be a lowercase SQL identifier")
    scheme = "postgresql" if parts.scheme in ("postgres", "postgresql") else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, rest, parts.fragment)), schema


class PostgresStorage(PostgresAutomation):
    def __init__(
        self,
        pool: asyncpg.Pool,
        writer: PostgresWriter,
        indexer: PostgresIndexer,
        hub: SubscriptionHub,
    ) -> None:
        self._pool = pool
        self._writer = writer
        self._indexer = indexer
        self._hub = hub
        self._listener: Listener | None = None
        self._ledger: PostgresLedger | None = None
        self._closed = False

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        readers: int = 8,
        subscriber_buffer: int = 1024,
        subscriber_buffer_bytes: int = DEFAULT_CAPACITY_BYTES,
        index_interval: float = 0.02,
        notify: bool = True,
    ) -> PostgresStorage:
        """``notify=False``: no announcements to other processes (a process that knows it
        is alone on the database)."""
        dsn, schema = split_url(url)
        settings = {"search_path": schema} if schema else {}

        async def connect() -> asyncpg.Connection:
            return await asyncpg.connect(dsn, server_settings=settings)

        setup = await asyncpg.connect(dsn)
        try:
            if schema:
                await setup.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                await setup.execute(f"SET search_path TO {schema}")
            await migrate(setup)
        finally:
            await setup.close()
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=readers, server_settings=settings
        )
        hub = SubscriptionHub(subscriber_buffer, subscriber_buffer_bytes)
        announcer = Announcer(channel_for(schema) if notify else None)
        indexer = PostgresIndexer(connect, interval=index_interval)
        writer = PostgresWriter(connect, hub, announcer, on_commit=indexer.appended)
        store = cls(pool, writer, indexer, hub)
        store._ledger = PostgresLedger(connect, store._read, schema)
        listener = Listener(
            connect, announcer, RemoteFeed(hub, store._page_after), store.latest_event_id
        )
        try:
            await writer.start()
            await indexer.start()
            if notify:
                await listener.start()
        except BaseException:
            await writer.close()
            await pool.close()
            raise
        store._listener = listener if notify else None
        return store

    # -- the event log ---------------------------------------------------------------

    async def append(
        self, conversation_id: str, event: EventBase, *, patch: ConversationPatch | None = None
    ) -> StoredEvent:
        (stored,) = await self._writer.append(conversation_id, [prepare(event)], patch)
        return stored

    async def append_many(
        self, conversation_id: str, events: Sequence[EventBase]
    ) -> list[StoredEvent]:
        if not events:
            return []
        return await self._writer.append(conversation_id, [prepare(event) for event in events])

    async def search_events(
        self,
        conversation_id: str,
        *,
        start_id: int = 0,
        end_id: int | None = None,
        reverse: bool = False,
        filter: EventFilter | None = None,
        limit: int = MAX_PAGE,
    ) -> EventPage:
        check_range(start_id, end_id, limit)
        sql, params = queries.page_query(
            conversation_id, start_id, end_id, reverse, filter, limit + 1
        )
        rows = await self._fetch(sql, *params)
        if not rows:
            await self._require(conversation_id)
            return EventPage([], None)
        events = [StoredEvent(conversation_id, row[0], bytes(row[1])) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = events[-1].id - 1 if reverse else events[-1].id + 1
        return EventPage(events, next_cursor)

    async def count_events(
        self,
        conversation_id: str,
        *,
        start_id: int = 0,
        end_id: int | None = None,
        filter: EventFilter | None = None,
    ) -> int:
        check_range(start_id, end_id, 1)
        if filter is None or filter.is_empty():
            # Ids are gapless, so an unfiltered count is arithmetic on the newest id.
            latest = await self.latest_event_id(conversation_id)
            last = latest if end_id is None else min(end_id, latest)
            return max(0, last - start_id + 1)
        if start_id == 0 and end_id is None and types_only(filter):
            return await self._count_kinds(conversation_id, filter)
        await self._require(conversation_id)
        sql, params = queries.count_query(conversation_id, start_id, end_id, filter)
        return int(await self._fetchval(sql, *params))

    async def latest_event_id(self, conversation_id: str) -> int:
        row = await self._fetchrow(
            "SELECT c.key, (SELECT max(id) FROM events WHERE conv = c.key) "
            "FROM conversations AS c WHERE c.id = $1",
            conversation_id,
        )
        if row is None:
            raise ConversationNotFound(conversation_id)
        return -1 if row[1] is None else int(row[1])

    async def search_all(
        self,
        query: str,
        *,
        conversation_ids: Sequence[str] | None = None,
        owner: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> SearchResults:
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
        match = queries.tsquery(query)
        before = decode_seq(cursor) if cursor is not None else None
        pending = await self._indexer.pending()
        if conversation_ids is not None and not conversation_ids:
            return SearchResults([], None, pending)
        sql, params = queries.search_all_query(match, conversation_ids, owner, before, limit + 1)
        rows = await self._fetch(sql, *params)
        hits = [
            SearchHit(conversation_id, StoredEvent(conversation_id, event_id, bytes(data)), title)
            for _, conversation_id, event_id, data, title in rows[:limit]
        ]
        next_cursor = str(rows[limit - 1][0]) if len(rows) > limit else None
        return SearchResults(hits, next_cursor, pending)

    # -- operations ------------------------------------------------------------------

    def observe(self, observer: LogObserver) -> None:
        """Tell ``observer`` of every append and every live delivery (metrics)."""
        self._hub.observer = observer

    def subscriber_lags(self) -> list[int]:
        """Per subscriber of this process: how many durable events it has yet to take."""
        return self._hub.lags()

    def index_lag(self) -> int:
        """Events not searchable yet, cluster-wide as of the indexer's last pass."""
        return self._indexer.lag

    async def check_writable(self) -> None:
        """A write transaction through the writer, in turn with the appends. Raises
        `StorageFull` while the last write failed for lack of space, `StorageClosed` once
        closed, `StorageError` when the database cannot be written."""
        if self._closed:
            raise StorageClosed()
        if self._writer.disk_full:
            raise StorageFull("the last write failed: the disk is full")

        async def probe(connection: asyncpg.Connection) -> None:
            await connection.execute("UPDATE conversations SET key = key WHERE false")

        await self._writer.call(probe)

    def cluster(self) -> PostgresLedger | None:
        return self._ledger

    async def total_cost_micros(self) -> int:
        """What every stored conversation cost, in micro-units of the currency."""
        return int(await self._fetchval("SELECT coalesce(sum(cost_micros), 0) FROM conversations"))

    async def wait_indexed(self) -> None:
        newest = await self._fetchval("SELECT coalesce(max(seq), 0) FROM events")
        await self._indexer.wait_for(int(newest))

    def subscribe(self, conversation_id: str, after_id: int = -1) -> Subscription:
        if self._closed:
            raise StorageClosed()

        async def read_after(
            after: int, limit: int, max_bytes: int
        ) -> tuple[list[StoredEvent], bool]:
            rows = await self._fetch(queries.CATCH_UP, conversation_id, after, limit + 1, max_bytes)
            events = [StoredEvent(conversation_id, row[0], bytes(row[1])) for row in rows[:limit]]
            return events, bool(rows) and rows[-1][2] > len(events)

        return self._hub.subscribe(conversation_id, after_id, read_after)

    # -- conversations ---------------------------------------------------------------

    async def create_conversation(self, new: NewConversation) -> ConversationRecord:
        insert = records.insert_conversation(new, now_micros())
        record, _ = await self._writer.create_with_events(new.id, insert, [])
        return record

    async def create_conversation_with_events(
        self, new: NewConversation, events: Iterable[EventBase]
    ) -> tuple[ConversationRecord, list[StoredEvent]]:
        prepared = await prepare_all_off_loop(events)
        insert = records.insert_conversation(new, now_micros())
        return await self._writer.create_with_events(new.id, insert, prepared)

    async def get_conversation(self, conversation_id: str) -> ConversationRecord:
        row = await self._fetchrow(records.SELECT_ONE, conversation_id)
        if row is None:
            raise ConversationNotFound(conversation_id)
        return to_record(row)

    async def list_conversations(
        self, *, owner: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> ConversationPage:
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
        sql, params = records.list_query(owner, cursor, limit + 1)
        rows = await self._fetch(sql, *params)
        page = [to_record(tuple(row)[:-1]) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last["created_us"], last["key"])
        return ConversationPage(page, next_cursor)

    async def update_conversation(
        self, conversation_id: str, patch: ConversationPatch
    ) -> ConversationRecord:
        sql, params = records.patch_statement(patch, now_micros(), first=2)

        async def work(connection: asyncpg.Connection) -> ConversationRecord:
            row = await connection.fetchrow(
                f"{sql} WHERE id = $1 RETURNING {records.COLUMNS}", conversation_id, *params
            )
            if row is None:
                raise ConversationNotFound(conversation_id)
            return to_record(row)

        return await self._writer.call(work)

    async def delete_conversation(self, conversation_id: str) -> None:
        async def work(connection: asyncpg.Connection) -> None:
            deleted = await connection.fetchval(
                "DELETE FROM conversations WHERE id = $1 RETURNING key", conversation_id
            )
            if deleted is None:
                raise ConversationNotFound(conversation_id)
            await connection.execute("DELETE FROM event_docs WHERE conv = $1", deleted)
            # What belongs to the conversation goes with it (see storage.automation).
            for table, column in automation.BELONGING:
                await connection.execute(
                    f"DELETE FROM {table} WHERE {column} = $1", conversation_id
                )

        def after_commit() -> None:
            self._writer.forget(conversation_id)
            self._hub.end_conversation(conversation_id)

        await self._writer.call(work, after_commit)

    # -- API keys --------------------------------------------------------------------

    async def add_api_key(self, user: str, digest: bytes, label: str = "") -> ApiKeyRecord:
        now = now_micros()

        async def work(connection: asyncpg.Connection) -> ApiKeyRecord:
            row = await connection.fetchrow(
                'INSERT INTO api_keys ("user", digest, label, created_us) VALUES ($1, $2, $3, $4) '
                f"RETURNING {records.KEY_COLUMNS}",
                user, digest, label, now,
            )  # fmt: skip
            return records.key_record(row)

        return await self._writer.call(work)

    async def find_api_key(self, digest: bytes) -> ApiKeyRecord | None:
        row = await self._fetchrow(
            f"SELECT {records.KEY_COLUMNS} FROM api_keys WHERE digest = $1 AND revoked_us IS NULL",
            digest,
        )
        return records.key_record(row) if row is not None else None

    async def list_api_keys(self, user: str | None = None) -> list[ApiKeyRecord]:
        where, params = ('WHERE "user" = $1', [user]) if user is not None else ("", [])
        rows = await self._fetch(
            f"SELECT {records.KEY_COLUMNS} FROM api_keys {where} ORDER BY id", *params
        )
        return [records.key_record(row) for row in rows]

    async def revoke_api_key(self, key_id: int) -> None:
        now = now_micros()

        async def work(connection: asyncpg.Connection) -> None:
            status = await connection.execute(
                "UPDATE api_keys SET revoked_us = coalesce(revoked_us, $1) WHERE id = $2",
                now, key_id,
            )  # fmt: skip
            if status.endswith(" 0"):
                raise ApiKeyNotFound(key_id)

        await self._writer.call(work)

    async def count_api_keys(self, *, include_revoked: bool = False) -> int:
        where = "" if include_revoked else " WHERE revoked_us IS NULL"
        return int(await self._fetchval(f"SELECT count(*) FROM api_keys{where}"))

    # -- lifecycle -------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._ledger is not None:
            await self._ledger.close()
        if self._listener is not None:
            await self._listener.close()
        await self._writer.close()
        await self._indexer.close()
        self._hub.close()
        await self._pool.close()

    # -- internals -------------------------------------------------------------------

    async def _count_kinds(self, conversation_id: str, filter: EventFilter) -> int:
        rows = await self._fetch(
            "SELECT c.key, k.kind, k.n FROM conversations AS c "
            "LEFT JOIN event_counts AS k ON k.conv = c.key WHERE c.id = $1",
            conversation_id,
        )
        if not rows:
            raise ConversationNotFound(conversation_id)
        counts = {row[1]: row[2] for row in rows if row[1] is not None}
        included = filter.included_kinds or counts.keys()
        return sum(counts.get(kind, 0) for kind in included if kind not in filter.excluded_kinds)

    async def _page_after(self, conversation_id: str, after: int, limit: int) -> list[StoredEvent]:
        page = await self.search_events(conversation_id, start_id=after + 1, limit=limit)
        return page.events

    async def _require(self, conversation_id: str) -> None:
        if await self._fetchval("SELECT 1 FROM conversations WHERE id = $1", conversation_id):
            return
        raise ConversationNotFound(conversation_id)

    async def _fetch(self, sql: str, *params: Any) -> list[Any]:
        return await self._read(lambda connection: connection.fetch(sql, *params))

    async def _fetchrow(self, sql: str, *params: Any) -> Any:
        return await self._read(lambda connection: connection.fetchrow(sql, *params))

    async def _fetchval(self, sql: str, *params: Any) -> Any:
        return await self._read(lambda connection: connection.fetchval(sql, *params))

    async def _read(self, query: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        if self._closed:
            raise StorageClosed()
        try:
            async with self._pool.acquire() as connection:
                return await query(connection)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            if self._closed:
                raise StorageClosed() from exc
            raise StorageError(f"read failed: {exc}") from exc
