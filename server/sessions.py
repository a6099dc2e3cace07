"""The session manager: how many conversations run at once, and what happens at the cap.

A global cap and a per-user cap bound the running conversations (loading, working,
waiting for input, paused or held by a flag all count). At a cap the policy decides:

- ``evict_oldest``: the least recently active run that frees the cap is stopped, with an
  event in its log saying why (OpenHands' behaviour);
- ``reject``: HTTP 429 naming the cap, and nothing is written;
- ``queue``: the conversation waits in a priority queue (1-10, higher first, FIFO within
  a priority); its position is in its metadata and in its log, and changes as runs end.
  A full queue (``max_queued``) refuses more: 503 with ``Retry-After``, nothing written.

Every decision is taken under one lock, so concurrent creations cannot both pass a check.
A creation with room to run takes its place (a `Reservation`, counted by the caps) under
the lock and writes and launches after releasing it: the lock is never held across a
write, so admissions overlap their round trips to the log writer.
Runs idle (waiting for a person) longer than the close delay are stopped. Once closed
(shutdown) the manager starts nothing more: queued conversations stay queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from server.errors import ServiceUnavailable, TooManyRequests
from storage import ConversationNotFound, ConversationRecord
from storage.cluster import LedgerRow

logger = logging.getLogger(__name__)

Policy = Literal["evict_oldest", "reject", "queue"]
RETRY_FILL_SECONDS = 5.0
FULL_QUEUE_RETRY_SECONDS = 10.0


@dataclass(frozen=True, kw_only=True)
class Caps:
    max_running: int = 20
    max_running_per_user: int | None = None
    policy: Policy = "queue"
    idle_close_delay: float | None = 900.0
    max_queued: int = 1000


Blocked = Literal["ok", "global", "user"]


@dataclass(frozen=True, slots=True)
class Load:
    """What the caps are checked against, as one manager sees it."""

    running: int
    """Runs admitted, every user's."""
    of_owner: int
    """Runs admitted of the user asking (0, not counted, without a per-user cap)."""
    queued: int


def blocked_by(caps: Caps, load: Load) -> Blocked:
    """Which cap, if any, a new run of the user behind ``load`` meets."""
    if load.running >= caps.max_running:
        return "global"
    if caps.max_running_per_user is not None and load.of_owner >= caps.max_running_per_user:
        return "user"
    return "ok"


def cap_message(caps: Caps, blocked: Blocked, owner: str | None, load: Load) -> str:
    if blocked == "user":
        return (
            f"{owner or 'this user'} already runs {load.of_owner} conversations, "
            f"the per-user cap is {caps.max_running_per_user}"
        )
    return f"{load.running} conversations run, the global cap is {caps.max_running}"


def check_admission(caps: Caps, owner: str | None, load: Load) -> None:
    """Raise now what the policy would refuse (before anything is written): 429 at a cap
    under ``reject``, 503 with Retry-After when the queue is full under ``queue``."""
    blocked = blocked_by(caps, load)
    if blocked == "ok":
        return
    if caps.policy == "queue":
        check_queue_room(caps, load.queued)
    elif caps.policy == "reject":
        cap = caps.max_running if blocked == "global" else caps.max_running_per_user
        raise TooManyRequests(
            f"too many running conversations: {cap_message(caps, blocked, owner, load)}",
            cap=cap,
            scope=blocked,
        )


def check_queue_room(caps: Caps, queued: int) -> None:
    if queued >= caps.max_queued:
        raise ServiceUnavailable(
            f"the queue is full: {queued} conversations wait for a place "
            f"(THREADLINE_MAX_QUEUED is {caps.max_queued}); nothing was started",
            code="queue_full",
            retry_after=FULL_QUEUE_RETRY_SECONDS,
        )


async def announce_positions(notify: QueueNotice, ordered: Sequence[str]) -> None:
    """Tell each queued conversation its place (``ordered``: first to start first)."""
    for position, conversation_id in enumerate(ordered, start=1):
        try:
            await notify(conversation_id, position, len(ordered))
        except Exception as exc:  # a position not recorded is shown at the next change
            logger.warning("could not record %s's queue position: %s", conversation_id, exc)


async def close_idle(runs: Mapping[str, RunHandle], delay: float, stop: Stop) -> None:
    """Stop the runs that have waited for a person longer than ``delay`` seconds."""
    now = time.monotonic()
    stale = [cid for cid, run in runs.items() if run.idle and now - run.last_activity > delay]
    for conversation_id in stale:
        try:
            await stop(conversation_id, f"closed after {delay:g} seconds idle")
        except Exception as exc:
            logger.warning("could not close idle %s: %s", conversation_id, exc)


@dataclass(order=True)
class _Queued:
    sort_key: tuple[int, int]
    conversation_id: str = field(compare=False)
    owner: str | None = field(compare=False)
    priority: int = field(compare=False)


