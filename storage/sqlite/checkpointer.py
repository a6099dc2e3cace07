"""WAL checkpoints on their own connection and thread.

SQLite normally checkpoints inside whichever commit crosses the threshold, which puts a
10-20 ms stall on that append. The log writer turns that off; this task copies the WAL
back into the database file (``PASSIVE``: it never blocks the writer or readers) a
moment after commits, so the WAL stays small without any append paying for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3

import aiosqlite

logger = logging.getLogger(__name__)


class Checkpointer:
    def __init__(self, connection: aiosqlite.Connection, *, interval: float = 0.5) -> None:
        self._connection = connection
        self._interval = interval
        self._dirty = asyncio.Event()
        self._failing = False
        self._task: asyncio.Task[None] | None = None
        self.checkpoints = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="threadline-checkpointer")

    def committed(self) -> None:
        """New frames are in the WAL."""
        self._dirty.set()

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
            self._dirty.clear()
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
