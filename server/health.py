"""Readiness: may this server take work now? Each check says what is wrong in words."""

from __future__ import annotations

import asyncio
from typing import Any

from events import ThreadlineError
from server.runtimes import runtime_problem

READY_INDEX_LAG = 1000
"""Events the full-text index may trail the log by and still count as caught up."""
CHECK_SECONDS = 5.0


async def readiness(state: Any) -> dict[str, str | None]:
    """``{check: problem or None}`` for storage (writable), search index (caught up),
    runtime (a sandbox could start)."""
    if not hasattr(state, "service") or getattr(state, "shut_down", False):
        return {"server": "the server is starting or shutting down"}
    storage_problem, runtime = await asyncio.gather(
        _storage_problem(state), _runtime_problem(state)
    )
    lag = state.storage.index_lag()
    index_problem = (
        f"the search index trails the log by {lag} events" if lag > READY_INDEX_LAG else None
    )
    return {"storage": storage_problem, "search_index": index_problem, "runtime": runtime}


async def _storage_problem(state: Any) -> str | None:
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            await state.storage.check_writable()
    except TimeoutError:
        return f"a write did not get through in {CHECK_SECONDS:g} s"
    except ThreadlineError as exc:
        return str(exc) or type(exc).__name__
    return None


async def _runtime_problem(state: Any) -> str | None:
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            return await runtime_problem(state.settings)
    except TimeoutError:
        return f"the runtime did not answer in {CHECK_SECONDS:g} s"
