"""The load: writers appending user actions over REST. Each append carries a unique
marker (``chaos#<writer>.<n>``) so the log can be held against what was acknowledged;
a failed append is never retried under the same marker.

* think actions only append (``POST .../events``);
* messages (``POST .../message``) are handed to a running demo agent, or start a run.

`Writers` run ``count`` closed loops (each waits for its answer, then ``pause``);
`Paced` offers a fixed rate whatever the answer time (at most ``in_flight`` at once).
Both stop sending while ``gate`` is clear (a scenario closes it around a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field

from tests.chaos.api import Answer, Api
from tests.chaos.audit import Ledger


@dataclass
class Mix:
    """What the writers send, and where."""

    think_to: list[str]
    message_to: list[str] = field(default_factory=list)
    message_share: float = 0.0
    padding: int = 0
    """Bytes of filler in every append."""
    large_every: int = 0
    large_bytes: int = 0
    """Every ``large_every``-th append of a writer carries ``large_bytes`` instead."""


@dataclass(frozen=True, slots=True)
class Sent:
    kind: str
    conversation_id: str
    marker: str
    answer: Answer


class Load:
    def __init__(self, api: Api, ledger: Ledger, mix: Mix, *, name: str, seed: int = 0) -> None:
        self.api = api
        self.ledger = ledger
        self.mix = mix
        self.name = name
        self.rng = random.Random(seed)
        self.gate = asyncio.Event()
        self.gate.set()
        self.sent: list[Sent] = []
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._counter = 0

    async def send_one(self, writer: int) -> Sent:
        mix = self.mix
        self._counter += 1
        n = self._counter
        marker = f"{self.name}{writer}.{n}"
        size = mix.large_bytes if mix.large_every and n % mix.large_every == 0 else mix.padding
        text = f"chaos#{marker} " + "x" * size
        if mix.message_to and self.rng.random() < mix.message_share:
            conversation_id = self.rng.choice(mix.message_to)
            kind, answer = "message", await self.api.message(conversation_id, text)
        else:
            conversation_id = self.rng.choice(mix.think_to)
            kind, answer = "think", await self.api.think(conversation_id, text)
        if answer.event_id is not None:
            self.ledger.acknowledge(conversation_id, marker, answer.event_id)
        sent = Sent(kind, conversation_id, marker, answer)
        self.sent.append(sent)
        return sent

    async def stop(self) -> None:
        self._stopping = True
        self.gate.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def answered_since(self, since: float) -> list[Sent]:
        """Appends sent at or after ``since`` (time.time())."""
        return [sent for sent in self.sent if sent.answer.sent_at >= since]


class Writers(Load):
    def start(self, count: int, pause: float = 0.0) -> Writers:
        self._tasks += [asyncio.create_task(self._write(index, pause)) for index in range(count)]
        return self

    async def _write(self, writer: int, pause: float) -> None:
        while not self._stopping:
            await self.gate.wait()
            sent = await self.send_one(writer)
            await asyncio.sleep(pause if sent.answer.status is not None else max(pause, 0.05))


class Paced(Load):
    def start(self, rate: float, in_flight: int = 50) -> Paced:
        self._limit = asyncio.Semaphore(in_flight)
        self._tasks.append(asyncio.create_task(self._offer(rate)))
        return self

    async def _offer(self, rate: float) -> None:
        loop = asyncio.get_running_loop()
        interval, next_at = 1.0 / rate, loop.time()
        pending: set[asyncio.Task[Sent]] = set()
        try:
            while not self._stopping:
                await self.gate.wait()
                next_at = max(next_at + interval, loop.time() - 1.0)
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                await self._limit.acquire()
                task = asyncio.create_task(self.send_one(0))
                pending.add(task)
                task.add_done_callback(pending.discard)
                task.add_done_callback(lambda _: self._limit.release())
        finally:
            if pending:
                await asyncio.wait(pending, timeout=30)
