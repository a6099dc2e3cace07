"""`RunOwner`: every run of this process, from admission to its durable end.

It is the one owner of a run's life: it admits runs through the `SessionManager` (caps,
queue, eviction), launches them (a `ConversationRun` records its own state changes, each
one write of the log and the record together), stops them (idempotently), releases
their slot when they end (the run calls back from a ``finally``, whatever failed), and
keeps an ended run until its end is durable, so a new run of the same conversation
never starts before the previous one's end is written.

- A message delivered to a run that ends before its agent looked at it starts the next
  run, as a message after the end would: nothing a user sends falls between two runs.
- Deleting a conversation stops its run and refuses new launches until it is gone.
- Shutting down admits nothing: no queued run starts while the running ones stop, and
  callers get 503 with ``Retry-After`` until the server is back.
- At start, conversations a crash left running are recorded as stopped, queued ones
  queue again, and a log that disagrees with its record is repaired (in the background).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

from events import AgentState, AgentStateChangedObservation, build_filter
from events.observations import AgentStateChangedExtras
from runtime.sandbox import Sandbox
from server.agents import Agents
from server.cluster import ClusterAdmission, ClusterSessions
from server.controller import ConversationRun, RunLimits, status_for
from server.errors import BadRequest, Forbidden, InsufficientStorage, ServiceUnavailable
from server.replays import agent_for
from server.run_inputs import InputFollower, control_request
from server.run_listeners import RunListeners, RunOutcome
from server.runtimes import clone_url, local_runtime_refusal, make_runtime, runtime_missing
from server.sessions import Admission, Caps, SessionManager
from server.settings import Settings
from storage import (
    ConversationNotFound,
    ConversationPatch,
    ConversationRecord,
    ConversationStatus,
    Storage,
    StorageError,
)

logger = logging.getLogger(__name__)

SETTLE_WAIT_SECONDS = 5.0
SHUTDOWN_SETTLE_SECONDS = 5.0
FORGET_ENDED_SECONDS = 5.0
"""How long an ended run stays known after its end is written (see `_after`)."""
RETRY_AFTER_SECONDS = 5.0
TERMINAL_STATUSES = frozenset({"STOPPED", "ERROR", "ARCHIVED"})
_STATE_EVENTS = build_filter(include_types=["observation:agent_state_changed"])


class RunOwner:
    def __init__(self, storage: Storage, settings: Settings, agents: Agents) -> None:
        self.storage = storage
        self.settings = settings
        self.agents = agents
        self.closing = False
        self._runs: dict[str, ConversationRun] = {}
        """Runs that are active, or ended and not yet settled."""
        self._deleting: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.listeners = RunListeners()
        """Told of every run's launch, start phases and durable end (tasks, schedules)."""
        self._followers: dict[str, InputFollower] = {}
        caps = Caps(
            max_running=settings.max_running,
            max_running_per_user=settings.max_running_per_user,
            policy=settings.at_cap,  # type: ignore[arg-type]
            idle_close_delay=settings.idle_close_delay,
            max_queued=settings.max_queued,
        )
        ledger = storage.cluster()
        self.sessions: SessionManager | ClusterSessions
        if ledger is None:
            self.sessions = SessionManager(
                caps, launch=self._launch, stop=self.stop, queued=self._queued
            )
        else:
            self.sessions = ClusterSessions(
                caps, ledger, lease_seconds=settings.cluster_lease,
                launch=self._launch, stop=self.stop, stop_remote=self._ask_to_stop,
                queued=self._queued, taken_over=self._taken_over,
            )  # fmt: skip

    # -- what callers see ------------------------------------------------------------

    def run_of(self, conversation_id: str) -> ConversationRun | None:
        """The conversation's active run, if any."""
        run = self._runs.get(conversation_id)
        return run if run is not None and run.active else None

    @property
    def clustered(self) -> bool:
        """Several server processes share the database: runs may live elsewhere."""
        return isinstance(self.sessions, ClusterSessions)

    def active_count(self) -> int:
        """Runs under way, each with its sandbox."""
        return sum(1 for run in self._runs.values() if run.active)

    def refuse_when_closing(self) -> None:
        if self.closing:
            raise ServiceUnavailable(
                "the server is shutting down; try again once it is back",
                retry_after=RETRY_AFTER_SECONDS,
            )

    @contextlib.asynccontextmanager
    async def admission(self, conversation_id: str) -> AsyncIterator[Admission | ClusterAdmission]:
        """The admission lock, once the conversation's previous run (if any) has its
        end written. Raises `ServiceUnavailable` when shutting down, `InsufficientStorage`
        when the previous end still cannot be written."""
        self.refuse_when_closing()
        await self._previous_end(conversation_id)
        async with self.sessions.admission() as admission:
            self.refuse_when_closing()
            yield admission

    async def start(self, record: ConversationRecord) -> int | None:
        """Admit a run of the conversation (unless one is active); returns its queue
        position when it was queued."""
        async with self.admission(record.id) as admission:
            if self.run_of(record.id) is not None:
                return None
            if admission.row(record.id) is not None:  # runs on another process, or queued
                return await admission.admit(record.id, record.owner, record.priority)
            admission.check(record.owner)
            return await admission.admit(record.id, record.owner, record.priority)

    async def stop(self, conversation_id: str, reason: str = "stopped by the user") -> None:
        """Stop the active run, if any; returns once its sandbox is closed."""
        run = self._runs.get(conversation_id)
        if run is not None:
            await run.stop(reason)

    async def delete(self, conversation_id: str, remove: Callable[[], Awaitable[None]]) -> None:
        """Stop the conversation's run and call ``remove()`` (which deletes it), with no
        launch in between (here; a run on another process is asked to stop first)."""
        async with self.sessions.admission() as admission:
            await admission.forget(conversation_id)
            row = admission.row(conversation_id)
            self._deleting.add(conversation_id)
        try:
            if row is not None and row.state == "running" and row.node != self._node:
                await self._ask_to_stop(conversation_id, "the conversation was deleted")
                await self._ended_elsewhere(conversation_id)
            await self.stop(conversation_id, "the conversation was deleted")
            await remove()
        finally:
            self._deleting.discard(conversation_id)

    def as_launched(self, record: ConversationRecord) -> ConversationRecord:
        """``record`` (as its creation wrote it) with the status and state its run's
        start recorded since, if it runs here: what reading it back would answer."""
        run = self._runs.get(record.id)
        if run is None:
            return record
        status = cast(ConversationStatus, status_for(run.state, ended=run.done))
        return record.model_copy(update={"status": status, "agent_state": run.state})

    def live(self, record: ConversationRecord) -> dict[str, Any]:
        """What is true now and not yet in the record: control values, queue position,
        and the state of a run whose end is not written yet."""
        values: dict[str, Any] = {
            "status": record.status,
            "iteration": record.iterations,
            "max_iterations": record.max_iterations,
            "accumulated_cost": record.accumulated_cost,
            "max_budget_per_task": record.max_budget,
            "queue_position": self.sessions.queue_position(record.id),
        }
        run = self._runs.get(record.id)
        if run is not None:
            values.update(run.control_values())
            values["agent_state"] = run.state
            if run.done:
                values["status"] = status_for(run.state, ended=True)
        return values

    async def record_state(
        self, conversation_id: str, state: AgentState, reason: str, status: str, **extra: Any
    ) -> None:
        """A state change no run makes (queued, stopped while queued, recovered): the
        event and the record's status, in one write."""
        extras = AgentStateChangedExtras.model_validate(
            {"agent_state": state, "reason": reason, "conversation_status": status, **extra}
        )
        await self.storage.append(
            conversation_id,
            AgentStateChangedObservation(source="environment", extras=extras),
            patch=ConversationPatch(status=cast(ConversationStatus, status), agent_state=state),
        )

    # -- lifecycle -------------------------------------------------------------------

    async def recover(self) -> None:
        """After a crash or restart nothing runs here: record that in the conversations
        that were running (in a cluster: those no live process runs), queue again those
        that were queued, and repair (in the background) logs whose last state disagrees
        with their record."""
        await self.sessions.start()
        requeue: list[ConversationRecord] = []
        cursor = None
        while True:
            page = await self.storage.list_conversations(limit=100, cursor=cursor)
            for record in page.conversations:
                if record.status in ("RUNNING", "STARTING"):
                    await self._recover_running(record)
                elif record.status == "QUEUED":
                    requeue.append(record)
            cursor = page.next_cursor
            if cursor is None:
                break
        for record in sorted(requeue, key=lambda r: r.created_at):
            try:
                async with self.sessions.admission() as admission:
                    if admission.row(record.id) is None:
                        await admission.admit(record.id, record.owner, record.priority)
            except ServiceUnavailable as exc:  # the queue is full (a lower THREADLINE_MAX_QUEUED)
                await self.record_state(record.id, "stopped", exc.message, "STOPPED")
        self._spawn(self._repair_torn_logs())

    async def _recover_running(self, record: ConversationRecord) -> None:
        if not self.clustered:
            await self.record_state(
                record.id, "stopped", "the server restarted", "STOPPED",
                **_control_extras(record),
            )  # fmt: skip
            return
        async with self.sessions.admission() as admission:
            if admission.row(record.id) is not None:
                return  # a live process runs it, or one whose lease will run out
            current = await self.storage.get_conversation(record.id)
            if current.status in ("RUNNING", "STARTING"):
                await self.record_state(
                    record.id, "stopped", "no server process runs it any more (it restarted)",
                    "STOPPED", **_control_extras(current),
                )  # fmt: skip

    async def shutdown(self) -> None:
        """Admit nothing more, stop every run (each records why), and give their ends a
        moment to be written."""
        self.closing = True
        await self.sessions.close()
        runs = [run for run in self._runs.values() if run.active]
        await asyncio.gather(
            *(run.stop("the server is shutting down") for run in runs), return_exceptions=True
        )
        settling = [asyncio.ensure_future(run.settled.wait()) for run in self._runs.values()]
        if settling:
            _, pending = await asyncio.wait(settling, timeout=SHUTDOWN_SETTLE_SECONDS)
            for waiter in pending:
                waiter.cancel()
        await self.sessions.leave()
        for task in tuple(self._tasks):
            task.cancel()
        await self.agents.close()

    # -- internals -------------------------------------------------------------------

    async def _previous_end(self, conversation_id: str) -> None:
        run = self._runs.get(conversation_id)
        if run is None or not run.done or run.settled.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.settled.wait(), SETTLE_WAIT_SECONDS)
            return
        raise InsufficientStorage(
            "the end of the conversation's last run cannot be recorded yet (the disk is "
            "full); nothing was started",
            retry_after=30,
        )

    async def _launch(
        self, conversation_id: str, created: ConversationRecord | None = None
    ) -> ConversationRun:
        """Called by the session manager when a run may start (under its lock, or in a
        place reserved under it). ``created``: the record `ConversationService.create`
        just wrote, used instead of reading it back; such a conversation has no task
        (a task is created with its own conversation)."""
        self.refuse_when_closing()
        if conversation_id in self._deleting:
            raise ConversationNotFound(conversation_id)
        previous = self._runs.get(conversation_id)
        if previous is not None and not previous.settled.is_set():
            raise InsufficientStorage(
                "the end of the conversation's last run is not recorded yet", retry_after=30
            )
        record = (
            created if created is not None else await self.storage.get_conversation(conversation_id)
        )
        settings = self.settings
        refusal = local_runtime_refusal(settings, keys_required=record.owner is not None)
        if refusal is not None:
            raise Forbidden(refusal, code="local_runtime_refused")
        missing = runtime_missing(settings)
        if missing is not None:
            raise BadRequest(missing, code="runtime_unavailable", field="runtime")
        run = ConversationRun(
            conversation_id,
            storage=self.storage,
            runtime=make_runtime(settings, conversation_id),
            agent=agent_for(self.agents, self.storage, record, settings.agent),
            limits=RunLimits(
                max_iterations=record.max_iterations,
                max_budget=record.max_budget,
                iterations=record.iterations,
                cost=record.accumulated_cost,
                prompt_tokens=record.prompt_tokens,
                completion_tokens=record.completion_tokens,
                hard_timeout=settings.hard_timeout,
                start_timeout=settings.sandbox_start_timeout,
                repository=clone_url(record.repository, record.git_provider),
                branch=record.selected_branch,
                currency=settings.llm_currency,
            ),
            on_end=self._ended,
            on_phase=self._phase,
        )
        run.owner = record.owner
        self._runs[conversation_id] = run
        # In a cluster, user input reaches the run through its log (`server.run_inputs`),
        # from the last event before the run began: senders wait for the cluster lock,
        # which this launch holds.
        follow_from = (
            await self.storage.latest_event_id(conversation_id) if self.clustered else None
        )
        try:
            await run.begin()
        except BaseException:
            del self._runs[conversation_id]
            raise
        # Before the run's first phase.
        self.listeners.began(conversation_id, created=created is not None)
        if follow_from is not None:
            self._followers[conversation_id] = InputFollower(
                run, self.storage, follow_from, self._start_next
            )
        self._spawn(self.listeners.launched(conversation_id))
        logger.info(
            "run started: agent %s, %s runtime",
            record.settings.get("agent", settings.agent),
            settings.runtime,
            extra={"conversation_id": conversation_id},
        )
        return run

    async def _phase(self, run: ConversationRun, phase: str) -> None:
        await self.listeners.phase(run.conversation_id, phase)

    def _ended(self, run: ConversationRun) -> None:
        """A run ended (its sandbox is closed): free its slot at once; forget it once its
        end is written; a message its agent never saw starts the next run."""
        self.sessions.ended(run.conversation_id)
        logger.info(
            "run ended: %s%s",
            run.state,
            f" ({run.final_reason})" if run.final_reason else "",
            extra={"conversation_id": run.conversation_id},
        )
        leftover = bool(run.leftover_messages) and run.state == "finished"
        self._spawn(self._after(run, leftover))
        follower = self._followers.get(run.conversation_id)
        if (
            follower is not None
            and follower.run is run
            and isinstance(self.sessions, ClusterSessions)
        ):
            self._spawn(self._unfollow(follower, self.sessions.released(run.conversation_id)))

    async def _after(self, run: ConversationRun, leftover: bool) -> None:
        await run.settled.wait()
        # A long-lived server keeps no dead runs, but not at once: a request that read
        # the record just before the end was written still finds the ended run (and so
        # the final status) for a few seconds.
        asyncio.get_running_loop().call_later(FORGET_ENDED_SECONDS, self._forget, run)
        spent = run.budget.current - run.limits.cost
        outcome = RunOutcome(run.state, run.final_reason, spent, leftover and not self.closing)
        await self.listeners.settled(run.conversation_id, outcome)
        if not leftover or self.closing:
            return
        try:
            await self.start(await self.storage.get_conversation(run.conversation_id))
        except Exception as exc:
            logger.warning(
                "could not start %s for the message its last run never saw: %s",
                run.conversation_id,
                exc,
            )

    def _forget(self, run: ConversationRun) -> None:
        if self._runs.get(run.conversation_id) is run:
            del self._runs[run.conversation_id]

    async def _unfollow(self, follower: InputFollower, released: Awaitable[None]) -> None:
        await follower.finish(released)
        if self._followers.get(follower.run.conversation_id) is follower:
            del self._followers[follower.run.conversation_id]

    async def _start_next(self, conversation_id: str) -> None:
        """A message or resume reached a run that had ended: the next run (anywhere in
        the cluster; nothing if one already runs)."""
        if not self.closing:
            await self.start(await self.storage.get_conversation(conversation_id))

    @property
    def _node(self) -> str | None:
        return self.sessions.node if isinstance(self.sessions, ClusterSessions) else None

    async def _ask_to_stop(self, conversation_id: str, reason: str) -> None:
        """A run on another process: its follower carries out the request logged here."""
        await self.storage.append(
            conversation_id, control_request("stop", f"the server ({reason})", "cluster")
        )

    async def _ended_elsewhere(self, conversation_id: str) -> None:
        """Wait (a lease and a half at most) until no process runs the conversation."""
        assert isinstance(self.sessions, ClusterSessions)
        deadline = asyncio.get_running_loop().time() + self.settings.cluster_lease * 1.5
        while asyncio.get_running_loop().time() < deadline:
            rows = await self.sessions.ledger.snapshot()
            if not any(row.conversation_id == conversation_id for row in rows):
                return
            await asyncio.sleep(0.1)
        raise ServiceUnavailable(
            "the conversation's run on another server process has not stopped yet",
            retry_after=RETRY_AFTER_SECONDS,
        )

    async def _taken_over(self, conversation_id: str, reason: str) -> None:
        """A dead process's run: its honest end, its sandbox's container removed (a
        workspace on shared storage stays), and its listeners told."""
        record = await self.storage.get_conversation(conversation_id)
        await self.record_state(
            conversation_id, "stopped", reason, "STOPPED", **_control_extras(record)
        )
        logger.warning("took over: %s", reason, extra={"conversation_id": conversation_id})
        if self.settings.runtime == "docker" and runtime_missing(self.settings) is None:
            self._spawn(_discard_container(self.settings, conversation_id))
        self._spawn(
            self.listeners.settled(conversation_id, RunOutcome("stopped", reason, 0.0, False))
        )

    async def _queued(self, conversation_id: str, position: int, total: int) -> None:
        record = await self.storage.get_conversation(conversation_id)
        await self.record_state(
            conversation_id, "loading", f"queued: position {position} of {total}", "QUEUED",
            queue_position=position, **_control_extras(record),
        )  # fmt: skip

    async def _repair_torn_logs(self) -> None:
        """Logs whose last state event says running while the record says it ended (a
        version that wrote the two apart, killed between them) get the record's state."""
        repaired = 0
        cursor = None
        try:
            while True:
                page = await self.storage.list_conversations(limit=100, cursor=cursor)
                for record in page.conversations:
                    if record.status in TERMINAL_STATUSES and await self._torn(record):
                        state = cast(AgentState, record.agent_state or "stopped")
                        await self.record_state(
                            record.id, state, "the server restarted", record.status,
                            **_control_extras(record),
                        )  # fmt: skip
                        repaired += 1
                cursor = page.next_cursor
                if cursor is None:
                    break
        except (StorageError, ConversationNotFound) as exc:
            logger.warning("repairing logs stopped early: %s", exc)
        if repaired:
            logger.warning("repaired %d conversation logs that ended running", repaired)

    async def _torn(self, record: ConversationRecord) -> bool:
        page = await self.storage.search_events(
            record.id, reverse=True, limit=1, filter=_STATE_EVENTS
        )
        if not page.events:
            return False
        extras = page.events[0].to_dict().get("extras", {})
        return extras.get("conversation_status") not in (None, *TERMINAL_STATUSES)

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _discard_container(settings: Settings, conversation_id: str) -> None:
    runtime = make_runtime(settings, conversation_id)
    try:
        if isinstance(runtime, Sandbox):
            await runtime.before_host_work()  # removes the workspace's containers
    except Exception as exc:
        logger.warning("could not remove the container of %s: %s", conversation_id, exc)


def _control_extras(record: ConversationRecord) -> dict[str, Any]:
    return {
        "iteration": record.iterations,
        "max_iterations": record.max_iterations,
        "accumulated_cost": record.accumulated_cost,
        "max_budget_per_task": record.max_budget,
    }
