"""The loop both log writers share: group commit, pipelined with the event loop.

One task writes. Appends queued while a transaction is in flight are written together in
the next one. One transaction is in flight at a time, and batch N+1 is sent only once
batch N has committed, so events become visible in id order. While N+1 is in flight the
writer settles N (tells its callers, publishes its events), and what those callers
append next queues for N+2: the Python of one batch and the database work of another
run side by side.

Callers are told in commit order, a whole batch at once. (Splitting a batch of appenders
that move in lockstep into two alternating halves was measured and dropped: it only
doubled the commits.)

Writes other than appends (creations, record updates, deletes) run in order with the
appends, each in its own transaction, after whatever came before them is settled.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from storage.models import ConversationPatch, StoredEvent
from storage.records import PreparedEvent
from storage.subscription import SubscriptionHub


@dataclass(slots=True)
class Append:
    conversation_id: str
    events: list[PreparedEvent]
    future: asyncio.Future[list[StoredEvent]]
    patch: ConversationPatch | None = None
    asked_at: float = field(default_factory=time.monotonic)


Accepted = list[tuple[Append, list[StoredEvent]]]
"""The appends of a batch given ids, each with its stored events."""


class Stamped(Protocol):
    """A batch of appends given ids, ready to be written."""

    @property
    def written(self) -> Accepted: ...


@dataclass(slots=True)
class Written:
    """A committed batch of appends whose callers are still to be told, in order."""

    written: Accepted
    committed_at: float = field(default_factory=time.monotonic)


S = TypeVar("S", bound=Stamped)


class GroupCommitWriter(ABC, Generic[S]):
    """The loop; a writer supplies how a batch is stamped, committed and failed."""

    _queue: asyncio.Queue[Any]
    _max_batch: int
    _hub: SubscriptionHub

    @abstractmethod
    async def _stamp(self, ops: list[Append]) -> S:
        """Give the batch's events their ids (the streams advance). An op that cannot be
        written (its conversation is gone) is failed here and left out."""

    @abstractmethod
    async def _commit(self, stamped: S) -> None:
        """Write a stamped batch in one transaction; on failure, put the streams back
        and raise."""

    @abstractmethod
    def _committed(self, stamped: S) -> None:
        """The batch is durable: what the writer keeps of it (sequence, counts)."""

    @abstractmethod
    async def _failed(self, stamped: S, exc: Exception) -> None:
        """The batch's transaction failed (its streams are back): retry or fail it."""

    @abstractmethod
    async def _write_appends(self, ops: list[Append]) -> None:
        """Write ``ops`` as one batch and settle it, without pipelining."""

    @abstractmethod
    async def _run_other(self, op: Any) -> None:
        """A write other than an append, in a transaction of its own."""

    @abstractmethod
    def _told(self, appended: int) -> None:
        """``appended`` events were settled (the index and checkpoints follow)."""

    async def _run(self) -> None:
        unsettled: Written | None = None
        stopping = False
        while not stopping:
            if unsettled is not None and self._queue.empty():
                self._settle(unsettled)
                unsettled = None
            batch: list[Any] = []
            if unsettled is None:
                first = await self._queue.get()
                if first is None:
                    break
                batch.append(first)
                await asyncio.sleep(0)  # writers woken by the last commit join this batch
            stopping = self._drain(batch)
            if batch and all(isinstance(op, Append) for op in batch):
                unsettled = await self._write_pipelined(batch, unsettled)
                continue
            if unsettled is not None:
                self._settle(unsettled)
                unsettled = None
            await self._process(batch)
        if unsettled is not None:
            self._settle(unsettled)

    def _drain(self, batch: list[Any]) -> bool:
        """Add what is queued to ``batch`` (up to the batch size); whether the writer was
        asked to stop."""
        queued = sum(len(op.events) if isinstance(op, Append) else 1 for op in batch)
        while queued < self._max_batch and not self._queue.empty():
            op = self._queue.get_nowait()
            if op is None:
                return True
            batch.append(op)
            queued += len(op.events) if isinstance(op, Append) else 1
        return False

    async def _write_pipelined(
        self, ops: list[Append], unsettled: Written | None
    ) -> Written | None:
        """Send ``ops`` as one batch, settle ``unsettled`` while it is in flight, and
        return the batch committed but not yet settled (None if it failed: then it is
        settled, retried or failed, here)."""
        try:
            stamped: S | None = await self._stamp(ops)
        except Exception:
            stamped = None
        if stamped is None or not stamped.written:
            if unsettled is not None:
                self._settle(unsettled)
            if stamped is None:  # e.g. the connection failed: the serial path says how
                await self._write_appends(ops)
            return None
        if unsettled is None:
            flight: Awaitable[None] = self._commit(stamped)  # nothing to settle: no task
        else:
            flight = asyncio.create_task(self._commit(stamped))
            await asyncio.sleep(0)  # the batch is sent before the settling starts
            self._settle(unsettled)
        try:
            await flight
        except Exception as exc:
            await self._failed(stamped, exc)
            return None
        self._committed(stamped)
        return Written(stamped.written)

    async def _process(self, batch: list[Any]) -> None:
        appends: list[Append] = []
        for op in batch:
            if isinstance(op, Append):
                appends.append(op)
                continue
            if appends:
                await self._write_appends(appends)
                appends = []
            await self._run_other(op)
        if appends:
            await self._write_appends(appends)

    def _settle(self, batch: Written) -> None:
        """Tell a committed batch's callers and publish its events, in order."""
        appended = 0
        for op, stored in batch.written:
            if not op.future.done():
                op.future.set_result(stored)
            self._hub.observer.appended(len(stored), batch.committed_at - op.asked_at)
            self._hub.publish(op.conversation_id, stored)
            appended += len(stored)
        if appended:
            self._told(appended)
