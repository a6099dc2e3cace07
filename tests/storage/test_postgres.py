"""The conformance suite against PostgreSQL (a real server: `scripts/services` starts
one; `THREADLINE_TEST_POSTGRES` names another). Each test gets a schema of its own."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from tests.storage.conformance import StorageConformance

POSTGRES = os.environ.get(
    "THREADLINE_TEST_POSTGRES", "postgresql://postgres:postgres@127.0.0.1:5432/threadline_test"
)


async def _drop(schema: str) -> None:
    connection = await asyncpg.connect(POSTGRES)
    try:
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await connection.close()


class TestPostgresStorage(StorageConformance):
    @pytest.fixture
    def storage_url(self) -> Iterator[str]:
        schema = "t_" + uuid.uuid4().hex[:16]
        yield f"{POSTGRES}?schema={schema}"
        asyncio.run(_drop(schema))
