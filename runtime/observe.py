"""What a `CmdRunAction` does in any runtime, and the observation it produces.

- A new command starts in the foreground and is attended until it exits, until it has
  printed nothing new for the no-change timeout (it keeps running), or until the time
  limit kills its process group.
- While a command is in the foreground, an action with ``is_input`` talks to it: an
  empty command waits for more output, ``C-c`` interrupts it, other text is typed into
  its input. A new command is refused with an error observation until then.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Protocol

from events import CmdOutputObservation, CmdRunAction, ObservationBase
from events.observations import CmdOutputExtras, CmdOutputMetadata
from runtime import files
from runtime.commands import CommandResult, Foreground
from runtime.protocol import CommandLimits

INTERRUPT = "C-c"


class CommandHost(Protocol):
    limits: CommandLimits
    foreground: Foreground | None

    @property
    def user(self) -> str: ...

    @property
    def host(self) -> str: ...

    def working_dir(self, cwd: str | None) -> Path: ...

    async def launch(self, command: str, cwd: Path) -> Foreground: ...

    def ended(self, foreground: Foreground) -> None: ...


async def attend(host: CommandHost, action: CmdRunAction) -> ObservationBase:
    text = action.args.command
    # An action may ask for less time than the operator's limit, never more.
    time_limit = min(action.timeout, host.limits.timeout) if action.timeout else host.limits.timeout
    foreground = host.foreground
    if foreground is not None and not foreground.finished:
        if not (action.args.is_input or text == ""):
            return files.error(
                f"`{foreground.command}` is still running. Send an empty command with "
                f"is_input to wait for it, {INTERRUPT!r} to interrupt it, or text with "
                "is_input to type into it.",
                "COMMAND_STILL_RUNNING",
            )
        if text.strip() == INTERRUPT:
            await foreground.kill()
        elif text:
            try:
                await foreground.send(text + "\n")
            except (BrokenPipeError, ConnectionError) as exc:
                return files.error(
                    f"cannot type into `{foreground.command}`: {exc}", "INPUT_CLOSED"
                )
        cwd = None
    else:
        if action.args.is_input:
            return files.error("no command is running to send input to", "NO_RUNNING_COMMAND")
        if not text.strip():
            return files.error("the command is empty", "EMPTY_COMMAND")
        try:
            cwd = host.working_dir(action.args.cwd)
        except files.PathEscapes as exc:
            return files.error(str(exc), "PATH_OUTSIDE_WORKSPACE")
        foreground = await _launch(host, text, cwd)
        host.foreground = foreground
    try:
        result = await foreground.collect(
            time_limit=time_limit, no_change_timeout=host.limits.no_change_timeout
        )
    except asyncio.CancelledError:
        host.foreground = None
        await foreground.abandon()
        raise
    if not result.running:
        host.ended(foreground)
        host.foreground = None
    return _observation(host, action, foreground.command, cwd, result, time_limit)


async def _launch(host: CommandHost, command: str, cwd: Path) -> Foreground:
    """Start the command; a cancellation meanwhile lets the start finish, then kills it,
    so a command can never be left running unattended."""
    launching = asyncio.ensure_future(host.launch(command, cwd))
    try:
        return await asyncio.shield(launching)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await (await launching).abandon()
        raise


def _observation(
    host: CommandHost,
    action: CmdRunAction,
    command: str,
    cwd: Path | None,
    result: CommandResult,
    time_limit: float,
) -> CmdOutputObservation:
    if result.running:
        suffix = (
            f"\n[The command has no new output after {host.limits.no_change_timeout:g} seconds. "
            f"It is still running: send an empty command with is_input to wait longer, "
            f"{INTERRUPT!r} to interrupt it, or text with is_input to type into it.]"
        )
    elif result.timed_out:
        suffix = (
            f"\n[The command timed out after {time_limit:g} seconds; its process group was killed.]"
        )
    else:
        suffix = f"\n[The command completed with exit code {result.exit_code}.]"
    return CmdOutputObservation(
        content=result.output,
        extras=CmdOutputExtras(
            command=command if not action.args.is_input else action.args.command,
            hidden=action.args.hidden,
            metadata=CmdOutputMetadata(
                exit_code=result.exit_code,
                pid=-1,
                username=host.user,
                hostname=host.host,
                working_dir=str(cwd) if cwd is not None else None,
                suffix=suffix,
            ),
        ),
    )
