"""WAL checkpoints on their own connection and thread.

SQLite normally checkpoints inside whichever commit crosses the threshold, which puts a
10-20 ms stall on that append. The log writer turns that off; this task copies the WAL
back into the database file (``PASSIVE``: it never blocks the writer or readers) a
moment after commits, so the WAL stays small without any append paying for it.

A checkpoint costs a round trip to its thread and the file's syncs whatever it copies:
at a trickle of appends (one every 50 ms) one every half second cost ~40 us of CPU per
append. So it runs ``interval`` after the first commit since the last one if
`GATHER_EVENTS` events were appended by then, else once that many have been or
``max_interval`` has passed, whichever is first: under load as before, at a trickle
every few seconds (the WAL then holds a few seconds of a trickle at most).

Copying frames back does not bound the WAL's file. SQLite writes from the start of the
file again only when a write transaction begins with every frame copied back and no
reader on an older snapshot; under a sustained burst the writer commits while each
checkpoint runs, so that moment never came: with 100 writers appending flat out the file
grew ~220 MiB a second (4.3 GB in 20 s), and kept its size afterwards. So once a
checkpoint finds `RESTART_BYTES` in the WAL, it starts it over: holding the search
indexer's ``readers`` lock (the indexer's batches read the log), it catches up with
concurrent passes until one is quick, then runs one more pass in the writer's queue
(``restart``), between two of its transactions, and the writer's next transaction writes
from the start of the file. The file then stays at what one interval of appends writes
(230-270 MiB in that burst; deleting a 100,000-event conversation left 955 MiB, now
137 MiB). The price is a writer pause of one short checkpoint per interval while the
burst lasts: 4-34 ms, most of it the checkpoint's syncs. The appends' p99 did not move
(8-9 ms either way), but the longest append wait during that delete went from 8-9 ms to
18-35 ms: bounded disk was chosen over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable

import aiosqlite

from storage.errors import StorageClosed, StorageError

logger = logging.getLogger(__name__)

INTERVAL = 0.5
"""Seconds from the first commit since the last checkpoint to the next one."""
GATHER_EVENTS = 100
"""Events appended that make a checkpoint due ``interval`` after the first commit."""
RESTART_BYTES = 64 * 1024 * 1024
"""WAL content beyond which a checkpoint in the writer's queue starts the WAL over."""
CATCH_UP_PASSES = 4
QUICK_SECONDS = 0.005
"""A concurrent pass this short leaves the writer's own pass little to copy."""
PASSIVE = "PRAGMA wal_checkpoint(PASSIVE)"
Restart = Callable[[], Awaitable[object]]


class Checkpointer:
    def __init__(
        self,
        connection: aiosqlite.Connection,
        *,
        restart: Restart,
        readers: asyncio.Lock,
        interval: float = INTERVAL,
        max_interval: float = 5.0,
        restart_bytes: int = RESTART_BYTES,
    ) -> None:
        """``restart()`` runs `checkpoint_in_writer` in the writer's queue; ``readers``
        is held by the search indexer while it reads the log."""
        self._connection = connection
        self._restart = restart
        self._readers = readers
        self._restart_bytes = restart_bytes
        self._restart_frames = 0
        """`restart_bytes` in frames of the file's page size (read at `start`)."""
        self._interval = interval
        self._max_interval = max_interval
        self._dirty = asyncio.Event()
        self._enough = asyncio.Event()
        self._events = 0
        self._failing = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        rows = list(await self._connection.execute_fetchall("PRAGMA page_size"))
        self._restart_frames = self._restart_bytes // int(rows[0][0])
        self._task = asyncio.create_task(self._run(), name="threadline-checkpointer")

    def committed(self, appended: int) -> None:
        """New frames are in the WAL: ``appended`` events (and what came with them)."""
        self._dirty.set()
        self._events += appended
        if self._events >= GATHER_EVENTS:
            self._enough.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(sqlite3.Error):
            await self._connection.execute(PASSIVE)

    async def _start_over(self) -> None:
        """Catch up with the writer concurrently (each pass copies what came during the
        last), then copy the rest in its queue; unless a reader's older snapshot stops the
        copy short, when pausing the writer could not start the WAL over."""
        async with self._readers:
            for _ in range(CATCH_UP_PASSES):
                started = time.perf_counter()
                frames, copied = await _checkpoint(self._connection)
                if copied == frames and time.perf_counter() - started < QUICK_SECONDS:
                    break
            if copied < frames:
                return  # a reader's snapshot is still in the way: the next checkpoint tries
            await self._restart()

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self._interval)
            if not self._enough.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._max_interval - self._interval):
                        await self._enough.wait()
            self._dirty.clear()
            self._enough.clear()
            self._events = 0
            try:
                frames, _ = await _checkpoint(self._connection)
                if frames >= self._restart_frames:
                    await self._start_over()
                if self._failing:
                    self._failing = False
                    logger.warning("WAL checkpoints work again")
            except StorageClosed:
                return  # the writer closed first: the store is closing
            except (sqlite3.Error, StorageError) as exc:
                # Once per failing streak (a full disk fails every one), on one line.
                if not self._failing:
                    logger.warning("WAL checkpoint failed, will retry: %s", exc)
                self._failing = True


async def _checkpoint(connection: aiosqlite.Connection) -> tuple[int, int]:
    """A PASSIVE checkpoint: the frames in the WAL, and how many of them are copied back."""
    rows = list(await connection.execute_fetchall(PASSIVE))
    return (int(rows[0][1]), int(rows[0][2])) if rows else (0, 0)


async def checkpoint_in_writer(connection: aiosqlite.Connection) -> tuple[int, int]:
    """Run by the writer between two of its transactions (no commit can come while it
    copies): with no reader on an older snapshot, every frame is then copied back and
    the writer's next transaction starts the WAL over."""
    return await _checkpoint(connection)
