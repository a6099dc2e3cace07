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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3

import aiosqlite

logger = logging.getLogger(__name__)

GATHER_EVENTS = 100
"""Events appended that make a checkpoint due ``interval`` after the first commit."""


class Checkpointer:
    def __init__(
        self, connection: aiosqlite.Connection, *, interval: float = 0.5, max_interval: float = 5.0
    ) -> None:
        self._connection = connection
        self._interval = interval
        self._max_interval = max_interval
        self._dirty = asyncio.Event()
        self._enough = asyncio.Event()
        self._events = 0
        self._failing = False
        self._task: asyncio.Task[None] | None = None
        self.checkpoints = 0

    def start(self) -> None:
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
            await self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)")

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
                await self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self.checkpoints += 1
                if self._failing:
                    self._failing = False
                    logger.warning("WAL checkpoints work again")
            except sqlite3.Error as exc:
                # Once per failing streak (a full disk fails every one), on one line.
                if not self._failing:
                    logger.warning("WAL checkpoint failed, will retry: %s", exc)
                self._failing = True
