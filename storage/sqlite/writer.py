"""The single writer of ``events.db``: group commit.

Every write to the log file goes through one task (the loop is `storage.group_commit`).
Appends queued while a transaction is in flight are written together in the next one, so
a hundred conversations appending at once cost one commit, not a hundred. Other writes
(conversation create / update / delete) run in order with the appends, each in its own
transaction.

The writer assigns ids: it keeps each active conversation's next id in memory (loaded
from the log on first use), so ids are gapless even when appends race, and restores them
when a transaction fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiosqlite

from events import ThreadlineError
from storage.errors import ConversationNotFound, StorageClosed, StorageError, StorageFull
from storage.group_commit import Accepted, Append, GroupCommitWriter, Written
from storage.models import ConversationPatch, StoredEvent
from storage.records import PreparedEvent, now_micros, stamp
from storage.sqlite import conversations
from storage.sqlite.connection_thread import run_in_thread
from storage.sqlite.conversations import Insert
from storage.subscription import SubscriptionHub

logger = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[aiosqlite.Connection], Awaitable[T]]
"""A step the writer runs in a transaction of its own."""
Statement = tuple[str, Sequence[Sequence[Any]]]
"""SQL and the parameters of each row it is run for."""

MAX_CACHED_STREAMS = 20_000
"""Conversations whose next id (and kind counts) the writer keeps in memory."""

INSERT_EVENT = (
    "INSERT INTO events (seq, conv, id, kind, source, ts_us, hidden, text, data) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
LOAD_STREAM = (
    "SELECT c.key, e.id, e.ts_us FROM conversations AS c "
    "LEFT JOIN events AS e ON e.conv = c.key "
    "AND e.id = (SELECT max(id) FROM events WHERE conv = c.key) WHERE c.id = ?"
)


@dataclass(slots=True)
class _Stream:
    key: int
    next_id: int
    last_ts_us: int


@dataclass(slots=True)
class _Create:
    """A conversation and its first events, in one transaction."""

    insert: Insert
    conversation_id: str
    events: list[PreparedEvent]
    future: asyncio.Future[tuple[Any, list[StoredEvent]]]
    asked_at: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class _AppendWith:
    """Events and another write (a task's or a schedule's record), in one transaction."""

    conversation_id: str
    events: list[PreparedEvent]
    work: Work[Any]
    future: asyncio.Future[tuple[Any, list[StoredEvent]]]


@dataclass(slots=True)
class _Call:
    work: Callable[[aiosqlite.Connection], Awaitable[Any]]
    after_commit: Callable[[], None] | None
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


Op = Append | _Call | _Create | _AppendWith


@dataclass(slots=True)
class _Created:
    """A creation written in the transaction under way."""

    record: Any
    key: int
    stored: list[StoredEvent]
    floor: int


@dataclass(slots=True)
class _Stamped:
    """A batch of appends given ids: its rows, and the writer's sequence and each stream
    as they were before (to put back if the batch is not written)."""

    now: int
    first_seq: int
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    written: Accepted = field(default_factory=list)
    saved: dict[str, tuple[_Stream, int, int]] = field(default_factory=dict)

    def restore(self) -> None:
        """Put each stream back as it was before the batch."""
        for stream, next_id, last_ts in self.saved.values():
            stream.next_id, stream.last_ts_us = next_id, last_ts


class LogWriter(GroupCommitWriter[_Stamped]):
    """Owns the write connection; see the module docstring."""

    def __init__(
        self,
        connection: aiosqlite.Connection,
        hub: SubscriptionHub,
        *,
        on_commit: Callable[[int], None] = lambda appended: None,
        max_batch: int = 1000,
    ) -> None:
        self._connection = connection
        self._hub = hub
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._queue: asyncio.Queue[Op | None] = asyncio.Queue()
        self._streams: dict[str, _Stream] = {}
        self._kind_counts: dict[str, Counter[str]] = {}
        self._next_seq = 1
        self._durable_seq = 0
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._disk_full = False

    @property
    def disk_full(self) -> bool:
        """The last write failed for lack of space (and none has succeeded since)."""
        return self._disk_full

    @property
    def last_seq(self) -> int:
        """The global sequence number of the newest durable event."""
        return self._durable_seq

    async def start(self) -> None:
        rows = list(
            await self._connection.execute_fetchall(
                "SELECT seq FROM sqlite_sequence WHERE name = 'events'"
            )
        )
        self._durable_seq = rows[0][0] if rows else 0
        self._next_seq = self._durable_seq + 1
        self._task = asyncio.create_task(self._run(), name="threadline-log-writer")

    async def append(
        self,
        conversation_id: str,
        events: list[PreparedEvent],
        patch: ConversationPatch | None = None,
    ) -> list[StoredEvent]:
        """Write ``events`` (and ``patch`` to the conversation's record) in the next
        batch's transaction; return them once committed."""
        if self._closing:
            raise StorageClosed()
        future: asyncio.Future[list[StoredEvent]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Append(conversation_id, events, future, patch))
        return await future

    async def call(
        self,
        work: Callable[[aiosqlite.Connection], Awaitable[T]],
        after_commit: Callable[[], None] | None = None,
    ) -> T:
        """Run ``work`` in its own write transaction, in order with the appends."""
        if self._closing:
            raise StorageClosed()
        op = _Call(work, after_commit)
        self._queue.put_nowait(op)
        return await op.future

    async def create_with_events(
        self, conversation_id: str, insert: Insert, events: list[PreparedEvent]
    ) -> tuple[Any, list[StoredEvent]]:
        """Run ``insert`` (which creates the conversation, in the connection's thread)
        and write ``events`` as its ids 0, 1, ... in the same transaction; both commit or
        neither does. Returns what ``insert`` returned, and the stored events."""
        if self._closing:
            raise StorageClosed()
        future: asyncio.Future[tuple[Any, list[StoredEvent]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._queue.put_nowait(_Create(insert, conversation_id, events, future))
        return await future

    async def append_with(
        self, conversation_id: str, events: list[PreparedEvent], work: Work[T]
    ) -> tuple[T, list[StoredEvent]]:
        """Run ``work`` and write ``events`` in one transaction of their own: if ``work``
        raises, nothing is written and the error propagates."""
        if self._closing:
            raise StorageClosed()
        future: asyncio.Future[tuple[Any, list[StoredEvent]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._queue.put_nowait(_AppendWith(conversation_id, events, work, future))
        return await future

    def forget(self, conversation_id: str) -> None:
        """Drop what is cached of a deleted conversation. Writer task only."""
        self._streams.pop(conversation_id, None)
        self._kind_counts.pop(conversation_id, None)

    async def kind_counts(self, conversation_id: str) -> Counter[str]:
        """How many events of each kind the conversation holds, kept current from then
        on by every commit. Loaded by the writer itself, so no commit slips between the
        count and its upkeep. Raises `ConversationNotFound`."""
        counts = self._kind_counts.get(conversation_id)
        if counts is not None:
            return counts
        return await self.call(self._load_kind_counts(conversation_id))

    def _load_kind_counts(self, conversation_id: str) -> Work[Counter[str]]:
        async def work(connection: aiosqlite.Connection) -> Counter[str]:
            counts = self._kind_counts.get(conversation_id)  # loaded while this waited
            if counts is None:
                counts = await _count_kinds(connection, conversation_id)
                # Installed here, in the writer task, before any later batch commits.
                self._kind_counts[conversation_id] = counts
            return counts

        return work

    async def close(self) -> None:
        """Write everything queued so far, then stop."""
        if self._closing:
            return
        self._closing = True
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task

    async def _run_other(self, op: Op) -> None:
        if isinstance(op, _Create):
            await self._run_create(op)
        elif isinstance(op, _AppendWith):
            await self._run_append_with(op)
        elif isinstance(op, _Call):
            await self._run_call(op)

    def _told(self, appended: int) -> None:
        self._on_commit(appended)

    async def _stream(self, conversation_id: str) -> _Stream:
        stream = self._streams.pop(conversation_id, None)
        if stream is not None:
            self._streams[conversation_id] = stream  # most recently used last
        else:
            rows = list(await self._connection.execute_fetchall(LOAD_STREAM, (conversation_id,)))
            if not rows:
                raise ConversationNotFound(conversation_id)
            key, last_id, last_ts = rows[0]
            # An imported timestamp may lie ahead of the clock: never stamp from it.
            floor = min(last_ts or 0, now_micros())
            stream = _Stream(key, 0 if last_id is None else last_id + 1, floor)
            self._streams[conversation_id] = stream
        return stream

    async def _write_appends(self, ops: list[Append]) -> None:
        stamped = await self._stamp(ops)
        if not stamped.written:
            return
        try:
            await self._commit(stamped)
        except BaseException as exc:
            await self._failed(stamped, exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._committed(stamped)
        self._settle(Written(stamped.written))

    async def _stamp(self, ops: list[Append]) -> _Stamped:
        stamped = _Stamped(now_micros(), self._next_seq)
        rows, now = stamped.rows, stamped.now
        for op in ops:
            try:
                stream = await self._stream(op.conversation_id)
            except ThreadlineError as exc:
                _fail(op.future, exc)
                continue
            except sqlite3.Error as exc:
                _fail(op.future, StorageError(f"could not load conversation: {exc}"))
                continue
            stamped.saved.setdefault(
                op.conversation_id, (stream, stream.next_id, stream.last_ts_us)
            )
            stored: list[StoredEvent] = []
            for prepared in op.events:
                event_id = stream.next_id
                timestamp = prepared.timestamp_us
                if timestamp is None:
                    timestamp = max(now, stream.last_ts_us)
                data = stamp(prepared, event_id, timestamp)
                rows.append(
                    (
                        self._next_seq, stream.key, event_id, prepared.kind, prepared.source,
                        timestamp, prepared.hidden, prepared.text, data,
                    )
                )  # fmt: skip
                stored.append(StoredEvent(op.conversation_id, event_id, data))
                stream.next_id += 1
                stream.last_ts_us = max(stream.last_ts_us, min(timestamp, now))
                self._next_seq += 1
            stamped.written.append((op, stored))
        return stamped

    async def _commit(self, stamped: _Stamped) -> None:
        # The rows, the record patches and the commit in one round trip to the
        # connection's thread (`run_in_thread`): two would wake it, and then this loop,
        # twice per batch.
        statements = [(INSERT_EVENT, stamped.rows), *_record_patches(stamped)]
        try:
            await run_in_thread(self._connection, _transaction(statements))
        except BaseException:
            self._next_seq = stamped.first_seq
            stamped.restore()
            raise

    async def _failed(self, stamped: _Stamped, exc: BaseException) -> None:
        error = self._failure(exc, "append")
        for op, _ in stamped.written:
            _fail(op.future, error)

    def _committed(self, stamped: _Stamped) -> None:
        self._durable_seq = self._next_seq - 1
        self._succeeded()
        _trim(self._streams, MAX_CACHED_STREAMS)
        _trim(self._kind_counts, MAX_CACHED_STREAMS)
        for op, _ in stamped.written:
            if (counts := self._kind_counts.get(op.conversation_id)) is not None:
                counts.update(prepared.kind for prepared in op.events)

    async def _run_call(self, op: _Call) -> None:
        try:
            # The first write of `work` opens the transaction (the connection's isolation
            # level); reads before it see the same data, as only this task writes.
            result = await self._in_transaction(lambda: op.work(self._connection))
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

    async def _run_append_with(self, op: _AppendWith) -> None:
        try:
            stream = await self._stream(op.conversation_id)
        except ThreadlineError as exc:
            _fail(op.future, exc)
            return
        except sqlite3.Error as exc:
            _fail(op.future, StorageError(f"could not load conversation: {exc}"))
            return
        first_seq, next_id, last_ts = self._next_seq, stream.next_id, stream.last_ts_us
        now = now_micros()
        rows: list[tuple[Any, ...]] = []
        stored: list[StoredEvent] = []
        for prepared in op.events:
            timestamp = prepared.timestamp_us
            if timestamp is None:
                timestamp = max(now, stream.last_ts_us)
            data = stamp(prepared, stream.next_id, timestamp)
            rows.append(
                (
                    self._next_seq, stream.key, stream.next_id, prepared.kind,
                    prepared.source, timestamp, prepared.hidden, prepared.text, data,
                )
            )  # fmt: skip
            stored.append(StoredEvent(op.conversation_id, stream.next_id, data))
            stream.next_id += 1
            stream.last_ts_us = max(stream.last_ts_us, min(timestamp, now))
            self._next_seq += 1

        async def work_then_rows() -> Any:
            result = await op.work(self._connection)
            await self._connection.executemany(INSERT_EVENT, rows)
            return result

        try:
            result = await self._in_transaction(work_then_rows)
        except BaseException as exc:
            self._next_seq, stream.next_id, stream.last_ts_us = first_seq, next_id, last_ts
            _fail(op.future, self._failure(exc, "write"))
            if not isinstance(exc, Exception):
                raise
            return
        self._durable_seq = self._next_seq - 1
        self._succeeded()
        if (counts := self._kind_counts.get(op.conversation_id)) is not None:
            counts.update(prepared.kind for prepared in op.events)
        if not op.future.done():
            op.future.set_result((result, stored))
        if stored:
            self._hub.publish(op.conversation_id, stored)
            self._on_commit(len(stored))

    async def _run_create(self, op: _Create) -> None:
        await self._write_segment([op], alone=True)

    def _created(self, op: _Create, created: _Created) -> None:
        """A creation is durable: its stream, its caller, its subscribers."""
        stored = created.stored
        # An append in the same transaction may have loaded (and moved) the stream.
        self._streams.setdefault(
            op.conversation_id, _Stream(created.key, len(stored), created.floor)
        )
        if not op.future.done():
            op.future.set_result((created.record, stored))
        if stored:
            self._hub.observer.appended(len(stored), time.monotonic() - op.asked_at)
            self._hub.publish(op.conversation_id, stored)
            self._on_commit(len(stored))

    # -- creations and appends in one transaction ---------------------------------------

    async def _process(self, batch: list[Any]) -> None:
        """As the shared loop does, except that creations and the appends around them
        (up to the next other write) share one transaction: under a burst of creations
        each one otherwise cost a commit of its own and split the appends' batch."""
        together: list[Append | _Create] = []
        for op in batch:
            if isinstance(op, Append | _Create):
                together.append(op)
                continue
            await self._write_together(together)
            together = []
            await self._run_other(op)
        await self._write_together(together)

    async def _write_together(self, ops: list[Append | _Create]) -> None:
        """``ops`` in as few transactions as keep their order: a new one starts only
        at an append to a conversation created earlier in the same one (its stream is
        known once that creation is written)."""
        segment: list[Append | _Create] = []
        created: set[str] = set()
        for op in ops:
            if isinstance(op, Append) and op.conversation_id in created:
                await self._write_segment(segment)
                segment, created = [], set()
            segment.append(op)
            if isinstance(op, _Create):
                created.add(op.conversation_id)
        await self._write_segment(segment)

    async def _write_segment(self, ops: list[Append | _Create], *, alone: bool = False) -> None:
        """Creations and appends (none to a conversation created here) in one
        transaction, sent to the connection's thread in one round trip: the rows of the
        creations (their ids taken there), the appends' rows and record patches, the
        commit. If it fails, nothing was written and each write runs again on its own
        to get its own answer (a creation whose id is taken fails alone); ``alone``: it
        was one creation on its own, which fails."""
        creates = [op for op in ops if isinstance(op, _Create)]
        appends = [op for op in ops if isinstance(op, Append)]
        if not creates:
            if appends:
                await self._write_appends(appends)
            return
        first_seq = self._next_seq
        now = now_micros()
        planned: list[tuple[_Create, int]] = []
        for create in creates:
            planned.append((create, self._next_seq))
            self._next_seq += len(create.events)
        stamped: _Stamped | None = None
        try:
            stamped = await self._stamp(appends)
            statements = [(INSERT_EVENT, stamped.rows), *_record_patches(stamped)]
            created = await run_in_thread(
                self._connection, _creation_transaction(planned, now, statements)
            )
        except BaseException as exc:
            self._next_seq = first_seq
            if stamped is not None:
                stamped.restore()
            if alone or not isinstance(exc, Exception):
                for create in creates:
                    _fail(create.future, self._failure(exc, "create"))
                if not isinstance(exc, Exception):
                    raise
                return
            # Nothing was written: each write again on its own.
            await super()._process([op for op in ops if not op.future.done()])
            return
        self._durable_seq = self._next_seq - 1
        self._succeeded()
        for create, done in zip(creates, created, strict=True):
            self._created(create, done)
        self._committed(stamped)
        self._settle(Written(stamped.written))

    def _failure(self, exc: BaseException, what: str) -> ThreadlineError:
        """The error a failed transaction means to callers. A full disk is `StorageFull`,
        logged once until a write succeeds again (then that is logged)."""
        if isinstance(exc, ThreadlineError):
            return exc
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            if not self._disk_full:
                self._disk_full = True
                logger.warning("the disk is full: writes are refused (507) until space returns")
            return StorageFull(f"{what} refused: the disk is full")
        return StorageError(f"{what} failed: {exc}")

    def _succeeded(self) -> None:
        if self._disk_full:
            self._disk_full = False
            logger.warning("space returned: writes succeed again")

    async def _in_transaction(self, work: Callable[[], Awaitable[T]]) -> T:
        """``work()`` (whose first write opens the transaction), then the commit; rolled
        back if either fails."""
        try:
            result = await work()
            await self._connection.commit()
        except BaseException:
            await self._rollback()
            raise
        return result

    async def _rollback(self) -> None:
        # Suppressed: when BEGIN itself failed there is no transaction to roll back.
        with contextlib.suppress(sqlite3.Error):
            await self._connection.rollback()


async def _count_kinds(connection: aiosqlite.Connection, conversation_id: str) -> Counter[str]:
    rows = list(
        await connection.execute_fetchall(
            "SELECT c.key, e.kind, count(e.id) FROM conversations AS c "
            "LEFT JOIN events AS e ON e.conv = c.key WHERE c.id = ? GROUP BY e.kind",
            (conversation_id,),
        )
    )
    if not rows:
        raise ConversationNotFound(conversation_id)
    return Counter({kind: count for _, kind, count in rows if kind is not None})


def _record_patches(stamped: _Stamped) -> list[Statement]:
    """The batch's record patches, in order (a record patched twice ends as the later
    patch says)."""
    statements: list[Statement] = []
    for op, _ in stamped.written:
        if op.patch is not None:
            key = stamped.saved[op.conversation_id][0].key
            sql, params = conversations.patch_statement(op.patch, stamped.now)
            statements.append((sql + " WHERE key = ?", [(*params, key)]))
    return statements


def _creation_transaction(
    planned: list[tuple[_Create, int]], now: int, statements: list[Statement]
) -> Callable[[sqlite3.Connection], list[_Created]]:
    """Run in the connection's thread: each creation (its ``insert``, then its events
    as ids 0, 1, ... from its first sequence number), then ``statements``, in one
    transaction, committed or rolled back."""

    def run(connection: sqlite3.Connection) -> list[_Created]:
        def write() -> list[_Created]:
            created = [_insert_created(connection, op, seq, now) for op, seq in planned]
            for sql, rows in statements:
                if rows:
                    connection.executemany(sql, rows)
            return created

        return _committed(connection, write)

    return run


def _insert_created(
    connection: sqlite3.Connection, op: _Create, first_seq: int, now: int
) -> _Created:
    """The conversation's row (``op.insert``) and its events' rows, not committed. The
    events are stamped as ``executemany`` consumes them: a large import's too."""
    stored: list[StoredEvent] = []
    floor = 0

    def rows(key: int) -> Iterator[tuple[Any, ...]]:
        nonlocal floor
        for event_id, prepared in enumerate(op.events):
            timestamp = prepared.timestamp_us
            if timestamp is None:
                timestamp = max(now, floor)
            data = stamp(prepared, event_id, timestamp)
            stored.append(StoredEvent(op.conversation_id, event_id, data))
            floor = max(floor, min(timestamp, now))
            yield (
                first_seq + event_id, key, event_id, prepared.kind, prepared.source,
                timestamp, prepared.hidden, prepared.text, data,
            )  # fmt: skip

    record = op.insert(connection)
    ((key,),) = connection.execute(
        "SELECT key FROM conversations WHERE id = ?", (op.conversation_id,)
    ).fetchall()
    if op.events:
        connection.executemany(INSERT_EVENT, rows(key))
    return _Created(record, key, stored, floor)


def _transaction(statements: list[Statement]) -> Callable[[sqlite3.Connection], None]:
    """Run in the connection's thread: the statements in one transaction (the first
    write opens it, at the connection's isolation level), committed or rolled back."""

    def run(connection: sqlite3.Connection) -> None:
        def write() -> None:
            for sql, rows in statements:
                connection.executemany(sql, rows)

        _committed(connection, write)

    return run


def _committed(connection: sqlite3.Connection, write: Callable[[], T]) -> T:
    """``write``'s result once committed; rolled back and raised if anything failed."""
    try:
        result = write()
        connection.commit()
    except BaseException:
        # Suppressed: when BEGIN itself failed there is no transaction to roll back.
        with contextlib.suppress(sqlite3.Error):
            connection.rollback()
        raise
    return result


def _trim(cache: dict[str, Any], size: int) -> None:
    """Forget the least recently used entries beyond ``size`` (reloaded on next use).
    Only between batches: an entry in use by a batch must not be reloaded mid-batch."""
    while len(cache) > size:
        del cache[next(iter(cache))]


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
