"""`DockerRuntime`: one container per conversation, through aiodocker.

The workspace directory is bind-mounted at ``/workspace``. The host only clones a
repository into a fresh directory (`runtime.repository`); checkout, setup script and
file actions run inside the container as its unprivileged user (the image has git:
`runtime.image` builds it). The container has no network, no capabilities,
no-new-privileges, a read-only root with a tmpfs ``/tmp``, and memory, pids and CPU
limits (`ContainerResources`). Commands run with ``docker exec`` under ``setsid``
(their own process group inside the container) and follow the same rules as local ones
(`runtime.observe`). Closing removes the container, and everything in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
from aiodocker.containers import DockerContainer
from aiodocker.execs import Exec
from aiodocker.stream import Stream

from runtime import files
from runtime.commands import Foreground
from runtime.container_files import MOUNT, ContainerFiles
from runtime.errors import RuntimeFailure
from runtime.protocol import CommandLimits, StatusCallback
from runtime.sandbox import Sandbox
from runtime.users import SandboxUser, UserPool, can_switch_users

IMAGE_USER = SandboxUser(1000, 1000)
"""The image's own non-root user, for a root server given no pool of users."""
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

    def __init__(
        self, container: DockerContainer, execution: Exec, stream: Stream, user: str
    ) -> None:
        self._container = container
        self._user = user
        self._exec = execution
        self._stream = stream
        self._pending = bytearray()
        self.pid = -1
        self._returncode: int | None = None

    @classmethod
    async def spawn(
        cls, container: DockerContainer, command: str, cwd: str, user: str
    ) -> DockerProcess:
        execution = await container.exec(
            ["sh", "-c", LAUNCHER, "sh", command], stdin=True, workdir=cwd, user=user
        )
        stream = execution.start(detach=False)
        await stream.__aenter__()
        process = cls(container, execution, stream, user)
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
            killer = await self._container.exec(
                ["kill", f"-{name}", f"-{self.pid}"], user=self._user
            )
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerResources:
    """What one sandbox container may use."""

    memory: int = 2 * 1024**3
    """Bytes of memory (swap included: none beyond it)."""
    pids: int = 512
    """Processes and threads at once."""
    cpus: float = 1.0
    """CPUs' worth of time (a cap, not a weight)."""
    tmp_size: int = 256 * 1024**2
    """Bytes of the tmpfs at /tmp (counted in the memory)."""


class DockerRuntime(Sandbox):
    kind = "docker"

    def __init__(
        self,
        workspace: Path,
        *,
        image: str,
        limits: CommandLimits | None = None,
        name: str | None = None,
        repository_roots: tuple[Path, ...] = (),
        users: UserPool | None = None,
        resources: ContainerResources | None = None,
    ) -> None:
        super().__init__(workspace, limits, repository_roots=repository_roots, users=users)
        self.image = image
        self.name = name
        self.resources = resources or ContainerResources()
        self._docker: aiodocker.Docker | None = None
        self._container: DockerContainer | None = None

    @property
    def host(self) -> str:
        return self._container.id[:12] if self._container is not None else "container"

    @property
    def _user_spec(self) -> str:
        identity = self.identity or IMAGE_USER
        return f"{identity.uid}:{identity.gid}"

    def default_identity(self) -> SandboxUser:
        return IMAGE_USER if can_switch_users() else SandboxUser.current()

    async def before_host_work(self) -> None:
        await self.discard()  # a container a crashed server left could still write here

    async def boot(self, status: StatusCallback) -> None:
        await status(f"starting a container from {self.image}")
        resources = self.resources
        config: dict[str, Any] = {
            "Image": self.image,
            "Cmd": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"],
            "WorkingDir": MOUNT,
            "User": self._user_spec,
            "Env": ["HOME=" + MOUNT, "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "TERM=dumb"],
            "Labels": {"threadline.sandbox": "1", "threadline.workspace": str(self.workspace)},
            "HostConfig": {
                "Binds": [f"{self.workspace.resolve()}:{MOUNT}"],
                "NetworkMode": "none",
                "Memory": resources.memory,
                "MemorySwap": resources.memory,
                "PidsLimit": resources.pids,
                "NanoCpus": int(resources.cpus * 1e9),
                # A quarter of the default CPU weight besides the cap: busy sandboxes
                # yield to the server (the local runtime does the same with niceness).
                "CpuShares": 256,
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges"],
                "ReadonlyRootfs": True,
                "Tmpfs": {"/tmp": f"rw,nosuid,nodev,size={resources.tmp_size},mode=1777"},
            },
        }
        try:
            self._container = await self._client().containers.run(config=config, name=self.name)
        except aiodocker.DockerError as exc:
            hint = " (build it with `threadline sandbox build`)" if exc.status == 404 else ""
            raise RuntimeFailure(
                f"could not start a container from {self.image}: {exc.message}{hint}"
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

    async def discard(self) -> None:
        """Remove every container of this workspace (left by a crash, say)."""
        labels = {"label": [f"threadline.workspace={self.workspace}"]}
        async with aiodocker.Docker() as docker:
            try:
                stale = await docker.containers.list(all=True, filters=json.dumps(labels))
                for container in stale:
                    with contextlib.suppress(aiodocker.DockerError):
                        await container.delete(force=True)
            except aiodocker.DockerError as exc:
                raise RuntimeFailure(f"could not list containers: {exc.message}") from exc

    def file_store(self) -> files.FileStore:
        if self._container is None:
            raise RuntimeFailure("the container is not running")
        return ContainerFiles(self._container, self._user_spec)

    def working_dir(self, cwd: str | None) -> Path:
        """The directory inside the container (the container resolves it, so a symlink
        can lead only within the container). Raises `files.PathEscapes`."""
        if not cwd:
            return Path(MOUNT)
        inside = posixpath.normpath(posixpath.join(MOUNT, cwd))
        if inside != MOUNT and not inside.startswith(MOUNT + "/"):
            raise files.PathEscapes(f"{cwd!r} is outside the workspace")
        return Path(inside)

    async def launch(self, command: str, cwd: Path) -> Foreground:
        if self._container is None:
            raise RuntimeFailure("the container is not running")
        process = await DockerProcess.spawn(self._container, command, str(cwd), self._user_spec)
        return Foreground(command, process, self.limits.output_limit)

    def _client(self) -> aiodocker.Docker:
        if self._docker is None:
            self._docker = aiodocker.Docker()
        return self._docker


async def image_problem(image: str) -> str | None:
    """Why a sandbox could not start from ``image`` now (no engine, no such image), or
    None when it could."""
    try:
        async with aiodocker.Docker() as docker:
            await docker.images.inspect(image)
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            return f"the image {image} does not exist: build it with `threadline sandbox build`"
        return f"the Docker engine refused: {exc.message}"
    except (OSError, ValueError) as exc:
        return f"no Docker engine answers: {exc}"
    return None
