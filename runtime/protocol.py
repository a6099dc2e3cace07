"""The runtime contract: where a conversation's actions run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from events import ActionBase, ObservationBase

StatusCallback = Callable[[str], Awaitable[None]]
"""Receives human-readable progress ("cloning acme/widgets", ...) while a runtime starts."""
StartPhase = Literal[
    "WAITING_FOR_SANDBOX", "PREPARING_REPOSITORY", "RUNNING_SETUP_SCRIPT", "SETTING_UP_GIT_HOOKS"
]
"""The phases of a start, in order; each is entered once per start, whether or not it
has work to do (no repository: nothing to prepare)."""
PhaseCallback = Callable[[StartPhase], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandLimits:
    """How long and how much a command may run and print."""

    timeout: float = 120.0
    """Seconds before the command's whole process group is killed."""
    no_change_timeout: float | None = 30.0
    """Seconds without new output after which the command is left running and what it
    printed is returned; the agent may then wait more (an empty command with
    ``is_input``), interrupt it (``C-c``) or type into it (None: wait for the timeout)."""
    output_limit: int = 30_000
    """Bytes of output (and of a file in an observation) kept; the middle is cut."""
    max_file_size: int = 5 * 1024 * 1024
    """Bytes of the largest file a file action reads or writes."""


@runtime_checkable
class Runtime(Protocol):
    async def start(
        self,
        *,
        repository: str | None = None,
        branch: str | None = None,
        setup_script: str | None = None,
        on_status: StatusCallback | None = None,
        on_phase: PhaseCallback | None = None,
    ) -> None:
        """Prepare the sandbox and its workspace, announcing each `StartPhase` to
        ``on_phase`` as it is entered. Raises `RuntimeFailure`."""
        ...

    async def run(self, action: ActionBase) -> ObservationBase:
        """Run one action and return what it produced. A command that fails, times out
        or touches a path outside the workspace is an observation, never an exception.
        Cancelling the call kills whatever the action started."""
        ...

    async def close(self) -> None:
        """Kill anything still running and release the sandbox. Idempotent."""
        ...

    async def destroy(self) -> None:
        """Close, then remove every trace of the sandbox: its processes, its container,
        its workspace (without following a link out of it). Idempotent."""
        ...
