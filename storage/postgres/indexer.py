"""The full-text index on PostgreSQL, trailing the log.

Appends never compute a ``tsvector``: this task fills the ``doc`` column of new rows in
batches, found through a partial index of the rows still without one, so the order in
which several processes' transactions commit does not matter (no watermark to skip a
late commit) and a deleted conversation takes its documents with it. ``FOR UPDATE SKIP
LOCKED`` lets the indexers of several processes share the work.
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
    f"UPDATE events SET doc = to_tsvector('{SEARCH_CONFIG}', left(text, {MAX_INDEXED_CHARS})) "
    "WHERE seq IN (SELECT seq FROM events WHERE doc IS NULL ORDER BY seq LIMIT $1 "
    "FOR UPDATE SKIP LOCKED)"
)
PENDING = "SELECT count(*) FROM events WHERE doc IS NULL"
PENDING_THROUGH = "SELECT EXISTS (SELECT 1 FROM events WHERE doc IS NULL AND seq <= $1)"


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
        self._connection = await self._connect()
        self._task = asyncio.create_task(self._run(), name="threadline-postgres-indexer")
        self._wake.set()  # rows a previous run left unindexed

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

    async def _run(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            try:
                while not self._closing:
                    async with self._progress:
                        assert self._connection is not None
                        status = await self._connection.execute(INDEX_BATCH, self._batch)
                        self._progress.notify_all()
                    if self._failing:
                        self._failing = False
                        logger.warning("search indexing works again")
                    indexed = int(status.split()[-1])
                    self._lag = max(0, self._lag - indexed)
                    if indexed < self._batch:
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
                        self._connection = await self._connect()
                self._wake.set()
