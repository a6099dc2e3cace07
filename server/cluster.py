"""`ClusterSessions`: the session manager of a process that shares its database.

The same caps, policies and priority queue as `server.sessions.SessionManager`, held in
the store's cluster ledger instead of this process's memory, so they hold across every
server process of the database:

- every decision (admit, queue, evict, release, fill from the queue) is one ledger
  transaction under the cluster-wide lock; a queued conversation starts on whichever
  process frees a slot (or finds one free);
- each process holds a lease, renewed every third of its length together with its runs'
  last activity; when a process's lease runs out, the first other process to notice takes
  its runs over: each is recorded as stopped, saying which process died, and its slot is
  freed for the queue. A process that finds its own lease lost stops the runs it still has;
- a victim of ``evict_oldest`` on another process is asked to stop through its log (the
  request its process carries out, like a user's).

What callers read without a decision (queue positions, counts) comes from the rows as
of this process's last transaction or lease renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from server.sessions import (
    RETRY_FILL_SECONDS,
    Blocked,
    Caps,
    Launch,
    Load,
    QueueNotice,
    RunHandle,
    Stop,
    announce_positions,
    blocked_by,
    cap_message,
    check_admission,
    check_queue_room,
    close_idle,
)
from storage import ConversationNotFound, StorageError
from storage.cluster import ClusterLedger, LedgerRow, LedgerTransaction

logger = logging.getLogger(__name__)

TakeOver = Callable[[str, str], Awaitable[None]]
"""``taken_over(conversation_id, reason)``: record the end of a dead process's run."""


