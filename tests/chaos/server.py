"""The server under test: `RunningServer` (``python -m server.cli serve``) with what chaos
needs beside it: kill -9, SIGTERM with the time it took to exit, its log outside the
data directory (which may be a tiny tmpfs), and its memory sampled from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from pathlib import Path

from bench.common import MIB
from bench.machine import rss_bytes
from tests.server.running import RunningServer

LOAD = {"THREADLINE_RATE_LIMIT": "none"}
"""Chaos drives a server as hard as it can from one address: no REST rate limit."""


class ChaosServer(RunningServer):
    def __init__(self, data_dir: Path, log: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, env=env, log_level="warning")
        self.log = log
        self.starts = 0

    def start(self, timeout: float = 30.0) -> ChaosServer:
        self.env = {**LOAD, **self.env}  # whatever a scenario set it to since
        self.log.parent.mkdir(parents=True, exist_ok=True)
        super().start(timeout)
        self.starts += 1
        return self

    @property
    def pid(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.pid is not None

    def kill(self) -> None:
        """kill -9, and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def terminate(self, grace: float) -> tuple[float, int | None]:
        """SIGTERM; (seconds until it exited, its exit code). A server still running after
        ``grace`` seconds is killed and reported with code None."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()
            code = None
        return time.monotonic() - started, code

    def shut(self) -> None:
        """Stop it whatever state it is in (cleanup: never raises)."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(RuntimeError):
            self.stop(timeout=15)
        self.kill()

    def rss_mib(self) -> float | None:
        pid = self.pid
        if pid is None:
            return None
        try:
            return rss_bytes(pid) / MIB
        except (OSError, RuntimeError):
            return None

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def problems(self) -> int:
        """Errors and tracebacks in its log so far."""
        return sum(
            1 for line in self.log_lines(0) if line.startswith(("ERROR", "CRITICAL", "Traceback"))
        )

    def log_lines(self, start: int, end: int | None = None) -> list[str]:
        """The non-empty lines the server logged between two `log_size` offsets."""
        with self.log.open("rb") as file:
            file.seek(start)
            data = file.read() if end is None else file.read(max(0, end - start))
        return [line for line in data.decode(errors="replace").splitlines() if line]


class RssSampler:
    """Samples the server's RSS every ``interval`` s (whichever process is current, across
    restarts); `mark()` starts a new window so a phase can have its own peak."""

    def __init__(self, server: ChaosServer, interval: float = 0.1) -> None:
        self.server = server
        self.interval = interval
        self.peak = 0.0
        self.window_peak = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> RssSampler:
        self._task = asyncio.create_task(self._sample())
        return self

    def mark(self) -> None:
        self.window_peak = self.server.rss_mib() or 0.0

    def sample(self) -> float | None:
        value = self.server.rss_mib()
        if value is not None:
            self.peak = max(self.peak, value)
            self.window_peak = max(self.window_peak, value)
        return value

    async def _sample(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def settle(server: ChaosServer, seconds: float) -> float:
    """Wait ``seconds``, then the server's RSS (MiB; nan when it is gone)."""
    await asyncio.sleep(seconds)
    value = server.rss_mib()
    return float("nan") if value is None else value
