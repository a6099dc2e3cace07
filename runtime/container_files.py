"""`ContainerFiles`: the Docker runtime's `FileStore`. Each action is a small ``docker
exec`` in the container, as the sandbox user, with the content over stdin or stdout:
the host never opens a path the sandbox can write, so no symlink it plants can lead a
write anywhere but into the container. Paths are as the agent sees them (``/workspace``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno

import aiohttp
from aiodocker.containers import DockerContainer

from runtime.beneath import PathEscapes
from runtime.files import FileTooLarge

MOUNT = "/workspace"
EXIT_POLL = 0.02
# busybox's `readlink -f` fails on a missing file named without a directory ("a.txt"),
# and resolves "./a.txt": a relative path is given one.
_RESOLVE = f"""case "$1" in /*) q="$1";; *) q="./$1";; esac
p=$(readlink -f -- "$q" 2>/dev/null) || exit 2
case "$p" in {MOUNT}/*) ;; {MOUNT}) exit 4;; *) exit 3;; esac
[ -d "$p" ] && exit 4
"""
_READ = (
    _RESOLVE
    + """[ -e "$p" ] || exit 2
[ -f "$p" ] || exit 5
exec head -c "$2" -- "$p"
"""
)
_WRITE = (
    """mkdir -p -- "$(dirname -- "$1")" 2>/dev/null\n"""
    + _RESOLVE
    + """[ -e "$p" ] && [ ! -f "$p" ] && exit 5
head -c "$2" > "$p" || exit 7
"""
)


class ContainerFiles:
    def __init__(self, container: DockerContainer, user: str) -> None:
        self._container = container
        self._user = user

    async def read(self, path: str, limit: int) -> bytes:
        code, data, problem = await self._run(_READ, path, str(limit + 1))
        _raise_for(code, path, problem)
        if len(data) > limit:
            raise FileTooLarge(f"the file is larger than {limit} bytes")
        return data

    async def write(self, path: str, data: bytes) -> None:
        code, _, problem = await self._run(_WRITE, path, str(len(data)), stdin=data)
        _raise_for(code, path, problem)

    async def _run(
        self, script: str, *arguments: str, stdin: bytes | None = None
    ) -> tuple[int, bytes, str]:
        execution = await self._container.exec(
            ["sh", "-c", script, "sh", *arguments],
            stdin=stdin is not None,
            user=self._user,
            workdir=MOUNT,
        )
        output, problem = bytearray(), bytearray()
        async with execution.start(detach=False) as stream:
            if stdin:
                with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
                    await stream.write_in(stdin)
            while (message := await stream.read_out()) is not None:
                if message.stream == 1:
                    output += message.data
                elif len(problem) < 4096:
                    problem += message.data
        while True:
            state = await execution.inspect()
            if not state["Running"] and state["ExitCode"] is not None:
                return int(state["ExitCode"]), bytes(output), problem.decode(errors="replace")
            await asyncio.sleep(EXIT_POLL)


def _raise_for(code: int, path: str, problem: str) -> None:
    match code:
        case 0:
            return
        case 2:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        case 3:
            raise PathEscapes(f"{path!r} is outside the workspace")
        case 4:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        case 5:
            raise OSError(errno.EINVAL, "not a regular file", path)
    raise OSError(errno.EIO, problem.strip() or f"failed in the container (exit {code})", path)
