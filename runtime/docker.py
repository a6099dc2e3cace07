"""`DockerRuntime`: one container per conversation, through aiodocker.

The workspace directory is bind-mounted at ``/workspace``; the repository is prepared
on the host side of that mount, so the image needs no git. Commands run with ``docker
exec`` under ``setsid`` (their own process group inside the container) and follow the
same rules as local ones (`runtime.observe`): a time limit that kills the group, the
no-change timeout, input, an output cap. File actions work on the mounted directory,
confined to it. Closing removes the container, and everything in it.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import aiodocker
from aiodocker.containers import DockerContainer
from aiodocker.execs import Exec
from aiodocker.stream import Stream

from runtime import files
from runtime.commands import Foreground
from runtime.errors import RuntimeFailure
from runtime.protocol import CommandLimits, StatusCallback
from runtime.sandbox import FileAction, Sandbox

MOUNT = "/workspace"
KILL_GRACE = 2.0
EXIT_POLL = 0.05
# `docker exec` starts its process as a group leader, and busybox's setsid forks when
# asked to lead a new session from a group leader, so the exec would end at once. So:
# start the command from a background child (not a group leader; its stdin handed on
# explicitly), which becomes a session leader in place, prints its pid (the group id),
# and becomes the command; the exec's own process waits for it and exits with its status.
LAUNCHER = 'exec 3<&0; setsid sh -c \'echo "$$"; exec sh -c "$1"\' sh "$1" <&3 & wait $!'


class DockerProcess:
    """Implements `runtime.commands.CommandProcess` with a ``docker exec``."""

    def __init__(self, container: DockerContainer, execution: Exec, stream: Stream) -> None:
        self._container = container
        self._exec = execution
        self._stream = stream
        self._pending = bytearray()
        self.pid = -1
        self._returncode: int | None = None

    @classmethod
    async def spawn(cls, container: DockerContainer, command: str, cwd: str) -> DockerProcess:
        execution = await container.exec(
            ["sh", "-c", LAUNCHER, "sh", command], stdin=True, workdir=cwd
        )
        stream = execution.start(detach=False)
        await stream.__aenter__()
        process = cls(container, execution, stream)
        await process._read_group_id()
        return process

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def read(self) -> bytes:
        if self._pending:
            chunk, self._pending = bytes(self._pending), bytearray()
            return chunk
        message = await self._stream.read_out()
        return b"" if message is None else message.data

    async def wait(self) -> int:
        while self._returncode is None:
            state = await self._exec.inspect()
            if not state["Running"] and state["ExitCode"] is not None:
                self._returncode = int(state["ExitCode"])
                break
            await asyncio.sleep(EXIT_POLL)
        return self._returncode

    async def write(self, data: bytes) -> None:
        await self._stream.write_in(data)

    async def kill(self) -> None:
        """SIGTERM the command's group in the container, SIGKILL after a grace period."""
        if self.pid > 0:
            await self._signal("TERM")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(KILL_GRACE):
                    await self.wait()
            await self._signal("KILL")
        with contextlib.suppress(aiodocker.DockerError):
            await self.wait()

    async def release(self) -> None:
        await self._stream.close()

    async def _signal(self, name: str) -> None:
        with contextlib.suppress(aiodocker.DockerError):
            killer = await self._container.exec(["kill", f"-{name}", f"-{self.pid}"])
            await killer.start(detach=True)

    async def _read_group_id(self) -> None:
        """The launcher's first line on stdout; stderr read meanwhile is kept."""
        buffer = bytearray()
        while b"\n" not in buffer:
            message = await self._stream.read_out()
            if message is None:
                break
            if message.stream == 1:
                buffer += message.data
            else:
                self._pending += message.data
        line, _, rest = bytes(buffer).partition(b"\n")
        try:
            self.pid = int(line.strip())
        except ValueError as exc:
            raise RuntimeFailure(
                f"could not start a command in the container: {bytes(buffer)!r}"
            ) from exc
        self._pending += rest


class DockerRuntime(Sandbox):
    kind = "docker"

    def __init__(
        self,
        workspace: Path,
        *,
        image: str,
        limits: CommandLimits | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(workspace, limits)
        self.image = image
        self.name = name
        self._docker: aiodocker.Docker | None = None
        self._container: DockerContainer | None = None

    @property
    def host(self) -> str:
        return self._container.id[:12] if self._container is not None else "container"

    async def boot(self, status: StatusCallback) -> None:
        await status(f"starting a container from {self.image}")
        self._docker = aiodocker.Docker()
        config: dict[str, Any] = {
            "Image": self.image,
            "Cmd": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"],
            "WorkingDir": MOUNT,
            "Labels": {"threadline.sandbox": "1"},
            "HostConfig": {
                "Binds": [f"{self.workspace.resolve()}:{MOUNT}"],
                "NetworkMode": "none",
                # A quarter of the default CPU weight: busy sandboxes yield to the server
                # (the local runtime does the same with niceness).
                "CpuShares": 256,
            },
        }
        try:
            self._container = await self._docker.containers.run(config=config, name=self.name)
        except aiodocker.DockerError as exc:
            raise RuntimeFailure(
                f"could not start a container from {self.image}: {exc.message}"
            ) from exc

    def ready_message(self) -> str:
        return f"container {self.host} ready, workspace at {MOUNT}"

    async def close(self) -> None:
        await super().close()
        if self._container is not None:
            with contextlib.suppress(aiodocker.DockerError):
                await self._container.delete(force=True)
            self._container = None
        if self._docker is not None:
            await self._docker.close()
            self._docker = None

    def on_host(self, action: FileAction) -> FileAction:
        """The agent names paths as the container sees them (``/workspace/...``)."""
        return action.model_copy(
            update={
                "args": action.args.model_copy(update={"path": _host_relative(action.args.path)})
            }
        )

    def working_dir(self, cwd: str | None) -> Path:
        """The directory inside the container. Raises `files.PathEscapes`."""
        if not cwd:
            return Path(MOUNT)
        inside = files.confine(self.workspace, _host_relative(cwd))
        return Path(MOUNT) / inside.relative_to(self.workspace.resolve())

    async def launch(self, command: str, cwd: Path) -> Foreground:
        if self._container is None:
            raise RuntimeFailure("the container is not running")
        process = await DockerProcess.spawn(self._container, command, str(cwd))
        return Foreground(command, process, self.limits.output_limit)


def _host_relative(path: str) -> str:
    """Paths the agent sees inside the container, relative to the mounted workspace."""
    if path == MOUNT:
        return "."
    return path.removeprefix(MOUNT + "/") if path.startswith(MOUNT + "/") else path
