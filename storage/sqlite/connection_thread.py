"""Running a function in an aiosqlite connection's own thread, in one round trip.

aiosqlite sends every call (``executemany``, ``commit``, ...) to the connection's thread
and back. A log batch's write and its commit were two round trips, and at a trickle of
appends (one at a time, 50 ms apart) each round trip wakes two sleeping threads, the
connection's and then the event loop's: the largest fixed cost of a lone append after
the search index (issue 13). aiosqlite has no public call for "run this in your
thread", so this module is the one place that uses its internals
(``Connection._execute``, ``Connection._conn``); tests/storage/test_connection_thread.py
fails if they change underneath.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar, cast

import aiosqlite

T = TypeVar("T")


async def run_in_thread(
    connection: aiosqlite.Connection, work: Callable[[sqlite3.Connection], T]
) -> T:
    """``work(sqlite3_connection)`` in ``connection``'s thread, in order with the calls
    queued before it; its result, or what it raised. Raises ValueError once the
    connection is closed."""
    return cast(T, await connection._execute(work, connection._conn))
