"""`LocalRuntime`: a conversation's actions run as local processes in its workspace
directory.

Each command runs in its own process group (see `runtime.process`); groups that outlive
their command (background jobs) are killed when the runtime closes. File actions are
confined to the workspace.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import signal
import socket
from pathlib import Path

from events import (
    ActionBase,
    CmdRunAction,
    FileEditAction,
    FileReadAction,
    FileWriteAction,
    ObservationBase,
)
from runtime import files
from runtime.commands import CommandResult, Foreground
from runtime.errors import RuntimeFailure
from runtime.observe import attend
from runtime.process import LocalProcess, signal_group
from runtime.protocol import CommandLimits, StatusCallback
from runtime.repository import prepare_checkout, setup_script_path

_USER = getpass.getuser()
_HOST = socket.gethostname()


class LocalRuntime:
    def __init__(self, workspace: Path, limits: CommandLimits | None = None) -> None:
        self.workspace = workspace
        self.limits = limits or CommandLimits()
        self._foreground: Foreground | None = None
        self._groups: set[int] = set()
        self._closed = False

    async def start(
        self,
        *,
        repository: str | None = None,
        branch: str | None = None,
        setup_script: str | None = None,
        on_status: StatusCallback | None = None,
    ) -> None:
        status = on_status or _ignore
        await prepare_checkout(self.workspace, repository=repository, branch=branch, status=status)
        script = setup_script_path(self.workspace, setup_script)
        if script is not None:
            await status(f"running the setup script {script}")
            result = await self._command(f"sh {script}")
            if result.exit_code != 0:
                raise RuntimeFailure(
                    f"the setup script {script} failed (exit {result.exit_code}): "
                    f"{result.output.strip()[-500:]}"
                )
        await status(f"workspace ready at {self.workspace}")

    async def run(self, action: ActionBase) -> ObservationBase:
        if self._closed:
            return files.error("the runtime is closed", "RUNTIME_CLOSED")
        match action:
            case CmdRunAction():
                return await attend(self, action)
            case FileReadAction():
                return await asyncio.to_thread(files.read_file, self.workspace, action)
            case FileWriteAction():
                return await asyncio.to_thread(files.write_file, self.workspace, action)
            case FileEditAction():
                return await asyncio.to_thread(files.edit_file, self.workspace, action)
        return files.error(
            f"the local runtime cannot run {action.kind} actions", "UNSUPPORTED_ACTION"
        )

    async def close(self) -> None:
        self._closed = True
        if self._foreground is not None:
            await self._foreground.abandon()
            self._foreground = None
        for group in self._groups:
            signal_group(group, signal.SIGKILL)
        self._groups.clear()

    # -- what `runtime.observe.attend` uses -----------------------------------------

    user = _USER
    host = _HOST

    @property
    def foreground(self) -> Foreground | None:
        return self._foreground

    @foreground.setter
    def foreground(self, value: Foreground | None) -> None:
        self._foreground = value

    def working_dir(self, cwd: str | None) -> Path:
        """Raises `files.PathEscapes`."""
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

    async def _command(self, command: str) -> CommandResult:
        foreground = await self.launch(command, self.workspace)
        try:
            return await foreground.collect(time_limit=self.limits.timeout, no_change_timeout=None)
        finally:
            self.ended(foreground)


async def _ignore(_: str) -> None:
    return None
