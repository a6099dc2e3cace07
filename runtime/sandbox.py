"""What both runtimes share: starting (checkout, boot, setup script) and running
actions (commands by `runtime.observe`, files by `runtime.files`).

A backend subclasses `Sandbox` and provides the booting and the command launching; the
protocol-facing behaviour lives here once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

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
from runtime.protocol import CommandLimits, StatusCallback
from runtime.repository import prepare_checkout, setup_script_path

FileAction = TypeVar("FileAction", FileReadAction, FileWriteAction, FileEditAction)


class Sandbox:
    """Base of `LocalRuntime` and `DockerRuntime`; see `runtime.protocol.Runtime`."""

    kind = "sandbox"
    user = "root"

    def __init__(self, workspace: Path, limits: CommandLimits | None = None) -> None:
        self.workspace = workspace
        self.limits = limits or CommandLimits()
        self.foreground: Foreground | None = None
        self.closed = False

    @property
    def host(self) -> str:
        return "localhost"

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
        await self.boot(status)
        script = setup_script_path(self.workspace, setup_script)
        if script is not None:
            await status(f"running the setup script {script}")
            foreground = await self.launch(f"sh {script}", self.working_dir(None))
            result: CommandResult = await foreground.collect(
                time_limit=self.limits.timeout, no_change_timeout=None
            )
            self.ended(foreground)
            if result.exit_code != 0:
                raise RuntimeFailure(
                    f"the setup script {script} failed (exit {result.exit_code}): "
                    f"{result.output.strip()[-500:]}"
                )
        await status(self.ready_message())

    async def run(self, action: ActionBase) -> ObservationBase:
        if self.closed:
            return files.error("the runtime is closed", "RUNTIME_CLOSED")
        match action:
            case CmdRunAction():
                return await attend(self, action)
            case FileReadAction():
                return await asyncio.to_thread(
                    files.read_file, self.workspace, self.on_host(action)
                )
            case FileWriteAction():
                return await asyncio.to_thread(
                    files.write_file, self.workspace, self.on_host(action)
                )
            case FileEditAction():
                return await asyncio.to_thread(
                    files.edit_file, self.workspace, self.on_host(action)
                )
        return files.error(
            f"the {self.kind} runtime cannot run {action.kind} actions", "UNSUPPORTED_ACTION"
        )

    async def close(self) -> None:
        self.closed = True
        if self.foreground is not None:
            await self.foreground.abandon()
            self.foreground = None

    async def _files(
        self, operation: Callable[[Path, FileAction], ObservationBase], action: FileAction
    ) -> ObservationBase:
        return await asyncio.to_thread(operation, self.workspace, action)

    # -- what a backend provides ----------------------------------------------------

    async def boot(self, status: StatusCallback) -> None:
        """Bring the sandbox up once the workspace is checked out."""

    def ready_message(self) -> str:
        return f"workspace ready at {self.workspace}"

    def on_host(self, action: FileAction) -> FileAction:
        """The file action with its path as seen in the host's workspace."""
        return action

    def working_dir(self, cwd: str | None) -> Path:
        """Where a command runs. Raises `files.PathEscapes`."""
        raise NotImplementedError

    async def launch(self, command: str, cwd: Path) -> Foreground:
        raise NotImplementedError

    def ended(self, foreground: Foreground) -> None:
        """A command exited normally."""


async def _ignore(_: str) -> None:
    return None
