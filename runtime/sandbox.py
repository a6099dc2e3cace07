"""What both runtimes share: starting (workspace, checkout, boot, setup script),
running actions (commands by `runtime.observe`, files through a `FileStore`), and
destroying a sandbox.

Starting follows one rule: git, the setup script and file actions never run on the host
in a directory the sandbox has written. The host only validates the repository and
clones it into a brand-new directory (`runtime.repository`); checking out, reusing a
checkout and the setup script are commands in the sandbox, as the sandbox user.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import stat
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
from runtime.commands import Foreground
from runtime.errors import RuntimeFailure
from runtime.observe import attend
from runtime.protocol import CommandLimits, PhaseCallback, StartPhase, StatusCallback
from runtime.repository import (
    DEFAULT_SETUP_SCRIPT,
    GIT_TIMEOUT,
    Source,
    check_branch,
    checkout_command,
    clone_into,
    clone_source,
    has_checkout,
)
from runtime.users import SandboxUser, UserPool, can_switch_users


class Sandbox:
    """Base of `LocalRuntime` and `DockerRuntime`; see `runtime.protocol.Runtime`."""

    kind = "sandbox"

    def __init__(
        self,
        workspace: Path,
        limits: CommandLimits | None = None,
        *,
        repository_roots: tuple[Path, ...] = (),
        users: UserPool | None = None,
    ) -> None:
        self.workspace = workspace.absolute()
        self.limits = limits or CommandLimits()
        self.repository_roots = tuple(repository_roots)
        self.users = users if can_switch_users() else None
        self.identity: SandboxUser | None = None
        self.fresh_identity = False
        """The identity's uid was claimed by nobody before this start (`UserPool`)."""
        self.foreground: Foreground | None = None
        self.closed = False

    @property
    def host(self) -> str:
        return "localhost"

    @property
    def user(self) -> str:
        identity = self.identity or SandboxUser.current()
        return f"uid {identity.uid}"

    async def start(
        self,
        *,
        repository: str | None = None,
        branch: str | None = None,
        setup_script: str | None = None,
        on_status: StatusCallback | None = None,
        on_phase: PhaseCallback | None = None,
    ) -> None:
        status = on_status or _ignore
        phase = on_phase or _ignore_phase
        source = self._source(repository)
        if branch is not None:
            try:
                check_branch(branch)
            except ValueError as exc:
                raise RuntimeFailure(f"the branch {branch!r} is not valid: {exc}") from None
        await phase("WAITING_FOR_SANDBOX")
        if not await asyncio.to_thread(self._claim_and_own):
            await self.before_host_work()
            await asyncio.to_thread(self._own_workspace)
        # Cloned on the host before the sandbox boots (nothing in it can write yet), so
        # this phase spans the clone, the boot and the checkout.
        await phase("PREPARING_REPOSITORY")
        fresh = False
        if source is not None:
            if await asyncio.to_thread(has_checkout, self.workspace):
                await status(f"reusing the checkout of {repository} in the workspace")
            else:
                await status(f"cloning {repository}")
                await clone_into(source, self.workspace, self.identity)
                fresh = True
        await self.boot(status)
        if source is not None and (fresh or branch):
            if branch:
                await status(f"checking out {branch}")
            await self._step("git checkout", checkout_command(branch), GIT_TIMEOUT)
        await phase("RUNNING_SETUP_SCRIPT")
        script = setup_script or DEFAULT_SETUP_SCRIPT
        quoted = shlex.quote(script)
        # Whether the repository brings a setup script or hook is the sandbox's to say
        # (`test -f` as its user), unless the host can see at once that it does not.
        absent = self.surely_absent(OPENHANDS_DIRECTORY)
        if setup_script or (not absent and await self._exit_code(f"test -f {quoted}", 30.0) == 0):
            await status(f"running the setup script {script}")
            await self._step(f"the setup script {script}", f"sh {quoted}", self.limits.timeout)
        await phase("SETTING_UP_GIT_HOOKS")
        if not absent and await self._exit_code(f"test -f {PRE_COMMIT} -a -d .git", 30.0) == 0:
            await status(f"installing {PRE_COMMIT} as the git pre-commit hook")
            await self._step("the git hooks", INSTALL_PRE_COMMIT, GIT_TIMEOUT)
        await status(self.ready_message())

    async def run(self, action: ActionBase) -> ObservationBase:
        if self.closed:
            return files.error("the runtime is closed", "RUNTIME_CLOSED")
        match action:
            case CmdRunAction():
                return await attend(self, action)
            case FileReadAction():
                return await files.read_file(self.file_store(), action, self.limits)
            case FileWriteAction():
                return await files.write_file(self.file_store(), action, self.limits)
            case FileEditAction():
                return await files.edit_file(self.file_store(), action, self.limits)
        return files.error(
            f"the {self.kind} runtime cannot run {action.kind} actions", "UNSUPPORTED_ACTION"
        )

    async def close(self) -> None:
        self.closed = True
        if self.foreground is not None:
            await self.foreground.abandon()
            self.foreground = None

    async def destroy(self) -> None:
        await self.close()
        await self.discard()
        owner = await asyncio.to_thread(self._workspace_owner)
        if owner is not None:
            await self.kill_everything_of(owner)
        await asyncio.to_thread(remove_tree, self.workspace)
        if owner is not None and self.users is not None:
            await asyncio.to_thread(self.users.release, self.workspace, owner.uid)

    # -- the steps of a start ---------------------------------------------------------

    def _source(self, repository: str | None) -> Source | None:
        if repository is None:
            return None
        try:
            return clone_source(repository, roots=self.repository_roots)
        except ValueError as exc:
            raise RuntimeFailure(f"the repository {repository!r} is refused: {exc}") from None

    def _claim_workspace(self) -> SandboxUser | None:
        """The workspace directory, and the sandbox user it belongs to."""
        self.workspace.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.users is not None:
            identity, self.fresh_identity = self.users.claim_noting_fresh(self.workspace)
            return identity
        return self.default_identity()

    def _claim_and_own(self) -> bool:
        """In a worker thread: claim the workspace and, when nothing has to be done
        before the host touches it (`ready_for_host_work`), take it for the sandbox user
        as well (one hop instead of two). Whether it was taken."""
        self.identity = self._claim_workspace()
        if not self.ready_for_host_work():
            return False
        self._own_workspace()
        return True

    def _own_workspace(self) -> None:
        """The workspace (mode 0700) and, if it changed hands (a workspace of an older
        version, a lost claim), everything in it, given to the sandbox user. Called
        when nothing of the sandbox runs; the tree first, the top last, so the new
        owner cannot reach into it before the walk is done."""
        identity = self.identity
        if identity is None or not can_switch_users():
            return
        info = self.workspace.lstat()
        if (info.st_uid, info.st_gid) != (identity.uid, identity.gid):
            for directory, subdirectories, names in os.walk(self.workspace):
                for name in [*subdirectories, *names]:
                    path = os.path.join(directory, name)
                    os.chown(path, identity.uid, identity.gid, follow_symlinks=False)
            os.chown(self.workspace, identity.uid, identity.gid, follow_symlinks=False)
        os.chmod(self.workspace, 0o700, follow_symlinks=False)

    def _workspace_owner(self) -> SandboxUser | None:
        """The workspace's sandbox user, if it has one of its own (from the pool)."""
        try:
            info = self.workspace.lstat()
        except FileNotFoundError:
            return None
        if self.users is None or not self.users.owns(info.st_uid):
            return None
        return SandboxUser(info.st_uid, info.st_gid)

    async def _step(self, name: str, command: str, time_limit: float) -> None:
        code, output = await self._command(command, time_limit)
        if code != 0:
            raise RuntimeFailure(f"{name} failed (exit {code}): {output.strip()[-500:]}")

    async def _exit_code(self, command: str, time_limit: float) -> int:
        return (await self._command(command, time_limit))[0]

    async def _command(self, command: str, time_limit: float) -> tuple[int, str]:
        foreground = await self.launch(command, self.working_dir(None))
        result = await foreground.collect(time_limit=time_limit, no_change_timeout=None)
        self.ended(foreground)
        return result.exit_code, result.output

    # -- what a backend provides ----------------------------------------------------

    def surely_absent(self, name: str) -> bool:
        """Whether nothing named ``name`` (one path component) is at the top of the
        workspace, as the host sees it without a process in the sandbox; False when it
        cannot tell."""
        return False

    def default_identity(self) -> SandboxUser | None:
        """The sandbox user when no pool assigns one (None: the server's own)."""
        return None

    def ready_for_host_work(self) -> bool:
        """Called in a worker thread once the workspace is claimed: True when
        `before_host_work` would do nothing but checks that can run right there (run
        them, raising as it would); False to have it awaited."""
        return False

    async def before_host_work(self) -> None:
        """Called before the host touches the workspace at start (unless
        `ready_for_host_work` said there was nothing to do)."""

    async def boot(self, status: StatusCallback) -> None:
        """Bring the sandbox up once the repository is cloned."""

    def ready_message(self) -> str:
        return f"workspace ready at {self.workspace}"

    def file_store(self) -> files.FileStore:
        raise NotImplementedError

    def working_dir(self, cwd: str | None) -> Path:
        """Where a command runs. Raises `files.PathEscapes`."""
        raise NotImplementedError

    async def launch(self, command: str, cwd: Path) -> Foreground:
        raise NotImplementedError

    def ended(self, foreground: Foreground) -> None:
        """A command exited normally."""

    async def discard(self) -> None:
        """Remove what the backend keeps besides the workspace (containers)."""

    async def kill_everything_of(self, owner: SandboxUser) -> None:
        """Kill every process of the workspace's own user, wherever it is."""


def remove_tree(path: Path) -> None:
    """Remove ``path`` and everything in it, following no symlink (shutil's fd-based
    walk); a symlink in place of the directory itself is removed, not followed."""
    if not shutil.rmtree.avoids_symlink_attacks:
        raise RuntimeFailure("this platform cannot remove a workspace safely")
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    else:
        path.unlink()


async def _ignore(_: str) -> None:
    return None


async def _ignore_phase(_: StartPhase) -> None:
    return None


OPENHANDS_DIRECTORY = ".openhands"
"""Where the default setup script and the pre-commit hook live."""
PRE_COMMIT = f"{OPENHANDS_DIRECTORY}/pre-commit.sh"
INSTALL_PRE_COMMIT = (
    "mkdir -p .git/hooks && "
    "printf '#!/bin/sh\\nexec sh %s \"$@\"\\n' "
    f"{shlex.quote(PRE_COMMIT)} > .git/hooks/pre-commit && chmod 755 .git/hooks/pre-commit"
)
"""As OpenHands does: the repository's own pre-commit script becomes the workspace's git
hook (written in the sandbox, as the sandbox user; git runs hooks only in the sandbox)."""