def node_name() -> str:
    """This process, unique across restarts: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class ClusterSessions:
    def __init__(
        self,
        caps: Caps,
        ledger: ClusterLedger,
        *,
        lease_seconds: float,
        launch: Launch,
        stop: Stop,
        stop_remote: Stop,
        queued: QueueNotice,
        taken_over: TakeOver,
    ) -> None:
        self.caps = caps
        self.ledger = ledger
        self.node = node_name()
        self.lease_seconds = lease_seconds
        self._launch = launch
        self._stop = stop
        self._stop_remote = stop_remote
        self._notify_queued = queued
        self._taken_over = taken_over
        self._local: dict[str, RunHandle] = {}
        """Runs of this process that hold a running row."""
        self._rows: list[LedgerRow] = []
        """The ledger as of the last transaction or renewal (what readers see)."""
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Future[None]] = set()
        self._releases: dict[str, asyncio.Future[None]] = {}
        self._watch: asyncio.Task[None] | None = None
        self._closed = False

    # -- what callers see ------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def admission(self) -> AsyncIterator[ClusterAdmission]:
        """Hold the cluster-wide lock while preparing and admitting a conversation."""
        async with self._lock, self.ledger.transaction() as transaction:
            admission = ClusterAdmission(self, transaction)
            yield admission
            self._rows = list(transaction.rows)

    def queue_position(self, conversation_id: str) -> int | None:
        for position, row in enumerate(_queue(self._rows), start=1):
            if row.conversation_id == conversation_id:
                return position
        return None

    def is_running(self, conversation_id: str) -> bool:
        return conversation_id in self._local or any(
            row.conversation_id == conversation_id and row.state == "running" for row in self._rows
        )

    @property
    def running(self) -> list[str]:
        return [row.conversation_id for row in self._rows if row.state == "running"]

    @property
    def queued(self) -> list[str]:
        return [row.conversation_id for row in _queue(self._rows)]

    async def refresh(self) -> None:
        """Read the ledger now (what another process changed since our last look)."""
        self._rows = await self.ledger.snapshot()

    # -- run lifecycle ---------------------------------------------------------------

    async def start(self, watch_interval: float | None = None) -> None:
        """Join the cluster and start renewing the lease (and watching for dead
        processes, idle runs and room for the queue)."""
        await self.ledger.join(self.node, self.lease_seconds)
        self._rows = await self.ledger.snapshot()
        if self._watch is None:
            interval = watch_interval or max(self.lease_seconds / 3, 0.1)
            self._watch = asyncio.create_task(self._keep_lease(interval))

    def ended(self, conversation_id: str) -> None:
        """A run of this process ended: its row goes, its slot to the queue (unless this
        process is closing: then another process fills it)."""
        if self._local.pop(conversation_id, None) is not None:
            release = self._spawn(self._release(conversation_id))
            self._releases[conversation_id] = release
            release.add_done_callback(lambda _: self._releases.pop(conversation_id, None))

    async def released(self, conversation_id: str) -> None:
        """Returns once the conversation's row of this process is gone (or never was)."""
        release = self._releases.get(conversation_id)
        if release is not None:
            await asyncio.shield(release)

    async def forget(self, conversation_id: str) -> bool:
        """Drop the conversation from the queue; True when it was queued."""
        async with self.admission() as admission:
            return await admission.forget(conversation_id)

    async def close(self) -> None:
        """Start nothing more. The lease is still renewed while this process's runs stop
        (their rows go as they end), so none is taken over meanwhile: see `leave`."""
        self._closed = True

    async def leave(self) -> None:
        """Once the runs have stopped: stop renewing and leave the cluster. A run that
        has not ended by now is taken over by another process."""
        self._closed = True
        for task in tuple(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, StorageError):
                await task
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        with contextlib.suppress(StorageError):
            await self.ledger.leave(self.node)

    # -- internals (lock held unless noted) -----------------------------------------

    def _room_for(self, rows: list[LedgerRow], owner: str | None) -> Blocked:
        return blocked_by(self.caps, _load(rows, owner))

    async def _start(
        self,
        transaction: LedgerTransaction,
        conversation_id: str,
        new: tuple[str | None, int] | None,
    ) -> None:
        """Launch here, then take the running row (a queued row moves; ``new``: owner and
        priority of a row to add). A failed launch takes nothing."""
        handle = await self._launch(conversation_id)
        try:
            if new is None:
                await transaction.run_on(conversation_id, self.node)
            else:
                await transaction.add(conversation_id, *new, self.node)
        except BaseException:
            await self._stop(conversation_id, "the cluster ledger could not record the run")
            raise
        self._local[conversation_id] = handle

    async def _evict_for(
        self, transaction: LedgerTransaction, owner: str | None, blocked: Blocked
    ) -> None:
        now_us = time.time() * 1e6
        candidates = []
        for row in transaction.rows:
            if row.state != "running" or (blocked == "user" and row.owner != owner):
                continue
            handle = self._local.get(row.conversation_id)
            last = (
                now_us - (time.monotonic() - handle.last_activity) * 1e6
                if handle is not None
                else row.last_active_us
            )
            candidates.append((last, row.conversation_id, row.node))
        _, victim, node = min(candidates)
        message = cap_message(self.caps, blocked, owner, _load(transaction.rows, owner))
        reason = f"evicted to make room: {message}"
        await transaction.remove(victim)
        if self._local.pop(victim, None) is not None:
            await self._stop(victim, reason)
        else:
            logger.info("asking %s (on %s) to stop: %s", victim, node, reason)
            await self._stop_remote(victim, reason)

    async def _release(self, conversation_id: str) -> None:
        """Not under the lock: takes it."""
        while True:
            try:
                async with self.admission() as admission:
                    await admission.transaction.remove(conversation_id, self.node)
                    if not self._closed:
                        await self._fill(admission.transaction)
                return
            except StorageError as exc:
                logger.warning("could not release %s's slot, retrying: %s", conversation_id, exc)
                await asyncio.sleep(RETRY_FILL_SECONDS)

    async def _fill(self, transaction: LedgerTransaction) -> None:
        """Start queued conversations here while there is room."""
        changed = False
        for row in _queue(transaction.rows):
            if self._closed:
                break
            if self._room_for(transaction.rows, row.owner) != "ok":
                if self._room_for(transaction.rows, None) == "global":
                    break
                continue
            try:
                await self._start(transaction, row.conversation_id, None)
            except ConversationNotFound:
                await transaction.remove(row.conversation_id)  # deleted while it waited
            except Exception as exc:
                # It keeps its place; another try at the next renewal.
                logger.warning("could not start queued %s: %s", row.conversation_id, exc)
                break
            changed = True
        if changed:
            await self._announce(transaction.rows)

    async def _announce(self, rows: list[LedgerRow]) -> None:
        ordered = [row.conversation_id for row in _queue(rows)]
        await announce_positions(self._notify_queued, ordered)

    async def _keep_lease(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self._renew()
                if not self._closed:
                    await self._take_over_and_fill()
                    await self._close_idle()
            except StorageError as exc:
                logger.warning("cluster upkeep failed, retrying: %s", exc)

    async def _renew(self) -> None:
        now_us, now = time.time() * 1e6, time.monotonic()
        activity = {
            conversation_id: int(now_us - (now - handle.last_activity) * 1e6)
            for conversation_id, handle in self._local.items()
        }
        if await self.ledger.renew(self.node, self.lease_seconds, activity):
            self._rows = await self.ledger.snapshot()
            return
        # Our lease ran out and another process took our runs over: stop what is left.
        logger.error("this process's cluster lease was lost; stopping its runs")
        lost = list(self._local)
        self._local.clear()
        for conversation_id in lost:
            with contextlib.suppress(Exception):
                await self._stop(conversation_id, "this server process lost its cluster lease")
        await self.ledger.join(self.node, self.lease_seconds)
        self._rows = await self.ledger.snapshot()

    async def _take_over_and_fill(self) -> None:
        rows = self._rows
        # Only another process's runs can need taking over (the lock decides which).
        others = any(row.state == "running" and row.node != self.node for row in rows)
        room = self._room_for(rows, None) == "ok" and any(row.state == "queued" for row in rows)
        if not others and not room:
            return
        async with self.admission() as admission:
            transaction = admission.transaction
            for node in await transaction.expired_nodes():
                if node == self.node:
                    continue
                for row in [r for r in transaction.rows if r.node == node]:
                    reason = (
                        f"the server process running it ({node}) stopped renewing its lease; "
                        f"{self.node} took it over"
                    )
                    await self._taken_over(row.conversation_id, reason)
                    await transaction.remove(row.conversation_id, node)
                await transaction.remove_node(node)
            await self._fill(transaction)

    async def _close_idle(self) -> None:
        if self.caps.idle_close_delay is not None:
            await close_idle(self._local, self.caps.idle_close_delay, self._stop)

    def _spawn(self, work: Awaitable[None]) -> asyncio.Future[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


class ClusterAdmission:
    """Decisions taken while `ClusterSessions.admission()` holds the cluster-wide lock."""

    def __init__(self, manager: ClusterSessions, transaction: LedgerTransaction) -> None:
        self._manager = manager
        self.transaction = transaction

    def row(self, conversation_id: str) -> LedgerRow | None:
        """The conversation's row: running (on which process) or queued."""
        for row in self.transaction.rows:
            if row.conversation_id == conversation_id:
                return row
        return None

    def check(self, owner: str | None) -> None:
        """Raise now if the policy would refuse (`check_admission`): before anything is
        written."""
        check_admission(self._manager.caps, owner, _load(self.transaction.rows, owner))

    async def admit(self, conversation_id: str, owner: str | None, priority: int) -> int | None:
        """Start the conversation here, evicting or queueing per the policy. Returns its
        queue position when it was queued, None when it runs (here or elsewhere)."""
        manager, transaction = self._manager, self.transaction
        existing = self.row(conversation_id)
        if existing is not None:
            return None if existing.state == "running" else self._position(conversation_id)
        blocked = manager._room_for(transaction.rows, owner)
        if blocked == "ok":
            await manager._start(transaction, conversation_id, (owner, priority))
            return None
        match manager.caps.policy:
            case "reject":
                self.check(owner)
            case "evict_oldest":
                await manager._evict_for(transaction, owner, blocked)
                await manager._start(transaction, conversation_id, (owner, priority))
                return None
        check_queue_room(manager.caps, len(_queue(transaction.rows)))
        await transaction.add(conversation_id, owner, priority, None)
        await manager._announce(transaction.rows)
        return self._position(conversation_id)

    async def forget(self, conversation_id: str) -> bool:
        row = self.row(conversation_id)
        if row is None or row.state != "queued":
            return False
        await self.transaction.remove(conversation_id)
        await self._manager._announce(self.transaction.rows)
        return True

    def _position(self, conversation_id: str) -> int | None:
        for position, row in enumerate(_queue(self.transaction.rows), start=1):
            if row.conversation_id == conversation_id:
                return position
        return None


def _load(rows: list[LedgerRow], owner: str | None) -> Load:
    running = [row for row in rows if row.state == "running"]
    of_owner = sum(row.owner == owner for row in running)
    return Load(len(running), of_owner, len(rows) - len(running))


def _queue(rows: list[LedgerRow]) -> list[LedgerRow]:
    """Queued rows, first to start first: higher priority, then arrival."""
    return sorted(
        (row for row in rows if row.state == "queued"), key=lambda row: (-row.priority, row.order)
    )
