"""A real threadline server in a subprocess (``python -m server.cli serve``) on a free
port, over a temporary data directory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.reachable import reachable

REPOSITORY = Path(__file__).resolve().parents[2]
ACCEPT_LOCAL_WITH_KEYS = {"THREADLINE_ALLOW_LOCAL_RUNTIME_WITH_KEYS": "1"}
"""The operator's opt-in to the local runtime while API keys are on (tests with keys)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RunningServer:
    def __init__(
        self, data_dir: Path, *, env: dict[str, str] | None = None, log_level: str = "warning"
    ) -> None:
        self.data_dir = data_dir
        self.env = dict(env or {})  # a copy: a test may add to it without touching others
        self.log_level = log_level
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> RunningServer:
        # Generous: a server that is up answers at once, and a machine shared with
        # other work has taken over 20 s to start one.
        reachable(self.data_dir)  # sandboxed commands walk down to their workspaces
        environment = {
            **os.environ,
            "THREADLINE_COMMAND_TIMEOUT": "20",
            # The tests' local bare repositories live in their temporary directories.
            "THREADLINE_REPOSITORY_ROOTS": str(self.data_dir.parent),
            **self.env,
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "server.cli", "serve",
                    "--port", str(self.port), "--data-dir", str(self.data_dir),
                    "--log-level", self.log_level,
                ],
                cwd=REPOSITORY, env=environment, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not come up:\n{self.log.read_text()}")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Stop the server (SIGTERM: graceful); returns its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise RuntimeError(
                    f"server ignored signal {signum}:\n{self.log.read_text()}"
                ) from None
        return self.process.returncode

    def restart(self) -> RunningServer:
        self.stop()
        return self.start()
