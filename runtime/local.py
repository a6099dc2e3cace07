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
    CmdOutputObservation,
    CmdRunAction,
    FileEditAction,
    FileReadAction,
    FileWriteAction,
    ObservationBase,
)
from events.observations import CmdOutputExtras, CmdOutputMetadata
from runtime import files
from runtime.process import run_command, signal_group
from runtime.protocol import CommandLimits, StatusCallback


class LocalRuntime:
    def __init__(self, workspace: Path, limits: CommandLimits | None = None) -> None:
        self.workspace = workspace
        self.limits = limits or CommandLimits()
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
        await asyncio.to_thread(self.workspace.mkdir, parents=True, exist_ok=True)
        if on_status is not None:
            await on_status(f"workspace ready at {self.workspace}")

    async def run(self, action: ActionBase) -> ObservationBase:
        if self._closed:
            return files.error("the runtime is closed", "RUNTIME_CLOSED")
        match action:
            case CmdRunAction():
                return await self._run_command(action)
            case FileReadAction():
                return await asyncio.to_thread(files.read_file, self.workspace, action)
            case FileWriteAction():
                return await asyncio.to_thread(files.write_file, self.workspace, action)
            case FileEditAction():
                return await asyncio.to_thread(files.edit_file, self.workspace, action)
            case _:
                return files.error(
                    f"the local runtime cannot run {action.kind} actions", "UNSUPPORTED_ACTION"
                )

    async def close(self) -> None:
        self._closed = True
        for group in self._groups:
            signal_group(group, signal.SIGKILL)
        self._groups.clear()

    async def _run_command(self, action: CmdRunAction) -> ObservationBase:
        timeout = action.timeout or self.limits.timeout
        cwd = self.workspace
        if action.args.cwd:
            try:
                cwd = files.confine(self.workspace, action.args.cwd)
            except files.PathEscapes as exc:
                return files.error(str(exc), "PATH_OUTSIDE_WORKSPACE")
        result = await run_command(
            action.args.command,
            cwd=cwd,
            time_limit=timeout,
            output_limit=self.limits.output_limit,
            env={**os.environ, "PWD": str(cwd)},
        )
        # Background children outlive the command; remember their group to kill at close.
        self._groups = {group for group in self._groups if signal_group(group, 0)}
        if not result.timed_out and signal_group(result.pid, 0):
            self._groups.add(result.pid)
        suffix = (
            f"\n[Command timed out after {timeout:g} seconds; its process group was killed.]"
            if result.timed_out
            else f"\n[The command completed with exit code {result.exit_code}.]"
        )
        return CmdOutputObservation(
            content=result.output,
            extras=CmdOutputExtras(
                command=action.args.command,
                hidden=action.args.hidden,
                metadata=CmdOutputMetadata(
                    exit_code=result.exit_code,
                    pid=result.pid,
                    username=_USER,
                    hostname=_HOST,
                    working_dir=str(cwd),
                    suffix=suffix,
                ),
            ),
        )


_USER = getpass.getuser()
_HOST = socket.gethostname()
