"""This process's single writer to PostgreSQL: group commit, gapless ids.

As with SQLite, one task writes (the loop is `storage.group_commit`): appends queued
while a transaction is in flight are written together in the next one (one ``INSERT ...
SELECT FROM unnest(...)``), the per-kind counts and any record patches in the same
transaction. The writer assigns ids
from each conversation's next id, kept in memory. Other processes may write the same
conversation: the ``(conv, id)`` primary key makes a taken id a unique violation, never
a fork; the writer then reloads those conversations' next ids and writes the batch again
(a few times; then the batch fails loudly).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from events import ThreadlineError
from storage.errors import (
    ConversationNotFound,
    StorageClosed,
    StorageError,
    StorageFull,
)
from storage.group_commit import Accepted, Append, GroupCommitWriter, Written
from storage.models import ConversationPatch, StoredEvent
from storage.postgres.notify import Announcer
from storage.postgres.records import patch_statement
from storage.records import PreparedEvent, now_micros, stamp
from storage.subscription import SubscriptionHub

logger = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[asyncpg.Connection], Awaitable[T]]
Connect = Callable[[], Awaitable[asyncpg.Connection]]

MAX_CACHED_STREAMS = 20_000
CONFLICT_RETRIES = 5

INSERT_EVENTS = (
    "INSERT INTO events (conv, id, seq, kind, source, ts_us, hidden, text, data) "
    "SELECT c, i, nextval('events_seq'), k, s, t, h, x, d FROM unnest("
    "$1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::boolean[], "
    "$7::text[], $8::bytea[]) WITH ORDINALITY AS r(c, i, k, s, t, h, x, d, n) ORDER BY n"
)
_APPEND_CTES = (
    f"WITH inserted AS ({INSERT_EVENTS} RETURNING seq), "
    "queued AS (INSERT INTO index_queue (seq) SELECT seq FROM inserted), "
    "counted AS (INSERT INTO event_counts (conv, kind, n) "
    "SELECT * FROM unnest($9::bigint[], $10::text[], $11::bigint[]) "
    "ON CONFLICT (conv, kind) DO UPDATE SET n = event_counts.n + EXCLUDED.n RETURNING 1) "
)
APPEND_IN_ONE = (
    _APPEND_CTES + "SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM counted)"
)
"""A batch without record patches: its events, their places in the indexer's queue and
their per-kind counts, one statement."""
APPEND_AND_ANNOUNCE = (
    _APPEND_CTES + "SELECT pg_notify($12, payload) FROM unnest($13::text[]) AS payload"
)
"""The same, announced to the other processes (NOTIFY is sent when it commits)."""
LOAD_STREAM = (
    "SELECT c.key, e.id, e.ts_us FROM conversations AS c LEFT JOIN LATERAL "
    "(SELECT id, ts_us FROM events WHERE conv = c.key ORDER BY id DESC LIMIT 1) AS e ON true "
    "WHERE c.id = $1"
)


@dataclass(slots=True)
class _Stream:
    key: int
    next_id: int
    last_ts_us: int


@dataclass(slots=True)
class _Call:
    work: Work[Any]
    after_commit: Callable[[], None] | None
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(slots=True)
class _Create:
    """A conversation (``insert`` creates its row, and whatever goes with it) and its
    first events, in one transaction."""

    conversation_id: str
    insert: Work[Any]
    events: list[PreparedEvent]
    future: asyncio.Future[tuple[Any, list[StoredEvent]]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    asked_at: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class _AppendWith:
    """``work`` and events of one conversation, in one transaction of their own."""

    conversation_id: str
    events: list[PreparedEvent]
    work: Work[Any]
    future: asyncio.Future[tuple[Any, list[StoredEvent]]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    asked_at: float = field(default_factory=time.monotonic)


Op = Append | _Call | _Create | _AppendWith


@dataclass(slots=True)
class _Stamped:
    """A batch of appends given ids: the insert's columns, the per-kind counts, and each
    stream as it was before (to put back if the batch is not written)."""

    connection: asyncpg.Connection
    now: int
    columns: tuple[list[Any], ...] = field(default_factory=lambda: ([], [], [], [], [], [], [], []))
    counts: Counter[tuple[int, str]] = field(default_factory=Counter)
    written: Accepted = field(default_factory=list)
    saved: dict[str, tuple[_Stream, int, int]] = field(default_factory=dict)

    def restore(self) -> None:
        for stream, next_id, last_ts in self.saved.values():
            stream.next_id, stream.last_ts_us = next_id, last_ts


class PostgresWriter(GroupCommitWriter[_Stamped]):
    def __init__(
        self,
        connect: Connect,
        hub: SubscriptionHub,
        announcer: Announcer,
        *,
        on_commit: Callable[[int], None] = lambda appended: None,
        max_batch: int = 1000,
    ) -> None:
        self._connect = connect
        self._hub = hub
        self._announcer = announcer
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._connection: asyncpg.Connection | None = None
        self._queue: asyncio.Queue[Op | None] = asyncio.Queue()
        self._streams: dict[str, _Stream] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._disk_full = False

    @property
    def disk_full(self) -> bool:
        """The last write failed for lack of space (and none succeeded since)."""
        return self._disk_full

    async def start(self) -> None:
        self._connection = await self._connect()
        self._task = asyncio.create_task(self._run(), name="threadline-postgres-writer")

    async def append(
        self,
        conversation_id: str,
        events: list[PreparedEvent],
        patch: ConversationPatch | None = None,
    ) -> list[StoredEvent]:
        future: asyncio.Future[list[StoredEvent]] = asyncio.get_running_loop().create_future()
        self._put(Append(conversation_id, events, future, patch))
        return await future

    async def call(self, work: Work[T], after_commit: Callable[[], None] | None = None) -> T:
        """Run ``work`` in its own transaction, in order with the appends."""
        op = _Call(work, after_commit)
        self._put(op)
        return await op.future

    async def create_with_events(
        self, conversation_id: str, insert: Work[T], events: list[PreparedEvent]
    ) -> tuple[T, list[StoredEvent]]:
        """Run ``insert`` (which creates the conversation) and write ``events`` as its ids
        0, 1, ... in the same transaction; both commit or neither does."""
        op = _Create(conversation_id, insert, events)
        self._put(op)
        return await op.future

    async def append_with(
        self, conversation_id: str, events: list[PreparedEvent], work: Work[T]
    ) -> tuple[T, list[StoredEvent]]:
        """Run ``work`` and write ``events`` in one transaction of their own: if ``work``
        raises, nothing is written and the error propagates."""
        op = _AppendWith(conversation_id, events, work)
        self._put(op)
        return await op.future

    def forget(self, conversation_id: str) -> None:
        self._streams.pop(conversation_id, None)

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task
        if self._connection is not None:
            await self._connection.close()

    def _put(self, op: Op) -> None:
        if self._closing:
            raise StorageClosed()
        self._queue.put_nowait(op)

    async def _run_other(self, op: Op) -> None:
        if isinstance(op, _Create):
            await self._run_create(op)
        elif isinstance(op, _AppendWith):
            await self._run_append_with(op)
        elif isinstance(op, _Call):
            await self._run_call(op)

    def _told(self, appended: int) -> None:
        self._on_commit(appended)
        _trim(self._streams, MAX_CACHED_STREAMS)

    async def _ready(self) -> asyncpg.Connection:
        """The writer's connection, opened again if it was lost."""
        if self._connection is None or self._connection.is_closed():
            self._connection = await self._connect()
            self._streams.clear()  # what was cached may be stale now
        return self._connection

    async def _stream(self, connection: asyncpg.Connection, conversation_id: str) -> _Stream:
        stream = self._streams.pop(conversation_id, None)
        if stream is None:
            row = await connection.fetchrow(LOAD_STREAM, conversation_id)
            if row is None:
                raise ConversationNotFound(conversation_id)
            key, last_id, last_ts = row
            # An imported timestamp may lie ahead of the clock: never stamp from it.
            floor = min(last_ts or 0, now_micros())
            stream = _Stream(key, 0 if last_id is None else last_id + 1, floor)
        self._streams[conversation_id] = stream  # most recently used last
        return stream

    async def _write_appends(self, ops: list[Append]) -> None:
        for _ in range(CONFLICT_RETRIES):
            try:
                stamped = await self._stamp(ops)
                await self._commit(stamped)
            except asyncpg.UniqueViolationError:
                # Another process wrote one of these conversations: reload and retry.
                self._forget_streams(ops)
                continue
            except Exception as exc:
                self._forget_streams(ops)
                for op in ops:
                    _fail(op.future, self._failure(exc, "append"))
                return
            self._committed(stamped)
            self._settle(Written(stamped.written))
            return
        error = StorageError("another process keeps writing these conversations; giving up")
        for op in ops:
            _fail(op.future, error)

    async def _failed(self, stamped: _Stamped, exc: Exception) -> None:
        ops = [op for op, _ in stamped.written]
        self._forget_streams(ops)
        if isinstance(exc, asyncpg.UniqueViolationError):
            # Another process wrote one of these conversations: write them again with
            # their next ids reloaded.
            await self._write_appends(ops)
            return
        for op in ops:
            _fail(op.future, self._failure(exc, "append"))

    def _committed(self, stamped: _Stamped) -> None:
        self._succeeded()

    def _forget_streams(self, ops: list[Append]) -> None:
        for op in ops:
            self._streams.pop(op.conversation_id, None)

    async def _stamp(self, ops: list[Append]) -> _Stamped:
        """Give the batch's events their ids and timestamps, as the columns of one insert.
        The streams advance; `_commit` puts them back if the batch is not written."""
        connection = await self._ready()
        stamped = _Stamped(connection, now_micros())
        columns, counts, now = stamped.columns, stamped.counts, stamped.now
        for op in ops:
            try:
                stream = await self._stream(connection, op.conversation_id)
            except ThreadlineError as exc:
                _fail(op.future, exc)
                continue
            except BaseException:
                stamped.restore()
                raise
            stamped.saved.setdefault(
                op.conversation_id, (stream, stream.next_id, stream.last_ts_us)
            )
            stored = _stamp_into(columns, counts, op.conversation_id, stream, op.events, now)
            stamped.written.append((op, stored))
        return stamped

    async def _commit(self, stamped: _Stamped) -> None:
        """Write a stamped batch: the events, their counts and the announcement as one
        statement (its own transaction: one round trip), and record patches, if any, in a
        transaction with it. On failure the streams are put back."""
        connection, written = stamped.connection, stamped.written
        newest = {op.conversation_id: stored[-1].id for op, stored in written if stored}
        try:
            if all(op.patch is None for op, _ in written):
                await self._write_in_one(connection, stamped.columns, stamped.counts, newest)
                return
            async with connection.transaction():
                await self._write_in_one(connection, stamped.columns, stamped.counts, newest)
                for op, _ in written:
                    if op.patch is not None:
                        sql, params = patch_statement(op.patch, stamped.now)
                        key = stamped.saved[op.conversation_id][0].key
                        await connection.execute(
                            f"{sql} WHERE key = ${len(params) + 1}", *params, key
                        )
        except BaseException:
            stamped.restore()
            raise

    async def _write_in_one(
        self,
        connection: asyncpg.Connection,
        columns: tuple[list[Any], ...],
        counts: Counter[tuple[int, str]],
        newest: dict[str, int],
    ) -> None:
        keys = list(counts)
        count_columns = (
            [key for key, _ in keys],
            [kind for _, kind in keys],
            list(counts.values()),
        )
        channel = self._announcer.channel
        if channel is None:
            await connection.execute(APPEND_IN_ONE, *columns, *count_columns)
            return
        await connection.execute(
            APPEND_AND_ANNOUNCE, *columns, *count_columns, channel,
            self._announcer.payloads(newest),
        )  # fmt: skip

    async def _run_call(self, op: _Call) -> None:
        try:
            connection = await self._ready()
            async with connection.transaction():
                result = await op.work(connection)
        except ThreadlineError as exc:
            _fail(op.future, exc)
            return
        except Exception as exc:
            _fail(op.future, self._failure(exc, "write"))
            return
        self._succeeded()
        if op.after_commit is not None:
            op.after_commit()
        if not op.future.done():
            op.future.set_result(result)

    async def _run_create(self, op: _Create) -> None:
        now = now_micros()
        try:
            connection = await self._ready()
            async with connection.transaction():
                result = await op.insert(connection)
                key = await connection.fetchval(
                    "SELECT key FROM conversations WHERE id = $1", op.conversation_id
                )
                stream = _Stream(key, 0, 0)
                stored = await self._insert(connection, op.conversation_id, stream, op.events, now)
        except ThreadlineError as exc:
            _fail(op.future, exc)
            return
        except Exception as exc:
            _fail(op.future, self._failure(exc, "create"))
            return
        self._succeeded()
        self._streams[op.conversation_id] = stream
        if not op.future.done():
            op.future.set_result((result, stored))
        if stored:
            self._hub.observer.appended(len(stored), time.monotonic() - op.asked_at)
            self._hub.publish(op.conversation_id, stored)
            self._on_commit(len(stored))

    async def _run_append_with(self, op: _AppendWith) -> None:
        now = now_micros()
        try:
            connection = await self._ready()
            async with connection.transaction():
                stream = await self._stream(connection, op.conversation_id)
                saved = (stream.next_id, stream.last_ts_us)
                try:
                    result = await op.work(connection)
                    stored = await self._insert(
                        connection, op.conversation_id, stream, op.events, now
                    )
                except BaseException:
                    stream.next_id, stream.last_ts_us = saved
                    raise
        except ThreadlineError as exc:
            _fail(op.future, exc)
            return
        except Exception as exc:
            self._streams.pop(op.conversation_id, None)
            _fail(op.future, self._failure(exc, "write"))
            return
        self._succeeded()
        if not op.future.done():
            op.future.set_result((result, stored))
        if stored:
            self._hub.observer.appended(len(stored), time.monotonic() - op.asked_at)
            self._hub.publish(op.conversation_id, stored)
            self._on_commit(len(stored))

    async def _insert(
        self,
        connection: asyncpg.Connection,
        conversation_id: str,
        stream: _Stream,
        events: list[PreparedEvent],
        now: int,
    ) -> list[StoredEvent]:
        """Write ``events`` as the stream's next ids (inside the caller's transaction),
        with their kinds counted and the announcement to other processes."""
        columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [])
        counts: Counter[tuple[int, str]] = Counter()
        stored = _stamp_into(columns, counts, conversation_id, stream, events, now)
        if stored:
            newest = {conversation_id: stored[-1].id}
            await self._write_in_one(connection, columns, counts, newest)
        return stored

    def _failure(self, exc: BaseException, what: str) -> ThreadlineError:
        """The error a failed transaction means to callers. A full disk is `StorageFull`,
        logged once until a write succeeds again."""
        if isinstance(exc, ThreadlineError):
            return exc
        if isinstance(exc, asyncpg.DiskFullError):
            if not self._disk_full:
                self._disk_full = True
                logger.warning("the disk is full: writes are refused (507) until space returns")
            return StorageFull(f"{what} refused: the disk is full")
        return StorageError(f"{what} failed: {exc}")

    def _succeeded(self) -> None:
        if self._disk_full:
            self._disk_full = False
            logger.warning("space returned: writes succeed again")


