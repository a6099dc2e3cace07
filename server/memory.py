"""`MemoryReclaimer`: hands memory back after a crowd of streams has left.

With the collector's full passes made rare (see `server.app.GC_THRESHOLDS`), the
garbage of a thousand closed connections can wait a long time, and what is freed stays
in the allocator's heap. When the number of open streams has fallen to half of its
recent peak and nothing has opened for a while (a storm is over), one full collection
and glibc's ``malloc_trim`` return it to the system: a pause when the server is quiet
rather than in the middle of the crowd.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import time
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

CHECK_SECONDS = 5.0
QUIET_SECONDS = 5.0
MIN_PEAK = 100
"""Below this many streams there is nothing worth a pause to reclaim."""


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
        return trim
    except (OSError, AttributeError):  # not glibc
        return None


class MemoryReclaimer:
    def __init__(
        self,
        open_streams: Callable[[], int],
        *,
        clock: Callable[[], float] = time.monotonic,
        collect: Callable[[], object] = gc.collect,
        forget: Sequence[Callable[[], object]] = (),
    ) -> None:
        self._open_streams = open_streams
        self._forget = forget
        self._clock = clock
        self._collect = collect
        self._trim = _malloc_trim()
        self._peak = 0
        self._last_count = 0
        self._last_rise = clock()
        self._task: asyncio.Task[None] | None = None
        self.reclaimed = 0
        """How many times it has collected."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="memory-reclaimer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def check(self) -> bool:
        """Collect if a crowd has left; True when it did."""
        count, now = self._open_streams(), self._clock()
        if count > self._last_count:
            self._last_rise = now
        self._last_count = count
        self._peak = max(self._peak, count)
        if self._peak < MIN_PEAK or count > self._peak // 2:
            return False
        if now - self._last_rise < QUIET_SECONDS:
            return False
        started = time.perf_counter()
        for forget in self._forget:
            forget()
        self._collect()
        if self._trim is not None:
            self._trim(0)
        self._peak = count
        self.reclaimed += 1
        logger.info(
            "reclaimed memory after streams fell to %d (%.0f ms)",
            count,
            (time.perf_counter() - started) * 1000,
        )
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            self.check()
