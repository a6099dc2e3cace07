"""The runtime conformance suite against `LocalRuntime`."""

from __future__ import annotations

import pytest

from runtime import LocalRuntime
from tests.runtime.conformance import Make, RuntimeConformance


class TestLocalRuntime(RuntimeConformance):
    @pytest.fixture
    def make(self) -> Make:
        return LocalRuntime
