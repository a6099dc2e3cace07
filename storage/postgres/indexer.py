"""The full-text index on PostgreSQL, trailing the log.

Appends never compute a ``tsvector``: each append's statement puts its events' ``seq``
in ``index_queue``, and this task takes the queue in batches, writing each event's
document to ``event_docs`` in the statement that takes it off the queue. The order in
which several processes' transactions commit does not matter (no watermark to skip a
late commit); a deleted conversation's queued events are dropped from the queue, and its
documents are deleted with it. ``FOR UPDATE SKIP LOCKED`` lets the indexers of several processes
share the work.

The indexer's commits do not wait for their WAL to reach the disk (``synchronous_commit``
off on its own connection): a document is derived from its row, and a crash that loses
the last passes leaves those rows without one, so the next pass indexes them again.
Waiting would only put the indexer's flushes in the way of the appends' own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from storage.postgres.queries import SEARCH_CONFIG

logger = logging.getLogger(__name__)

MAX_INDEXED_CHARS = 250_000
"""A tsvector holds at most 1 MB: longer texts are indexed by their beginning."""
INDEX_BATCH = (
    "WITH taken AS (DELETE FROM index_queue WHERE seq IN (SELECT seq FROM index_queue "
    "ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING seq), "
    "found AS (SELECT e.conv, e.seq, e.text FROM taken JOIN events AS e ON e.seq = taken.seq), "
    "live AS (SELECT key FROM conversations WHERE key IN (SELECT conv FROM found) "
    "FOR KEY SHARE), "
    "indexed AS (INSERT INTO event_docs (conv, seq, doc) "
    f"SELECT f.conv, f.seq, to_tsvector('{SEARCH_CONFIG}', left(f.text, {MAX_INDEXED_CHARS})) "
    "FROM found AS f JOIN live ON live.key = f.conv RETURNING 1) "
    "SELECT (SELECT count(*) FROM taken), (SELECT count(*) FROM indexed)"
)
"""Takes up to ``$1`` queued events: ``(taken, indexed)``. Each conversation is locked
against deletion while its documents are written (a conversation deleted meanwhile is
skipped; one deleted after waits, then deletes them too); an event of a deleted
conversation is taken and not indexed."""
PENDING = "SELECT count(*) FROM index_queue"
PENDING_THROUGH = "SELECT EXISTS (SELECT 1 FROM index_queue WHERE seq <= $1)"


class PostgresIndexer:
    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        *,
        batch: int = 5000,
        interval: float = 0.02,
    ) -> None:
        self._connect = connect
        self._connection: asyncpg.Connection | None = None
        self._batch = batch
        self._interval = interval
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._failing = False
        self._lag = 0

    async def start(self) -> None:
        self._connection = await self._open()
        self._task = asyncio.create_task(self._run(), name="threadline-postgres-indexer")
        self._wake.set()  # rows a previous run left unindexed

    async def _open(self) -> asyncpg.Connection:
        connection = await self._connect()
        await connection.execute("SET synchronous_commit TO off")
        return connection

    def appended(self, count: int) -> None:
        """This process committed ``count`` events for the index to take."""
        self._lag += count
        self._wake.set()

    @property
    def lag(self) -> int:
        """Events not searchable yet: counted across the cluster after each pass of
        the indexer, plus what this process appended since."""
        return self._lag

    async def pending(self) -> int:
        """Durable events not searchable yet."""
        assert self._connection is not None
        async with self._progress:
            return int(await self._connection.fetchval(PENDING))

    async def wait_for(self, seq: int) -> None:
        """Return once every event with a sequence number up to ``seq`` is searchable."""
        while not self._closing:
            async with self._progress:
                assert self._connection is not None
                if not await self._connection.fetchval(PENDING_THROUGH, seq):
                    return
                self._wake.set()
                await self._progress.wait()

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        async with self._progress:
            self._progress.notify_all()
        if self._connection is not None:
            await self._connection.close()

    async def _take(self) -> tuple[int, int]:
        """One batch off the queue: how many events it took, and how many it indexed."""
        assert self._connection is not None
        row = await self._connection.fetchrow(INDEX_BATCH, self._batch)
        assert row is not None
        return int(row[0]), int(row[1])

    async def _run(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            try:
                while not self._closing:
                    async with self._progress:
                        assert self._connection is not None
                        taken, indexed = await self._take()
                        self._progress.notify_all()
                    if self._failing:
                        self._failing = False
                        logger.warning("search indexing works again")
                    self._lag = max(0, self._lag - indexed)
                    if taken < self._batch:
                        async with self._progress:
                            self._lag = int(await self._connection.fetchval(PENDING))
                        break
                if not self._closing:
                    await asyncio.sleep(self._interval)  # let the next batch gather
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
                if not self._failing:
                    logger.warning("search indexing failed, retrying every second: %s", exc)
                self._failing = True
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    if self._connection is None or self._connection.is_closed():
                        self._connection = await self._open()
                self._wake.set()
