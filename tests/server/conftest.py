"""Fixtures for tests against a real server process."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.server.running import ACCEPT_LOCAL_WITH_KEYS, RunningServer

FAST = {"THREADLINE_DEMO_PACE": "0.02"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server per test module (single-user: no API keys); a brisk demo agent."""
    running = RunningServer(tmp_path_factory.mktemp("server"), env=FAST).start()
    yield running
    running.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server of the test's own, for tests that restart or reconfigure it (some turn
    API keys on: the operator accepts the local runtime with them)."""
    running = RunningServer(tmp_path / "server", env={**FAST, **ACCEPT_LOCAL_WITH_KEYS})
    yield running
    if running.process is not None:
        running.stop()


@pytest_asyncio.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        yield http


@pytest.fixture
def bare_repository_with_slow_setup(tmp_path: Path) -> Path:
    """A local bare repository whose setup script takes longer than a second."""
    source = tmp_path / "slow-source"
    (source / ".openhands").mkdir(parents=True)
    (source / ".openhands" / "setup.sh").write_text("sleep 30\n")
    for command in (
        ["git", "init", "--quiet", "--initial-branch=main"],
        ["git", "add", "."],
        [
            "git",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "user.name=t",
            "commit",
            "--quiet",
            "-m",
            "slow",
        ],
    ):
        subprocess.run(command, cwd=source, check=True, capture_output=True)
    bare = tmp_path / "slow.git"
    subprocess.run(
        ["git", "clone", "--quiet", "--bare", str(source), str(bare)],
        check=True,
        capture_output=True,
    )
    return bare
