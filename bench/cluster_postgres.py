"""PostgreSQL for the cluster benchmark: a fresh database per case (created, then dropped
with whatever connections are left), and the CPU time of the PostgreSQL server's
processes.

The server is the one `scripts/services` starts; ``THREADLINE_TEST_POSTGRES`` names
another (any database on it: the benchmark only creates and drops its own there).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.machine import cpu_seconds

ADMIN_URL = os.environ.get(
    "THREADLINE_TEST_POSTGRES", "postgresql://postgres:postgres@127.0.0.1:5432/threadline_test"
)


def database_url(name: str) -> str:
    """`ADMIN_URL` with its database replaced by ``name``."""
    parts = urlsplit(ADMIN_URL)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty database (``bench_<random>``) for one case: its URL; dropped after,
    its connections closed by force."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f"CREATE DATABASE {name}"))
    try:
        yield database_url(name)
    finally:
        asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def postgres_pids() -> set[int]:
    """The PostgreSQL server's processes (postmaster, backends, background workers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    found.add(int(entry.name))
    return found


def postgres_cpu(pids: set[int]) -> dict[int, float]:
    """CPU seconds of each of ``pids`` still alive."""
    seconds = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            seconds[pid] = cpu_seconds(pid)
    return seconds


def postgres_cpu_since(before: dict[int, float]) -> float:
    """CPU seconds PostgreSQL spent since ``before`` (`postgres_cpu` of `postgres_pids`):
    processes alive at both ends, and all of any that started since."""
    now = postgres_cpu(postgres_pids())
    return sum(value - before.get(pid, 0.0) for pid, value in now.items())


def server_version() -> str:
    """The PostgreSQL server's version, e.g. ``15.8``."""

    async def ask() -> str:
        connection = await asyncpg.connect(ADMIN_URL)
        try:
            return str(await connection.fetchval("SHOW server_version"))
        finally:
            await connection.close()

    return asyncio.run(ask())
