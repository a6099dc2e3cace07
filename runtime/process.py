"""Running one shell command in its own process group, with a timeout and an output cap.

The command gets a new session, hence its own process group. On timeout or cancellation
the whole group is sent SIGTERM, then SIGKILL after a grace period. When the command
exits normally, children it left in the background keep running (an agent may start a
server and query it next); the caller tracks the group and kills it when the sandbox
closes. Output is read from a pipe we own, so a background child that keeps the pipe
open cannot hold the command's result hostage.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

KILL_GRACE = 2.0
DRAIN_AFTER_EXIT = 0.1
READ_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class CommandResult:
    output: str
    exit_code: int
    """-1 when the command was killed on timeout."""
    pid: int
    """Also the id of its process group."""
    timed_out: bool
    truncated: bool


class _CappedOutput:
    """Keeps the head and the tail of a stream, dropping the middle beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        self._half = max(limit // 2, 1)
        self._head = bytearray()
        self._tail = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        room = self._half - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            excess = len(self._tail) - self._half
            if excess > 0:
                del self._tail[:excess]
                self.dropped += excess

    def text(self) -> str:
        head = self._head.decode(errors="replace")
        tail = self._tail.decode(errors="replace")
        if not self.dropped:
            return head + tail
        return f"{head}\n[... {self.dropped} bytes of output cut ...]\n{tail}"


async def run_command(
    command: str,
    *,
    cwd: Path,
    time_limit: float,
    output_limit: int,
    env: dict[str, str] | None = None,
) -> CommandResult:
    """Run ``command`` with ``/bin/sh -c``; stdout and stderr are merged."""
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    try:
        process = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            start_new_session=True,
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
    )
    output = _CappedOutput(output_limit)
    pump = asyncio.create_task(_pump(reader, output))
    timed_out = False
    try:
        async with asyncio.timeout(time_limit):
            await process.wait()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_AFTER_EXIT):
                await asyncio.shield(pump)
    except TimeoutError:
        timed_out = True
        await kill_group(process)
    except BaseException:
        await kill_group(process)
        raise
    finally:
        pump.cancel()
        transport.close()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
    return CommandResult(
        output=output.text(),
        exit_code=-1 if timed_out or process.returncode is None else process.returncode,
        pid=process.pid,
        timed_out=timed_out,
        truncated=output.dropped > 0,
    )


async def _pump(reader: asyncio.StreamReader, output: _CappedOutput) -> None:
    while chunk := await reader.read(READ_CHUNK):
        output.feed(chunk)


async def kill_group(process: asyncio.subprocess.Process, grace: float = KILL_GRACE) -> None:
    """SIGTERM the process group, then SIGKILL it after ``grace`` seconds."""
    if signal_group(process.pid, signal.SIGTERM):
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await process.wait()
        signal_group(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await process.wait()


def signal_group(pgid: int, signum: int) -> bool:
    """Signal a process group; False when it no longer exists."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True