def _stamp_into(
    columns: tuple[list[Any], ...],
    counts: Counter[tuple[int, str]],
    conversation_id: str,
    stream: _Stream,
    events: list[PreparedEvent],
    now: int,
) -> list[StoredEvent]:
    """Give ``events`` the stream's next ids and their timestamps, adding them to the
    insert's ``columns`` and the per-kind ``counts``; the stream advances."""
    stored = []
    convs, ids, kinds, sources, stamps, hidden, texts, datas = columns
    key = stream.key
    for prepared in events:
        timestamp = prepared.timestamp_us
        if timestamp is None:
            timestamp = max(now, stream.last_ts_us)
        event_id = stream.next_id
        data = stamp(prepared, event_id, timestamp)
        convs.append(key)
        ids.append(event_id)
        kinds.append(prepared.kind)
        sources.append(prepared.source)
        stamps.append(timestamp)
        hidden.append(prepared.hidden)
        texts.append(prepared.text)
        datas.append(data)
        counts[key, prepared.kind] += 1
        stored.append(StoredEvent(conversation_id, event_id, data))
        stream.next_id = event_id + 1
        stream.last_ts_us = max(stream.last_ts_us, min(timestamp, now))
    return stored


def _trim(cache: dict[str, Any], size: int) -> None:
    while len(cache) > size:
        del cache[next(iter(cache))]


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
