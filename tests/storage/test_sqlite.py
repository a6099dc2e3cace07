"""The conformance suite against the embedded SQLite backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.storage.conformance import StorageConformance


class TestSqliteStorage(StorageConformance):
    @pytest.fixture
    def storage_url(self, tmp_path: Path) -> str:
        return f"sqlite://{tmp_path / 'data'}"
