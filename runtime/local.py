"""`LocalRuntime`: a conversation's actions run as local processes in its workspace
directory.

Each command runs in its own process group (see `runtime.process`) with a scrubbed
environment and umask 077; when the server is root, as the workspace's own unprivileged
user (`runtime.users`), which owns the workspace (mode 0700) and nothing else. Groups
that outlive their command (background jobs) are killed when the runtime closes, and
with a user of its own, every process of that user too.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import stat
from pathlib import Path

from runtime import files
from runtime.commands import Foreground
from runtime.errors import RuntimeFailure
from runtime.local_files import LocalFiles
from runtime.process import LocalProcess, command_environment, kill_all_of, signal_group
from runtime.protocol import CommandLimits
from runtime.sandbox import Sandbox
from runtime.users import SandboxUser, UserPool

_HOST = socket.gethostname()


class LocalRuntime(Sandbox):
    kind = "local"

    def __init__(
        self,
        workspace: Path,
        limits: CommandLimits | None = None,
        *,
        repository_roots: tuple[Path, ...] = (),
        users: UserPool | None = None,
    ) -> None:
        super().__init__(workspace, limits, repository_roots=repository_roots, users=users)
        self._groups: set[int] = set()

    @property
    def host(self) -> str:
        return _HOST

    def ready_for_host_work(self) -> bool:
        # Nothing can run as a uid unclaimed until now: only a reused one needs a kill.
        if self._switched() and not self.fresh_identity:
            return False
        self._check_reachable()
        return True

    async def before_host_work(self) -> None:
        if self._switched():
            assert self.identity is not None
            if not self.fresh_identity:
                await kill_all_of(self.identity)  # leftovers of a crashed server, if any
        self._check_reachable()

    def _check_reachable(self) -> None:
        if not self._switched():
            return
        blocked = _unreachable_above(self.workspace)
        if blocked is not None:
            raise RuntimeFailure(
                f"the sandbox user cannot reach its workspace: {blocked} is not "
                "searchable by others (chmod o+x it, or use another data directory)"
            )

    async def close(self) -> None:
        await super().close()
        for group in self._groups:
            signal_group(group, signal.SIGKILL)
        self._groups.clear()
        if self._switched():
            assert self.identity is not None
            await kill_all_of(self.identity)

    async def kill_everything_of(self, owner: SandboxUser) -> None:
        await kill_all_of(owner)

    def surely_absent(self, name: str) -> bool:
        # The workspace is a host directory the server made, in a directory the sandbox
        # cannot write: lstat of one name in it follows no link the sandbox controls.
        # Anything there (a directory, a symlink, an error) is left to `test` in the
        # sandbox, as the sandbox user.
        if "/" in name or name in ("", ".", ".."):
            return False
        try:
            os.lstat(self.workspace / name)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return False

    def file_store(self) -> files.FileStore:
        return LocalFiles(self.workspace, self.identity)

    def working_dir(self, cwd: str | None) -> Path:
        return files.confine(self.workspace, cwd) if cwd else self.workspace

    async def launch(self, command: str, cwd: Path) -> Foreground:
        shell = command
        relative = cwd.relative_to(self.workspace.resolve()) if cwd != self.workspace else None
        if relative is not None and str(relative) != ".":
            # Enter the directory as the sandbox user, not as the server (which would
            # follow a symlink the sandbox swapped in, with the server's rights).
            shell = f"cd -- {shlex.quote(str(relative))} && exec /bin/sh -c {shlex.quote(command)}"
        process = await LocalProcess.spawn(
            shell,
            cwd=self.workspace,
            env=command_environment(self.workspace, cwd),
            user=self.identity,
        )
        return Foreground(command, process, self.limits.output_limit)

    def ended(self, foreground: Foreground) -> None:
        """A command exited; its group lives on if it left background children."""
        self._groups = {group for group in self._groups if signal_group(group, 0)}
        process = foreground.process
        if isinstance(process, LocalProcess) and process.group_alive():
            self._groups.add(process.pid)

    def _switched(self) -> bool:
        return (
            self.identity is not None
            and self.identity.switched
            and self.users is not None
            and self.users.owns(self.identity.uid)
        )


def _unreachable_above(workspace: Path) -> Path | None:
    """The first directory above the workspace others may not search, if any."""
    for directory in workspace.parents:
        if not directory.stat().st_mode & stat.S_IXOTH:
            return directory
    return None
