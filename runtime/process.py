"""A local command in its own process group.

The command runs under ``/bin/sh -c`` in a new session, hence its own process group.
`kill` sends the whole group SIGTERM, then SIGKILL after a grace period, so nothing it
started is left behind. Output (stdout and stderr merged) is read from a pipe we own, so
a background child that keeps the pipe open cannot hold the command's result hostage.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from runtime.users import SandboxUser

KILL_GRACE = 2.0
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
READ_CHUNK = 65536


class LocalProcess:
    """Implements `runtime.commands.CommandProcess` with a local process group."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        transport: asyncio.ReadTransport,
    ) -> None:
        self._process = process
        self._reader = reader
        self._transport = transport
        self.pid = process.pid

    @classmethod
    async def spawn(
        cls, command: str, *, cwd: Path, env: dict[str, str], user: SandboxUser | None = None
    ) -> LocalProcess:
        """Start ``command`` in ``cwd`` with exactly ``env`` and umask 077; as ``user``
        (no supplementary groups) when given and different from the server's."""
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        argv: list[str] = ["/bin/sh", "-c", command]
        identity: dict[str, Any] = {}
        if user is not None and user.switched:
            argv, identity = as_user(argv, user)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd, env=env, umask=0o077, **identity,
                stdin=asyncio.subprocess.PIPE, stdout=write_fd, stderr=write_fd,
                start_new_session=True,
            )  # fmt: skip
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        _lower_priority(process.pid)
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
        return cls(process, reader, transport)

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    async def read(self) -> bytes:
        return await self._reader.read(READ_CHUNK)

    async def wait(self) -> int:
        return await self._process.wait()

    async def write(self, data: bytes) -> None:
        stdin = self._process.stdin
        if stdin is None or stdin.is_closing():
            raise BrokenPipeError("the command's input is closed")
        stdin.write(data)
        await stdin.drain()

    async def kill(self, grace: float = KILL_GRACE) -> None:
        """SIGTERM the process group, then SIGKILL it after ``grace`` seconds; return
        once no process of the group is left (or a second after the SIGKILL)."""
        if signal_group(self.pid, signal.SIGTERM):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._process.wait()
            signal_group(self.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            await self._process.wait()
        for _ in range(100):  # members are reaped by init a moment after they die
            if not signal_group(self.pid, 0):
                return
            await asyncio.sleep(0.01)

    async def release(self) -> None:
        """Stop reading; the group may live on (background children)."""
        self._transport.close()
        if self._process.stdin is not None:
            self._process.stdin.close()

    def group_alive(self) -> bool:
        return signal_group(self.pid, 0)


COMMAND_NICENESS = 19


def _lower_priority(pid: int) -> None:
    """Let the server win the CPU over the commands it runs.

    With the kernel's autogroup scheduling (common on desktops and VMs), each new session
    is its own scheduling group weighted like the whole server, and a plain ``nice`` does
    not reach across groups: twenty busy commands could starve the server's loop. The
    session's autogroup takes a niceness of its own; best effort, Linux only.
    """
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(str(COMMAND_NICENESS))


def command_environment(home: Path, cwd: Path) -> dict[str, str]:
    """Everything a command's environment holds: nothing of the server's own."""
    return {
        "PATH": SAFE_PATH,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "dumb",
        "PWD": str(cwd),
    }


SETPRIV = shutil.which("setpriv", path=SAFE_PATH)
"""util-linux's setpriv: switches to the sandbox user in the child it is exec'd as."""


def as_user(argv: list[str], user: SandboxUser) -> tuple[list[str], dict[str, Any]]:
    """``argv`` and the subprocess keywords that run it as ``user``, with no
    supplementary groups. Through setpriv when there is one: subprocess's ``user=`` makes
    Python fork the whole server instead of vfork-ing (about 14 ms of the event loop for
    a 300 MB server, against under 1 ms), and every run start and command pays it."""
    if SETPRIV is not None:
        switch = [SETPRIV, f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups"]
        return [*switch, *argv], {}
    return argv, {"user": user.uid, "group": user.gid, "extra_groups": []}


async def kill_all_of(user: SandboxUser) -> None:
    """SIGKILL every process of ``user`` (a uid of its own: nothing else runs as it),
    including any that left their process group: ``kill -9 -1`` run as that user."""
    argv, switch = as_user(["/bin/sh", "-c", "kill -9 -1"], user)
    process = await asyncio.create_subprocess_exec(
        *argv, env={"PATH": SAFE_PATH}, cwd="/", stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, **switch,
    )  # fmt: skip
    await process.wait()


def signal_group(pgid: int, signum: int) -> bool:
    """Signal a process group; False when it no longer exists."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True
