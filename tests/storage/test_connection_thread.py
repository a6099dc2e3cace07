"""`run_in_thread` relies on aiosqlite's internals: these fail if they change."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import aiosqlite
import pytest

from storage.sqlite.connection_thread import run_in_thread


async def test_runs_on_the_connection_itself_in_its_thread(tmp_path: Path) -> None:
    connection = await aiosqlite.connect(tmp_path / "x.db")
    try:

        def work(raw: sqlite3.Connection) -> int:
            # A temporary table exists only on the connection that made it.
            raw.execute("CREATE TEMP TABLE marks (thread INTEGER)")
            raw.execute("INSERT INTO marks VALUES (?)", (threading.get_ident(),))
            return threading.get_ident()

        ran_in = await run_in_thread(connection, work)
        rows = list(await connection.execute_fetchall("SELECT thread FROM marks"))
        assert rows == [(ran_in,)]
        assert ran_in != threading.get_ident()
        assert await run_in_thread(connection, lambda _: threading.get_ident()) == ran_in
    finally:
        await connection.close()


async def test_what_the_work_raises_reaches_the_caller(tmp_path: Path) -> None:
    connection = await aiosqlite.connect(tmp_path / "x.db")
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await run_in_thread(connection, lambda raw: raw.execute("SELECT * FROM nowhere"))
        assert list(await connection.execute_fetchall("SELECT 1")) == [(1,)]
    finally:
        await connection.close()
    with pytest.raises(ValueError, match="connection"):
        await run_in_thread(connection, lambda raw: None)
