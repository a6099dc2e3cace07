"""The processes a benchmark runs beside itself: spawned Python processes driven through a
pipe (`Peer`), child commands logging to a file (`Subprocess`), py-spy recording one of
them (`Profiler`), and the local ports they listen on.

Importable as ``bench.processes`` once the repository root is on ``sys.path``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from bench.common import ROOT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


class Peer:
    """A spawned process and the pipe the orchestrator drives it through: ``target`` is
    called as ``target(*args, conn)`` and answers each command (a dict) with a dict."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process: BaseProcess = context.Process(target=target, args=(*args, child), daemon=True)
        self.process.start()
        child.close()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def send(self, command: dict[str, Any]) -> None:
        self.conn.send(command)

    def receive(self, timeout: float) -> dict[str, Any]:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"process {self.pid} did not answer within {timeout:.0f} s")
        answer: dict[str, Any] = self.conn.recv()
        return answer

    def ask(self, command: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        self.send(command)
        return self.receive(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """Send ``{"op": "stop"}``, then `join`."""
        if self.process.is_alive():
            try:
                self.send({"op": "stop"})
            except (BrokenPipeError, OSError):
                timeout = 0.0
        self.join(timeout)

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the process to end, kill it if it has not, and
        close the pipe."""
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class Subprocess:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**os.environ, **(env or {})},
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def problems(self) -> int:
        """Lines of its log that report an error or a traceback."""
        text = self.log.read_text(errors="replace")
        return sum(
            1 for line in text.splitlines() if line.startswith(("ERROR", "CRITICAL", "Traceback"))
        )


class Profiler:
    """py-spy recording a process until stopped, as raw collapsed stacks in ``output``
    (nothing at all when it is None). With ``gil``, only whichever thread holds the GIL
    is sampled (without it, py-spy's idle detection counts threads waiting in select,
    waitpid or a queue as busy)."""

    def __init__(self, output: Path | None, *, rate: int = 200, gil: bool = True) -> None:
        self.output = output
        self._rate = rate
        self._gil = gil
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, pid: int) -> None:
        if self.output is None:
            return
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [_py_spy(), "record", "--pid", str(pid), "--rate", str(self._rate), "--nonblocking",
             *(["--gil"] if self._gil else []), "--threads", "--format", "raw",
             "--output", str(self.output)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGINT)
            self._process.wait(60)
            self._process = None


def _py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else "py-spy"
