"""`LocalRuntime`: a conversation's actions run as local processes in its workspace
directory.

Each command runs in its own process group (see `runtime.process`); groups that outlive
their command (background jobs) are killed when the runtime closes.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import signal
import socket
from pathlib import Path

from runtime import files
from runtime.commands import Foreground
from runtime.process import LocalProcess, signal_group
from runtime.protocol import CommandLimits, StatusCallback
from runtime.sandbox import Sandbox

_USER = getpass.getuser()
_HOST = socket.gethostname()


class LocalRuntime(Sandbox):
    kind = "local"
    user = _USER

    def __init__(self, workspace: Path, limits: CommandLimits | None = None) -> None:
        super().__init__(workspace, limits)
        self._groups: set[int] = set()

    @property
    def host(self) -> str:
        return _HOST

    async def boot(self, status: StatusCallback) -> None:
        await asyncio.to_thread(self.workspace.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        await super().close()
        for group in self._groups:
            signal_group(group, signal.SIGKILL)
        self._groups.clear()

    def working_dir(self, cwd: str | None) -> Path:
        return files.confine(self.workspace, cwd) if cwd else self.workspace

    async def launch(self, command: str, cwd: Path) -> Foreground:
        process = await LocalProcess.spawn(command, cwd=cwd, env={**os.environ, "PWD": str(cwd)})
        return Foreground(command, process, self.limits.output_limit)

    def ended(self, foreground: Foreground) -> None:
        """A command exited; its group lives on if it left background children."""
        self._groups = {group for group in self._groups if signal_group(group, 0)}
        process = foreground.process
        if isinstance(process, LocalProcess) and process.group_alive():
            self._groups.add(process.pid)
