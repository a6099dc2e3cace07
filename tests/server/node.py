"""Run the Node clients in ``tests/js`` (JSON lines on stdout) from async tests.

Node and the packages of ``tests/js`` are requirements of the suite, not options:
``scripts/test`` installs the packages (``npm ci``) and the browser. When they are missing
the tests fail and say so; they never skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tests.server.running import REPOSITORY

JS = REPOSITORY / "tests" / "js"
Record = dict[str, Any]


def node_executable(*packages: str) -> str:
    """The ``node`` on PATH; fails the test when it or one of ``packages`` is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: these tests need Node 20+ and npm", pytrace=False)
    for package in packages:
        if not (JS / "node_modules" / package / "package.json").is_file():
            pytest.fail(
                f"{package} is not installed in tests/js: run scripts/test "
                "(or npm ci --prefix tests/js)",
                pytrace=False,
            )
    return node


class NodeScript:
    """One run of a ``tests/js`` script; read its records as they come."""

    def __init__(self, process: asyncio.subprocess.Process, script: str) -> None:
        self.process = process
        self.script = script
        self.records: list[Record] = []

    async def next_record(self, time_limit: float = 60) -> Record:
        """The next JSON line; fails with the script's stderr if it ends first."""
        assert self.process.stdout is not None
        async with asyncio.timeout(time_limit):
            line = await self.process.stdout.readline()
        if not line:
            await self.process.wait()
            pytest.fail(
                f"{self.script} exited ({self.process.returncode}) without saying more:\n"
                f"{await self._stderr()}\nrecords so far: {self.records}"
            )
        record: Record = orjson.loads(line)
        self.records.append(record)
        return record

    async def send(self, record: Record) -> None:
        """One JSON line on the script's stdin (scripts started with ``interactive=True``)."""
        assert self.process.stdin is not None, "start the script with interactive=True"
        self.process.stdin.write(orjson.dumps(record) + b"\n")
        await self.process.stdin.drain()

    async def finish(self, time_limit: float = 60) -> tuple[int, list[Record]]:
        """Every remaining record, then the exit code."""
        assert self.process.stdout is not None
        async with asyncio.timeout(time_limit):
            remaining = await self.process.stdout.read()
            code = await self.process.wait()
        self.records.extend(orjson.loads(line) for line in remaining.splitlines() if line)
        if code not in (0, 1, 2, 3):  # the scripts' own codes; anything else is a crash
            pytest.fail(f"{self.script} crashed ({code}):\n{await self._stderr()}")
        return code, self.records

    async def _stderr(self) -> str:
        assert self.process.stderr is not None
        return (await self.process.stderr.read()).decode(errors="replace")


@contextlib.asynccontextmanager
async def node_script(
    script: str, *arguments: str, needs: str, interactive: bool = False
) -> AsyncIterator[NodeScript]:
    """Start ``node tests/js/<script> <arguments>``; it is killed if still running at the
    end of the block. ``interactive`` gives it a stdin to `NodeScript.send` to."""
    node = node_executable(needs)
    process = await asyncio.create_subprocess_exec(
        node,
        str(JS / script),
        *arguments,
        cwd=JS,
        stdin=asyncio.subprocess.PIPE if interactive else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield NodeScript(process, script)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def of_type(records: list[Record], kind: str) -> list[Record]:
    return [record for record in records if record["type"] == kind]
