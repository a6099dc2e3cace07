"""One read shared by every caller that needs it at the same time.

Callers await it through `asyncio.shield`, so one caller giving up (a client leaving)
never cancels the read the others wait on; and if all of them have given up by the time
it fails, its failure is retrieved here rather than logged as never retrieved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def shared_read(read: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """Start ``read`` once, for callers to await with `asyncio.shield`."""
    future = asyncio.ensure_future(read)
    future.add_done_callback(_retrieve)
    return future


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
