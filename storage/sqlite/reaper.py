"""Removing a deleted conversation's events, a chunk at a time.

Deleting a conversation removes its record in one transaction and leaves its key in
``doomed_conversations``: every read finds a conversation through its record, so it is
gone for readers at once. Its events go afterwards, `CHUNK` rows per writer transaction
(each copying the rows' text to ``search_purges`` for the full-text index), queued
behind whatever appends wait, so no append waits for more than one chunk. A key leaves
``doomed_conversations`` with its last rows; after a crash or restart the work resumes
where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import aiosqlite

from storage.errors import StorageClosed
from storage.sqlite.writer import LogWriter

logger = logging.getLogger(__name__)

CHUNK = 250
"""Events removed per transaction: a few ms of the writer's time (bench/storage.py (f))."""

PURGE_CHUNK = (
    "INSERT INTO search_purges (seq, text, conv) "
    "SELECT seq, text, conv FROM events WHERE conv = ? AND id <= ?"
)
DELETE_CHUNK = "DELETE FROM events WHERE conv = ? AND id <= ?"


class Reaper:
    def __init__(
        self, writer: LogWriter, on_removed: Callable[[], None], *, chunk: int = CHUNK
    ) -> None:
        self._writer = writer
        self._on_removed = on_removed
        self._chunk = chunk
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="threadline-reaper")
        self.wake()

    def wake(self) -> None:
        """A conversation was deleted (or the store opened with some still doomed)."""
        self._idle.clear()
        self._wake.set()

    async def wait_idle(self) -> None:
        """Return once every deleted conversation's events are gone from the log."""
        await self._idle.wait()

    async def close(self) -> None:
        """Stop between chunks; the rest resumes when the store opens again."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        failing = False
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            try:
                while await self._writer.call(self._remove_chunk, self._on_removed):
                    pass
                failing = False
                if not self._wake.is_set():
                    self._idle.set()
            except StorageClosed:
                return
            except Exception as exc:
                # Once per failing streak (a full disk fails every retry), on one line.
                if not failing:
                    logger.warning("removing deleted events failed, retrying: %s", exc)
                failing = True
                await asyncio.sleep(1.0)
                self._wake.set()

    async def _remove_chunk(self, connection: aiosqlite.Connection) -> bool:
        """Remove up to `CHUNK` events of one doomed conversation; False when none is
        left to remove."""
        rows = list(
            await connection.execute_fetchall("SELECT key FROM doomed_conversations LIMIT 1")
        )
        if not rows:
            return False
        (key,) = rows[0]
        bound = list(
            await connection.execute_fetchall(
                "SELECT id FROM events WHERE conv = ? ORDER BY id LIMIT 1 OFFSET ?",
                (key, self._chunk - 1),
            )
        )
        last = bound[0][0] if bound else None
        if last is None:
            # The rest fits in one chunk: the conversation leaves the queue with it.
            (last,) = next(
                iter(
                    await connection.execute_fetchall(
                        "SELECT coalesce(max(id), -1) FROM events WHERE conv = ?", (key,)
                    )
                )
            )
            await connection.execute("DELETE FROM doomed_conversations WHERE key = ?", (key,))
        await connection.execute(PURGE_CHUNK, (key, last))
        await connection.execute(DELETE_CHUNK, (key, last))
        return True
