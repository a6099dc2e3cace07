"""The processes `bench/sessions.py` starts: ``threadline serve`` and the fake model
(`bench/sessions_model.py`), each a subprocess on a free port with its output in a log
file; and the ``PATH`` without pyenv's shims that ``--no-shims`` gives the server.

Importable as ``bench.sessions_server`` once the repository root is on ``sys.path``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx

from bench.common import ROOT
from bench.processes import Subprocess, free_port, wait_for_port


class ThreadlineServer(Subprocess):
    """``python -m server.cli serve`` on a free port over ``data_dir``."""

    def __init__(self, data_dir: Path, env: dict[str, str], timeout: float = 60.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "server.cli", "serve",
                "--port", str(self.port), "--data-dir", str(data_dir)]  # fmt: skip
        # One client drives a thousand conversations: no rate limit.
        env = {"THREADLINE_RATE_LIMIT": "none", **env}
        super().__init__(argv, data_dir.parent / f"{data_dir.name}.log", env)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not come up:\n{self.log.read_text()}")
            time.sleep(0.05)


class FakeModel(Subprocess):
    """`bench/sessions_model.py` on a free port."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        script = ROOT / "bench" / "sessions_model.py"
        super().__init__([sys.executable, str(script), "--port", str(self.port)], log)
        wait_for_port(self.port)

    def stats(self) -> dict[str, dict[str, float]]:
        answer: dict[str, dict[str, float]] = httpx.get(
            f"http://127.0.0.1:{self.port}/stats", timeout=10
        ).json()
        return answer


def path_without_shims() -> str:
    """``PATH`` without pyenv's shim directories (a shim is a bash script that runs
    ``pyenv exec``: ~50 ms per ``python3`` instead of ~10)."""
    kept = [part for part in os.environ.get("PATH", "").split(":") if "/shims" not in part]
    return ":".join(kept)
