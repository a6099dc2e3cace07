"""The full-text index, trailing the log.

Indexing each event inside its append transaction would cut append throughput several
fold (FTS5 per row costs more than the row itself). Instead the index lives in its own
file, ``search.db``, written by this task on its own connection and thread: it copies
new events' text from the log in batches and records how far it got in the same
transaction, so a crash loses nothing and the index can always say how far behind the
log it is.

A batch starts once `GATHER_EVENTS` events wait, or ``interval`` (1 s) after the first
of them became durable, or at once when someone waits for the index (`wait_for`). A lone
event cost ~1 ms of CPU to index on its own (a transaction in each FTS5 table, a dozen
hops to the connection's thread): a trickle of events shares one batch instead, and a
batch is one hop (`INDEX_BATCH`, a script).

Deleted conversations reach the index through the ``search_purges`` queue in the log
file: the contentless FTS5 table needs the original text to remove an entry. The queue
is read only when something may be in it (at start, and after `purges_queued`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable

import aiosqlite

from storage.sqlite.schema import conv_trigram
from storage.sqlite.writer import LogWriter

logger = logging.getLogger(__name__)

NEXT_BATCH_END = (
    "SELECT max(seq), count(*) FROM (SELECT seq FROM log.events WHERE seq > ? ORDER BY seq LIMIT ?)"
)
# One batch's transaction, as a script (one hop to the connection's thread): ``start``
# and ``end`` are filled in with the `d` format, so only integers can be.
INDEX_BATCH = (
    "BEGIN; "
    "INSERT INTO events_fts (rowid, text, conv) "
    "SELECT seq, text, 'c' || conv FROM log.events WHERE seq > {start:d} AND seq <= {end:d}; "
    "INSERT INTO events_substrings (rowid, text, conv) "
    f"SELECT seq, text, {conv_trigram('conv')} FROM log.events "
    "WHERE seq > {start:d} AND seq <= {end:d}; "
    "INSERT INTO indexed_events (seq) "
    "SELECT seq FROM log.events WHERE seq > {start:d} AND seq <= {end:d}; "
    "UPDATE search_state SET indexed_through = {end:d}; "
    "COMMIT;"
)
NEXT_PURGE_END = (
    "SELECT max(id) FROM (SELECT id FROM log.search_purges WHERE id > ? ORDER BY id LIMIT ?)"
)
# A contentless FTS5 table must be told the exact text of an entry to remove it, and
# removing an entry it never had corrupts it: only rows in `indexed_events` are removed.
PURGE_BATCH = (
    "INSERT INTO events_fts (events_fts, rowid, text, conv) "
    "SELECT 'delete', p.seq, p.text, 'c' || p.conv FROM log.search_purges AS p "
    "JOIN indexed_events AS i ON i.seq = p.seq WHERE p.id > ? AND p.id <= ?"
)
PURGE_SUBSTRINGS_BATCH = (
    "INSERT INTO events_substrings (events_substrings, rowid, text, conv) "
    f"SELECT 'delete', p.seq, p.text, {conv_trigram('p.conv')} FROM log.search_purges AS p "
    "JOIN indexed_events AS i ON i.seq = p.seq WHERE p.id > ? AND p.id <= ?"
)
FORGET_PURGED = (
    "DELETE FROM indexed_events WHERE seq IN "
    "(SELECT seq FROM log.search_purges WHERE id > ? AND id <= ?)"
)


GATHER_EVENTS = 256
"""Events waiting to be indexed that start a batch without waiting for ``interval``."""


class SearchIndexer:
    def __init__(
        self,
        connection: aiosqlite.Connection,
        writer: LogWriter,
        *,
        batch: int = 5000,
        purge_batch: int = 500,
        interval: float = 1.0,
    ) -> None:
        self._connection = connection
        self._writer = writer
        self._batch = batch
        # Each purge batch ends with a writer transaction deleting its rows (text and
        # all) from `search_purges`: kept small, so no append waits long behind it.
        self._purge_batch = purge_batch
        self._interval = interval
        self._wake = asyncio.Event()
        self._hurry = asyncio.Event()
        self._purges_pending = True  # until the queue has been read once
        self._failing = False
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.indexed_through = 0
        self._purged_through = 0
        self.reading = asyncio.Lock()
        """Held while a batch reads the log: a WAL restart (`Checkpointer`) takes it so
        that no snapshot of the indexer's keeps the WAL from being copied back whole."""

    async def start(self) -> None:
        rows = list(
            await self._connection.execute_fetchall(
                "SELECT indexed_through, purged_through FROM search_state"
            )
        )
        self.indexed_through, self._purged_through = rows[0]
        if self._purged_through:
            # A crash may have left applied purges queued in the log; drop them.
            await self._writer.call(_forget_purges(self._purged_through))
        self._task = asyncio.create_task(self._run(), name="threadline-search-indexer")
        self._hurry.set()
        self.wake()

    def wake(self) -> None:
        """New events are durable: index them within ``interval`` (at once if many)."""
        self._wake.set()
        if self._writer.last_seq - self.indexed_through >= GATHER_EVENTS:
            self._hurry.set()

    def purges_queued(self) -> None:
        """Deleted events' text was queued in ``search_purges``."""
        self._purges_pending = True
        self._wake.set()

    async def wait_for(self, seq: int, *, purged_through: int = 0) -> None:
        """Return once every event up to ``seq`` is searchable and every deletion queued
        up to ``purged_through`` has left the index."""
        self._hurry.set()
        self._wake.set()
        async with self._progress:
            await self._progress.wait_for(
                lambda: (
                    (self.indexed_through >= seq and self._purged_through >= purged_through)
                    or self._closing
                )
            )

    async def close(self) -> None:
        self._closing = True
        self._hurry.set()
        self._wake.set()
        if self._task is not None:
            await self._task
        async with self._progress:
            self._progress.notify_all()

    async def _run(self) -> None:
        while not self._closing:
            await self._wake.wait()
            await self._gather()
            self._wake.clear()
            self._hurry.clear()
            try:
                while not self._closing:
                    async with self.reading:
                        caught_up = await self._index_batch()
                    async with self.reading:
                        purged = await self._apply_purges() if self._purges_pending else False
                    if self._failing:
                        self._failing = False
                        logger.warning("search indexing works again")
                    if caught_up and not purged:
                        break
            except Exception as exc:
                # Once per failing streak (a full disk fails every retry), on one line.
                if not self._failing:
                    logger.warning("search indexing failed, retrying every second: %s", exc)
                self._failing = True
                with contextlib.suppress(Exception):
                    await self._connection.execute("ROLLBACK")
                await asyncio.sleep(1.0)
                self._wake.set()

    async def _gather(self) -> None:
        """Wait until a batch is worth starting (see the module's docstring)."""
        if self._hurry.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._interval):
                await self._hurry.wait()

    async def _index_batch(self) -> bool:
        """Index the next batch; whether it reached what was durable when it began."""
        start = self.indexed_through
        # Everything up to `durable` is committed, so a read that begins after this line
        # sees all of it; sequence numbers in it that are missing were deleted.
        durable = self._writer.last_seq
        if durable <= start:
            return True
        end = durable
        if durable - start > self._batch:  # else no more than a batch can be waiting
            rows = list(
                await self._connection.execute_fetchall(NEXT_BATCH_END, (start, self._batch))
            )
            batch_end, batch_size = rows[0]
            if batch_size == self._batch:
                end = batch_end
        try:
            await self._connection.executescript(INDEX_BATCH.format(start=start, end=end))
        except BaseException:
            # A failed statement leaves the transaction open (unless SQLite rolled it
            # back already, as after a failed COMMIT on a full disk).
            with contextlib.suppress(sqlite3.Error):
                await self._connection.execute("ROLLBACK")
            raise
        async with self._progress:
            self.indexed_through = end
            self._progress.notify_all()
        return end >= durable

    async def _apply_purges(self) -> bool:
        # Cleared before the read: a purge queued after it began sets it again.
        self._purges_pending = False
        start = self._purged_through
        connection = self._connection
        await connection.execute("BEGIN")
        try:
            rows = list(
                await connection.execute_fetchall(NEXT_PURGE_END, (start, self._purge_batch))
            )
            end = rows[0][0]
            if end is None:
                await connection.execute("ROLLBACK")
                return False
            await connection.execute(PURGE_BATCH, (start, end))
            await connection.execute(PURGE_SUBSTRINGS_BATCH, (start, end))
            await connection.execute(FORGET_PURGED, (start, end))
            await connection.execute("UPDATE search_state SET purged_through = ?", (end,))
            await connection.execute("COMMIT")
        except BaseException:
            self._purges_pending = True
            # SQLite may have rolled back already (a failed COMMIT on a full disk).
            with contextlib.suppress(sqlite3.Error):
                await connection.execute("ROLLBACK")
            raise
        self._purges_pending = True  # the queue may hold more than one batch
        async with self._progress:
            self._purged_through = end
            self._progress.notify_all()
        await self._writer.call(_forget_purges(end))
        return True


def _forget_purges(through: int) -> Callable[[aiosqlite.Connection], Awaitable[None]]:
    async def work(connection: aiosqlite.Connection) -> None:
        await connection.execute("DELETE FROM search_purges WHERE id <= ?", (through,))

    return work
