"""`SqliteStorage`: the embedded backend (conversations, the event log, full-text search).

Two files in one directory: ``events.db`` (WAL; written only by the `LogWriter` task,
read by a small pool of connections) and ``search.db`` (the trailing full-text index, see
`SearchIndexer`). ``synchronous=NORMAL`` by default: an acknowledged append survives the
process being killed; pass ``synchronous="FULL"`` to survive power loss as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import IO, Any, Literal

import aiosqlite

from events import EventBase, EventFilter
from storage.common import (
    check_range,
    decode_seq,
    encode_cursor,
    prepare_all_off_loop,
    types_only,
)
from storage.errors import (
    ConversationNotFound,
    StorageClosed,
    StorageError,
    StorageFull,
    StorageInUse,
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
from storage.protocols import MAX_PAGE
from storage.records import now_micros, prepare
from storage.sqlite import api_keys, conversations, queries
from storage.sqlite.automation_store import AutomationStore
from storage.sqlite.checkpointer import INTERVAL as CHECKPOINT_INTERVAL
from storage.sqlite.checkpointer import RESTART_BYTES as WAL_RESTART_BYTES
from storage.sqlite.checkpointer import Checkpointer, checkpoint_in_writer
from storage.sqlite.indexer import SearchIndexer
from storage.sqlite.reaper import CHUNK as DELETE_CHUNK
from storage.sqlite.reaper import Reaper
from storage.sqlite.schema import LOG_MIGRATIONS, migrate_log, prepare_search
from storage.sqlite.writer import LogWriter
from storage.subscription import (
    DEFAULT_CAPACITY_BYTES,
    LogObserver,
    Subscription,
    SubscriptionHub,
)

LOG_FILE = "events.db"
SUBSTRING_INDEX_MAX_LAG = 50_000
"""Events not yet indexed, beyond which a text filter scans the conversation instead."""
SEARCH_FILE = "search.db"
Synchronous = Literal["OFF", "NORMAL", "FULL"]


class SqliteStorage(AutomationStore):
    """Open with ``await SqliteStorage.open(directory)``; close with ``await close()``."""

    def __init__(
        self,
        directory: Path,
        writer: LogWriter,
        readers: list[aiosqlite.Connection],
        indexer: SearchIndexer,
        indexer_connection: aiosqlite.Connection,
        writer_connection: aiosqlite.Connection,
        hub: SubscriptionHub,
    ) -> None:
        self.directory = directory
        self._writer = writer
        self._indexer = indexer
        self._hub = hub
        self._all_connections = [writer_connection, indexer_connection, *readers]
        self._idle_readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        for reader in readers:
            self._idle_readers.put_nowait(reader)
        self._closed = False
        self._lock: IO[bytes] | None = None
        self._owner = True
        self._checkpointer: Checkpointer | None = None
        self._reaper: Reaper | None = None

    @classmethod
    async def open(
        cls,
        directory: str | Path,
        *,
        readers: int = 4,
        synchronous: Synchronous = "NORMAL",
        subscriber_buffer: int = 1024,
        subscriber_buffer_bytes: int = DEFAULT_CAPACITY_BYTES,
        index_interval: float = 1.0,
        owner: bool = True,
        delete_chunk: int = DELETE_CHUNK,
        checkpoint_interval: float = CHECKPOINT_INTERVAL,
        wal_restart_bytes: int = WAL_RESTART_BYTES,
    ) -> SqliteStorage:
        """``owner=False`` opens a handle for administration beside a running server
        (API keys, inspection): it holds no directory lock, runs no search indexer, and
        leaves the files' upkeep (migrations, the search index) to the owner — doing it
        only when no owner holds the directory."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        log_path, search_path = directory / LOG_FILE, directory / SEARCH_FILE
        if owner:
            lock = await asyncio.to_thread(_lock_directory, directory)
            upkeep: IO[bytes] | None = lock
        else:
            lock = None
            upkeep = await asyncio.to_thread(_try_lock_directory, directory)
        try:
            if upkeep is not None:
                await asyncio.to_thread(_prepare_files, log_path, search_path)
            else:
                await asyncio.to_thread(_check_log_version, log_path)
        except BaseException:
            if lock is not None:
                lock.close()
            raise
        finally:
            if upkeep is not None and upkeep is not lock:
                upkeep.close()

        opened: list[aiosqlite.Connection] = []
        try:
            # "IMMEDIATE": the first write of a transaction opens it, taking the write
            # lock at once (a batch of appends is one hop to the connection's thread:
            # `LogWriter._commit`).
            writer_connection = await _connect(
                log_path, synchronous, opened, isolation_level="IMMEDIATE"
            )
            # The writer checks a conversation exists before its events join a batch, so
            # SQLite's per-row foreign-key probe would only repeat that work.
            # Checkpoints run on their own connection (see `_checkpoints`), never inside
            # an append's commit.
            await writer_connection.execute("PRAGMA wal_autocheckpoint = 0")
            reader_connections = []
            for _ in range(readers):
                reader = await _connect(log_path, synchronous, opened)
                await reader.execute("PRAGMA query_only = ON")
                await reader.execute("ATTACH DATABASE ? AS search", (str(search_path),))
                reader_connections.append(reader)
            checkpoint_connection = await _connect(log_path, synchronous, opened)
            indexer_connection = await _connect(search_path, "NORMAL", opened)
            await indexer_connection.execute("ATTACH DATABASE ? AS log", (str(log_path),))
        except BaseException:
            for connection in opened:
                await connection.close()
            if lock is not None:
                lock.close()
            raise

        hub = SubscriptionHub(subscriber_buffer, subscriber_buffer_bytes)

        def committed(appended: int) -> None:  # called once all below exist
            checkpointer.committed(appended)
            indexer.wake()

        writer = LogWriter(writer_connection, hub, on_commit=committed)
        indexer = SearchIndexer(indexer_connection, writer, interval=index_interval)
        checkpointer = Checkpointer(
            checkpoint_connection,
            restart=lambda: writer.call(checkpoint_in_writer),
            readers=indexer.reading,
            interval=checkpoint_interval,
            restart_bytes=wal_restart_bytes,
        )
        reaper = Reaper(writer, indexer.purges_queued, chunk=delete_chunk)
        await writer.start()
        await checkpointer.start()
        if owner:
            await indexer.start()
            reaper.start()
        store = cls(
            directory, writer, reader_connections, indexer, indexer_connection,
            writer_connection, hub,
        )  # fmt: skip
        store._lock = lock
        store._owner = owner
        store._checkpointer = checkpointer
        store._reaper = reaper
        store._all_connections.append(checkpoint_connection)
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
        if filter is None and not reverse and end_id is None and self._owner:
            # The newest events of a recently written conversation are in memory (this
            # process is the log's only writer, and they are there once settled, as
            # their appends are answered): a run reading its history, a client paging
            # to the end, read no database.
            recent = self._hub.recent.after(conversation_id, start_id - 1, limit, sys.maxsize)
            if recent is not None:
                events, more = recent
                return EventPage(events, events[-1].id + 1 if more else None)
        if self._from_substring_index(filter):
            assert filter is not None
            sql, params = queries.substring_page_query(
                conversation_id, start_id, end_id, reverse, filter, limit + 1,
                self._indexer.indexed_through,
            )  # fmt: skip
        else:
            sql, params = queries.page_query(
                conversation_id, start_id, end_id, reverse, filter, limit + 1
            )
        rows = await self._read(sql, params)
        if not rows:
            await self._require(conversation_id)
            return EventPage([], None)
        more = len(rows) > limit
        events = [StoredEvent(conversation_id, event_id, data) for event_id, data in rows[:limit]]
        next_cursor = None
        if more:
            next_cursor = events[-1].id - 1 if reverse else events[-1].id + 1
        return EventPage(events, next_cursor)

    def _from_substring_index(self, filter: EventFilter | None) -> bool:
        """A text filter is answered from the trigram index when it has a trigram and
        the index is nearly current (a rebuilding index would leave a long tail to scan)."""
        return (
            filter is not None
            and len(filter.folded_query or "") >= 3
            and self._owner
            and self.index_lag() <= SUBSTRING_INDEX_MAX_LAG
        )

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
            # Kept per kind by the writer: no walk of a long conversation's index.
            counts = await self._writer.kind_counts(conversation_id)
            included = filter.included_kinds or counts.keys()
            return sum(counts[kind] for kind in included if kind not in filter.excluded_kinds)
        await self._require(conversation_id)
        sql, params = queries.count_query(conversation_id, start_id, end_id, filter)
        rows = await self._read(sql, params)
        return int(rows[0][0])

    async def latest_event_id(self, conversation_id: str) -> int:
        rows = await self._read(
            "SELECT c.key, (SELECT max(id) FROM events WHERE conv = c.key) "
            "FROM conversations AS c WHERE c.id = ?",
            [conversation_id],
        )
        if not rows:
            raise ConversationNotFound(conversation_id)
        latest = rows[0][1]
        return -1 if latest is None else int(latest)

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
        match = queries.fts_match_expression(query)
        before = decode_seq(cursor) if cursor is not None else None
        pending = max(0, self._writer.last_seq - self._indexer.indexed_through)
        if conversation_ids is not None and not conversation_ids:
            return SearchResults([], None, pending)
        if conversation_ids is not None and len(conversation_ids) <= queries.NARROW_MAX:
            # A few conversations: the index intersects their entries with the words'
            # (instead of walking every hit of the words, newest first).
            keys = [
                key
                for (key,) in await self._read(*queries.conversation_keys_query(conversation_ids))
            ]
            if not keys:
                return SearchResults([], None, pending)
            match = queries.fts_match_expression(query, keys)
        sql, params = queries.search_all_query(match, conversation_ids, owner, before, limit + 1)
        rows = await self._read(sql, params)
        hits = [
            SearchHit(conversation_id, StoredEvent(conversation_id, event_id, data), title)
            for _, conversation_id, event_id, data, title in rows[:limit]
        ]
        next_cursor = str(rows[limit - 1][0]) if len(rows) > limit else None
        return SearchResults(hits, next_cursor, pending)

    # -- operations ------------------------------------------------------------------

    def observe(self, observer: LogObserver) -> None:
        """Tell ``observer`` of every append and every live delivery (metrics)."""
        self._hub.observer = observer

    def subscriber_lags(self) -> list[int]:
        """Per subscriber: how many durable events it has yet to take."""
        return self._hub.lags()

    def index_lag(self) -> int:
        """Events appended and not yet in the full-text index."""
        return max(0, self._writer.last_seq - self._indexer.indexed_through)

    async def check_writable(self) -> None:
        """A write transaction through the writer, in turn with the appends. Raises
        `StorageFull` while the last write failed for lack of space, `StorageClosed` once
        closed, `StorageError` when the file cannot be written."""
        if self._writer.disk_full:
            raise StorageFull("the last write failed: the disk is full")

        async def probe(connection: aiosqlite.Connection) -> None:
            await connection.execute("UPDATE conversations SET key = key WHERE 0")

        await self._writer.call(probe)

    def cluster(self) -> None:
        """One process owns a SQLite file: no cluster."""
        return

    async def total_cost_micros(self) -> int:
        """What every stored conversation cost, in micro-units of the currency."""
        rows = await self._read("SELECT coalesce(sum(cost_micros), 0) FROM conversations", [])
        return int(rows[0][0])

    async def wait_indexed(self) -> None:
        if not self._owner:
            raise StorageError("only the owner of the data directory runs the search index")
        if self._reaper is not None:
            await self._reaper.wait_idle()  # deleted conversations' events queue purges
        rows = await self._read("SELECT coalesce(max(id), 0) FROM search_purges", [])
        await self._indexer.wait_for(self._writer.last_seq, purged_through=int(rows[0][0]))

    def subscribe(self, conversation_id: str, after_id: int = -1) -> Subscription:
        if self._closed:
            raise StorageClosed()

        async def read_after(
            after: int, limit: int, max_bytes: int
        ) -> tuple[list[StoredEvent], bool]:
            sql, params = queries.catch_up_query(conversation_id, after, limit + 1, max_bytes)
            rows = await self._read(sql, params)
            events = [
                StoredEvent(conversation_id, event_id, data) for event_id, data, _ in rows[:limit]
            ]
            return events, bool(rows) and rows[-1][2] > len(events)

        return self._hub.subscribe(conversation_id, after_id, read_after)

    # -- conversations ---------------------------------------------------------------

    async def create_conversation(self, new: NewConversation) -> ConversationRecord:
        record, _ = await self._writer.create_with_events(
            new.id, conversations.insert(new, now_micros()), []
        )
        return record

    async def create_conversation_with_events(
        self, new: NewConversation, events: Iterable[EventBase]
    ) -> tuple[ConversationRecord, list[StoredEvent]]:
        prepared = await prepare_all_off_loop(events)
        insert = conversations.insert(new, now_micros())
        record, stored = await self._writer.create_with_events(new.id, insert, prepared)
        return record, stored

    async def get_conversation(self, conversation_id: str) -> ConversationRecord:
        rows = await self._read(conversations.SELECT_ONE, [conversation_id])
        if not rows:
            raise ConversationNotFound(conversation_id)
        return conversations.to_record(rows[0])

    async def list_conversations(
        self, *, owner: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> ConversationPage:
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
        sql, params = conversations.list_query(owner, cursor, limit + 1)
        rows = await self._read(sql, params)
        records = [conversations.to_record(row[:-1]) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last[5], last[-1])
        return ConversationPage(records, next_cursor)

    async def update_conversation(
        self, conversation_id: str, patch: ConversationPatch
    ) -> ConversationRecord:
        return await self._writer.call(conversations.update(conversation_id, patch, now_micros()))

    async def delete_conversation(self, conversation_id: str) -> None:
        def after_commit() -> None:
            self._writer.forget(conversation_id)
            self._hub.end_conversation(conversation_id)
            if self._reaper is not None and self._owner:
                self._reaper.wake()

        await self._writer.call(conversations.delete(conversation_id), after_commit)

    # -- API keys --------------------------------------------------------------------

    async def add_api_key(self, user: str, digest: bytes, label: str = "") -> ApiKeyRecord:
        return await self._writer.call(api_keys.insert(user, digest, label, now_micros()))

    async def find_api_key(self, digest: bytes) -> ApiKeyRecord | None:
        rows = await self._read(
            f"SELECT {api_keys.COLUMNS} FROM api_keys WHERE digest = ? AND revoked_us IS NULL",
            [digest],
        )
        return api_keys.to_record(rows[0]) if rows else None

    async def list_api_keys(self, user: str | None = None) -> list[ApiKeyRecord]:
        where, params = ("WHERE user = ?", [user]) if user is not None else ("", [])
        rows = await self._read(
            f"SELECT {api_keys.COLUMNS} FROM api_keys {where} ORDER BY id", params
        )
        return [api_keys.to_record(row) for row in rows]

    async def revoke_api_key(self, key_id: int) -> None:
        await self._writer.call(api_keys.revoke(key_id, now_micros()))

    async def count_api_keys(self, *, include_revoked: bool = False) -> int:
        where = "" if include_revoked else " WHERE revoked_us IS NULL"
        rows = await self._read(f"SELECT count(*) FROM api_keys{where}", [])
        return int(rows[0][0])

    # -- lifecycle -------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._hub.close()
        if self._reaper is not None:
            await self._reaper.close()
        await self._indexer.close()
        await self._writer.close()
        if self._checkpointer is not None:
            await self._checkpointer.close()
        for connection in self._all_connections:
            await connection.close()
        if self._lock is not None:
            self._lock.close()

    async def __aenter__(self) -> SqliteStorage:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- helpers ---------------------------------------------------------------------

    async def _read(self, sql: str, params: Iterable[Any]) -> list[Any]:
        async with self._reader() as connection:
            try:
                return list(await connection.execute_fetchall(sql, tuple(params)))
            except sqlite3.Error as exc:
                raise StorageError(f"read failed: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _reader(self) -> AsyncIterator[aiosqlite.Connection]:
        if self._closed:
            raise StorageClosed()
        connection = await self._idle_readers.get()
        try:
            yield connection
        finally:
            self._idle_readers.put_nowait(connection)

    async def _require(self, conversation_id: str) -> None:
        rows = await self._read("SELECT 1 FROM conversations WHERE id = ?", [conversation_id])
        if not rows:
            raise ConversationNotFound(conversation_id)


async def _connect(
    path: Path,
    synchronous: Synchronous,
    opened: list[aiosqlite.Connection],
    *,
    isolation_level: str | None = None,
) -> aiosqlite.Connection:
    connection = await aiosqlite.connect(path, isolation_level=isolation_level)
    opened.append(connection)
    await connection.execute("PRAGMA busy_timeout = 10000")
    await connection.execute(f"PRAGMA synchronous = {synchronous}")
    await connection.execute("PRAGMA cache_size = -65536")
    return connection


def _lock_directory(directory: Path) -> IO[bytes]:
    """Hold an exclusive lock on the directory for as long as the file stays open."""
    handle = (directory / "threadline.lock").open("a+b")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StorageInUse(f"{directory} is in use by another threadline process") from None
    return handle


def _try_lock_directory(directory: Path) -> IO[bytes] | None:
    """The directory's lock when nobody holds it, else None."""
    try:
        return _lock_directory(directory)
    except StorageInUse:
        return None


def _check_log_version(log_path: Path) -> None:
    """Beside an owner: the log must already be at this version's schema (the owner
    migrated it); this handle changes nothing."""
    with contextlib.closing(sqlite3.connect(log_path)) as connection:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
    if version != len(LOG_MIGRATIONS):
        raise StorageError(
            f"events.db is at schema version {version}, this threadline expects "
            f"{len(LOG_MIGRATIONS)}: the server using it is of another version"
        )


def _prepare_files(log_path: Path, search_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(log_path, isolation_level=None)) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        migrate_log(connection)
        (purged_through,) = connection.execute(
            "SELECT coalesce(max(id), 0) FROM search_purges"
        ).fetchone()
        (last_seq,) = connection.execute(
            "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'events'"
        ).fetchone()
    with contextlib.closing(sqlite3.connect(search_path, isolation_level=None)) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        prepare_search(connection, purged_through, last_seq)
