"""A server under fuzzing: a real `threadline serve`, its log and its memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.server.rawhttp import memory_kib
from tests.server.running import ACCEPT_LOCAL_WITH_KEYS, REPOSITORY, RunningServer

TRACEBACK = "Traceback (most recent call last)"
ENVIRONMENT = {
    "THREADLINE_DEMO_PACE": "0.01",
    "THREADLINE_COMMAND_TIMEOUT": "5",
    # The fuzzer is one client at full speed: rate limits would hide everything else.
    "THREADLINE_RATE_LIMIT": "none",
    **ACCEPT_LOCAL_WITH_KEYS,
}


class Target:
    max_message_bytes = 1 << 20
    """The server's default THREADLINE_MAX_MESSAGE_BYTES (Engine.IO packets included)."""

    def __init__(self, name: str, data_dir: Path, *, keyed: bool) -> None:
        self.name = name
        self.key: str | None = None
        if keyed:
            data_dir.mkdir(parents=True, exist_ok=True)
            self.key = create_key(data_dir, "fuzz")
        self.server = RunningServer(data_dir, env=dict(ENVIRONMENT), log_level="info").start()
        self._seen = 0

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Session-API-Key": self.key} if self.key else {}

    def total_tracebacks(self) -> int:
        return self.server.log.read_text(errors="replace").count(TRACEBACK)

    def new_tracebacks(self) -> int:
        """Tracebacks logged since the last call."""
        total = self.server.log.read_text(errors="replace").count(TRACEBACK)
        new, self._seen = total - self._seen, total
        return new

    def alive(self) -> bool:
        return self.server.process is not None and self.server.process.poll() is None

    def peak_rss_kib(self) -> int:
        assert self.server.process is not None
        return memory_kib(self.server.process.pid)["VmHWM"]

    def stop(self) -> None:
        self.server.stop()


def create_key(data_dir: Path, user: str) -> str:
    """``threadline keys --data-dir X create --user U``, before the server starts."""
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "keys", "--data-dir", str(data_dir),
         "create", "--user", user],
        cwd=REPOSITORY, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout.strip()
