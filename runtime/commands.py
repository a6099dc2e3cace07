"""The command semantics both runtimes share: time limit, no-change timeout, output cap,
interrupt, input.

A runtime starts a `CommandProcess` (a local process group, a `docker exec`) and wraps
it in a `Foreground`. `collect` returns when the command exits, when it has printed
nothing new for the no-change timeout (it keeps running; the agent decides what next),
or when the time limit kills it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Protocol

DRAIN_AFTER_EXIT = 0.1


class CommandProcess(Protocol):
    pid: int

    @property
    def returncode(self) -> int | None: ...

    async def read(self) -> bytes:
        """The next chunk of output; ``b""`` at the end."""
        ...

    async def wait(self) -> int: ...

    async def write(self, data: bytes) -> None: ...

    async def kill(self) -> None:
        """Kill the command and everything it started."""
        ...

    async def release(self) -> None:
        """Stop reading its output."""
        ...


@dataclass(frozen=True, slots=True)
class CommandResult:
    output: str
    exit_code: int
    """-1 while still running, or when killed."""
    running: bool
    """True when the no-change timeout returned early; the command goes on."""
    timed_out: bool
    """True when the time limit killed it."""
    truncated: bool


class CappedOutput:
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

    def take(self) -> tuple[str, bool]:
        """Everything gathered since the last take, and whether the middle was cut."""
        head = self._head.decode(errors="replace")
        tail = self._tail.decode(errors="replace")
        dropped = self.dropped
        self._head, self._tail, self.dropped = bytearray(), bytearray(), 0
        if not dropped:
            return head + tail, False
        return f"{head}\n[... {dropped} bytes of output cut ...]\n{tail}", True


class Foreground:
    """A running command the agent is attending to."""

    def __init__(self, command: str, process: CommandProcess, output_limit: int) -> None:
        self.command = command
        self.process = process
        self._output = CappedOutput(output_limit)
        self._changed = asyncio.Event()
        self._pump = asyncio.create_task(self._read_all())
        self._exit = asyncio.ensure_future(process.wait())

    @property
    def finished(self) -> bool:
        return self._exit.done()

    async def collect(self, *, time_limit: float, no_change_timeout: float | None) -> CommandResult:
        timed_out = False
        try:
            async with asyncio.timeout(time_limit):
                while not self._exit.done():
                    self._changed.clear()
                    changed = asyncio.ensure_future(self._changed.wait())
                    try:
                        done, _ = await asyncio.wait(
                            {self._exit, changed},
                            timeout=no_change_timeout,
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                    finally:
                        changed.cancel()
                    if not done:
                        return self._result(running=True)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(DRAIN_AFTER_EXIT):
                        await asyncio.shield(self._pump)
        except TimeoutError:
            timed_out = True
            await self.kill()
        await self.release()
        return self._result(running=False, timed_out=timed_out)

    async def send(self, text: str) -> None:
        await self.process.write(text.encode())

    async def kill(self) -> None:
        await self.process.kill()
        with contextlib.suppress(asyncio.CancelledError):
            await self._exit

    async def release(self) -> None:
        self._pump.cancel()
        await self.process.release()

    async def abandon(self) -> None:
        """Kill the command and stop reading it: nobody is attending any more."""
        try:
            await self.kill()
        finally:
            await self.release()

    def _result(self, *, running: bool, timed_out: bool = False) -> CommandResult:
        output, truncated = self._output.take()
        return CommandResult(
            output, self._exit_code(running or timed_out), running, timed_out, truncated
        )

    def _exit_code(self, unfinished: bool) -> int:
        code = self.process.returncode
        if unfinished or code is None:
            return -1
        return 128 - code if code < 0 else code  # killed by a signal: as a shell reports it

    async def _read_all(self) -> None:
        while chunk := await self.process.read():
            self._output.feed(chunk)
            self._changed.set()