class RunHandle(Protocol):
    """What the manager needs to know about a running conversation."""

    owner: str | None
    last_activity: float

    @property
    def idle(self) -> bool: ...


class Launch(Protocol):
    """Start a run of the conversation. ``created``: the record its creation just wrote
    (`server.service.ConversationService.create`), so the launch need not read it."""

    def __call__(
        self, conversation_id: str, created: ConversationRecord | None = None, /
    ) -> Awaitable[RunHandle]: ...


Stop = Callable[[str, str], Awaitable[None]]
QueueNotice = Callable[[str, int, int], Awaitable[None]]


@dataclass(eq=False)
class _Reserved:
    """The place of a conversation being written and launched outside the lock."""

    owner: str | None
    last_activity: float = math.inf  # never the oldest: nothing to evict yet
    idle: bool = False


class SessionManager:
    def __init__(self, caps: Caps, *, launch: Launch, stop: Stop, queued: QueueNotice) -> None:
        self.caps = caps
        self._launch = launch
        self._stop = stop
        self._notify_queued = queued
        self._running: dict[str, RunHandle] = {}
        self._queue: list[_Queued] = []
        self._order = itertools.count()
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle_task: asyncio.Task[None] | None = None
        self._closed = False

    # -- what callers see ------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def admission(self) -> AsyncIterator[Admission]:
        """Hold the admission lock while preparing and admitting a conversation."""
        async with self._lock:
            yield Admission(self)

    def queue_position(self, conversation_id: str) -> int | None:
        for position, entry in enumerate(sorted(self._queue), start=1):
            if entry.conversation_id == conversation_id:
                return position
        return None

    def is_running(self, conversation_id: str) -> bool:
        return conversation_id in self._running

    @property
    def running(self) -> list[str]:
        return list(self._running)

    @property
    def queued(self) -> list[str]:
        """Queued conversations, first to start first."""
        return [entry.conversation_id for entry in sorted(self._queue)]

    def owner_of_running(self, conversation_id: str) -> str | None:
        return self._running[conversation_id].owner

    # -- run lifecycle ---------------------------------------------------------------

    def ended(self, conversation_id: str) -> None:
        """A run ended (finished, stopped, failed): its slot may go to the queue."""
        if self._running.pop(conversation_id, None) is not None and not self._closed:
            self._spawn(self._fill_from_queue())

    async def leave(self) -> None:
        """Nothing to leave: one process is not a cluster (see `server.cluster`)."""

    async def refresh(self) -> None:
        """Nothing to read: this process holds the whole truth (see `server.cluster`)."""

    async def start(self) -> None:
        """Start closing idle runs."""
        self.start_idle_watch()

    async def forget(self, conversation_id: str) -> bool:
        """Drop the conversation from the queue (stopped or deleted while waiting);
        True when it was queued."""
        return self._forget(conversation_id)

    def _forget(self, conversation_id: str) -> bool:
        before = len(self._queue)
        self._queue = [e for e in self._queue if e.conversation_id != conversation_id]
        if len(self._queue) == before:
            return False
        heapq.heapify(self._queue)
        self._spawn(self._announce_positions())
        return True

    def start_idle_watch(self, interval: float = 1.0) -> None:
        if self.caps.idle_close_delay is not None and self._idle_task is None:
            self._idle_task = asyncio.create_task(self._watch_idle(interval))

    async def close(self) -> None:
        """Start nothing more (queued conversations stay queued); stop watching."""
        self._closed = True
        if self._idle_task is not None:
            self._idle_task.cancel()
        for task in (*self._tasks, *([self._idle_task] if self._idle_task else [])):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- internals (lock held unless noted) -----------------------------------------

    def _load(self, owner: str | None) -> Load:
        # A walk over every run, twice per creation: only when a per-user cap reads it.
        of_owner = 0
        if self.caps.max_running_per_user is not None:
            of_owner = sum(1 for handle in self._running.values() if handle.owner == owner)
        return Load(len(self._running), of_owner, len(self._queue))

    def _room_for(self, owner: str | None) -> Blocked:
        return blocked_by(self.caps, self._load(owner))

    async def _start(self, conversation_id: str) -> None:
        self._running[conversation_id] = await self._launch(conversation_id)

    def _release(self, conversation_id: str, reserved: _Reserved) -> None:
        """A reservation that will not run gives its place back (lock not needed)."""
        if self._running.get(conversation_id) is reserved:
            del self._running[conversation_id]
            if not self._closed:
                self._spawn(self._fill_from_queue())

    async def _evict_for(self, owner: str | None, blocked: Blocked) -> None:
        candidates = [
            (handle.last_activity, conversation_id)
            for conversation_id, handle in self._running.items()
            if (blocked == "global" or handle.owner == owner) and not isinstance(handle, _Reserved)
        ]
        _, victim = min(candidates)
        self._running.pop(victim)
        message = cap_message(self.caps, blocked, owner, self._load(owner))
        reason = f"evicted to make room: {message}"
        await self._stop(victim, reason)

    async def _fill_from_queue(self) -> None:
        async with self._lock:
            started = False
            waiting: list[_Queued] = []
            while self._queue and not self._closed:
                entry = heapq.heappop(self._queue)
                if self._room_for(entry.owner) == "ok":
                    try:
                        await self._start(entry.conversation_id)
                        started = True
                    except ConversationNotFound:
                        continue  # deleted while it waited
                    except Exception as exc:
                        # It keeps its place; another try once things change (a full
                        # disk, say), or a little later.
                        logger.warning("could not start queued %s: %s", entry.conversation_id, exc)
                        waiting.append(entry)
                        self._spawn(self._fill_later())
                        break
                else:
                    waiting.append(entry)
                    if len(self._running) >= self.caps.max_running:
                        break
            for entry in waiting:
                heapq.heappush(self._queue, entry)
            if started or waiting:
                await self._announce_positions()

    async def _fill_later(self) -> None:
        await asyncio.sleep(RETRY_FILL_SECONDS)
        if not self._closed:
            await self._fill_from_queue()

    async def _announce_positions(self) -> None:
        ordered = [entry.conversation_id for entry in sorted(self._queue)]
        await announce_positions(self._notify_queued, ordered)

    async def _watch_idle(self, interval: float) -> None:
        delay = self.caps.idle_close_delay
        assert delay is not None
        while True:
            await asyncio.sleep(interval)
            await close_idle(self._running, delay, self._stop)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class Admission:
    """Decisions taken while `SessionManager.admission()` holds the lock."""

    def __init__(self, manager: SessionManager) -> None:
        self._manager = manager

    def check(self, owner: str | None) -> None:
        """Raise now if the policy would refuse (`check_admission`): before anything is
        written."""
        manager = self._manager
        check_admission(manager.caps, owner, manager._load(owner))

    async def forget(self, conversation_id: str) -> bool:
        """Drop the conversation from the queue; True when it was queued."""
        return self._manager._forget(conversation_id)

    def reserve(self, conversation_id: str, owner: str | None) -> Reservation | None:
        """A place for the conversation to run, taken now (the caps count it) and
        launched after the lock is released; None when there is no free place (or it
        already runs or waits): then `admit` under the lock decides."""
        manager = self._manager
        if conversation_id in manager._running or manager._room_for(owner) != "ok":
            return None
        if manager.queue_position(conversation_id) is not None:
            return None
        reserved = _Reserved(owner)
        manager._running[conversation_id] = reserved
        return Reservation(manager, conversation_id, reserved)

    def row(self, conversation_id: str) -> LedgerRow | None:
        """A cluster's ledger row (`server.cluster`); one process has none."""
        return None

    async def admit(self, conversation_id: str, owner: str | None, priority: int) -> int | None:
        """Start the conversation, evicting or queueing per the policy. Returns its queue
        position when it was queued, None when it runs."""
        manager = self._manager
        if conversation_id in manager._running:
            return None
        position = manager.queue_position(conversation_id)
        if position is not None:
            return position
        blocked = manager._room_for(owner)
        if blocked == "ok":
            await manager._start(conversation_id)
            return None
        match manager.caps.policy:
            case "reject":
                self.check(owner)
            case "evict_oldest":
                await manager._evict_for(owner, blocked)
                await manager._start(conversation_id)
                return None
        check_queue_room(manager.caps, len(manager._queue))
        heapq.heappush(
            manager._queue,
            _Queued((-priority, next(manager._order)), conversation_id, owner, priority),
        )
        await manager._announce_positions()
        return manager.queue_position(conversation_id)


class Reservation:
    """A place taken under the admission lock, for a conversation to be written and
    launched outside it: `launch` once it is written, `cancel` if it is not."""

    def __init__(self, manager: SessionManager, conversation_id: str, reserved: _Reserved) -> None:
        self._manager = manager
        self._conversation_id = conversation_id
        self._reserved = reserved

    async def launch(self, created: ConversationRecord | None = None) -> None:
        """Start the run in the reserved place (``created``: see `Launch`); if the launch
        fails the place is given back and the error propagates."""
        manager, conversation_id = self._manager, self._conversation_id
        try:
            handle = await manager._launch(conversation_id, created)
        except BaseException:
            manager._release(conversation_id, self._reserved)
            raise
        if manager._running.get(conversation_id) is self._reserved:
            manager._running[conversation_id] = handle

    def cancel(self) -> None:
        self._manager._release(self._conversation_id, self._reserved)
