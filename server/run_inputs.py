"""What users send a run, as the log records it: control requests, and (when several
server processes share a database) the follower that hands a run its input.

In a cluster a user's message or control request may reach any process, while the run
lives on one. The log is the way between them: the receiving process appends the
request (under the cluster lock, having seen the run's ledger row) and the run's own
process follows the run's log and acts on every user message and control request in log
order, its own process's included. A run's follower stops only after the run's row is
gone and it has read the log to its end, so a request logged while the row existed is
never left behind: either the follower acts on it, or the sender saw no row and started
a run itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from events import AgentState, ChangeAgentStateAction, MessageAction
from events.actions import ChangeAgentStateArgs
from server.controller import ConversationRun
from storage import Storage, StorageError, StoredEvent

logger = logging.getLogger(__name__)

Control = Literal["pause", "resume", "stop"]
CONTROLS: dict[str, Control] = {"paused": "pause", "running": "resume", "stopped": "stop"}
_WANTED: dict[Control, AgentState] = {"pause": "paused", "resume": "running", "stop": "stopped"}
_INPUT = frozenset({"message", "change_agent_state"})
_USER = b'"source":"user"'


def control_request(command: Control, who: str, via: str) -> ChangeAgentStateAction:
    """The audit record of a control request: what was asked, by whom, through what."""
    arguments = ChangeAgentStateArgs.model_validate(
        {
            "agent_state": _WANTED[command],
            "thought": f"{command} requested by {who} via {via}",
            "requested_by": who,
        }
    )
    return ChangeAgentStateAction(source="user", args=arguments)


class InputFollower:
    """Follows one run's log from ``after`` and acts on what users send it."""

    def __init__(
        self,
        run: ConversationRun,
        storage: Storage,
        after: int,
        start_next: Callable[[str], Awaitable[None]],
    ) -> None:
        self.run = run
        self._storage = storage
        self._after = after
        self._start_next = start_next
        self._seen = after
        self._until: int | None = None
        self._caught_up = asyncio.Event()
        self._task: asyncio.Task[None] = asyncio.create_task(self._follow())

    async def finish(self, released: Awaitable[None]) -> None:
        """Once the run's end is durable and its ledger row ``released``: act on what is
        logged up to now, then stop."""
        await self.run.settled.wait()
        await released
        try:
            self._until = await self._storage.latest_event_id(self.run.conversation_id)
        except StorageError as exc:
            logger.warning("could not read the end of %s: %s", self.run.conversation_id, exc)
            self._until = self._seen
        if self._seen >= self._until:
            self._caught_up.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._caught_up.wait(), 30)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _follow(self) -> None:
        conversation_id = self.run.conversation_id
        try:
            async with self._storage.subscribe(conversation_id, self._after) as events:
                async for stored in events:
                    self._seen = stored.id
                    # Most events are the agent's: skip parsing those (orjson writes the
                    # field exactly so; a match inside a text is then checked in full).
                    if _USER in stored.data and _is_user_input(stored.to_dict()):
                        await self._act(stored)
                    if self._until is not None and stored.id >= self._until:
                        self._caught_up.set()
        except StorageError as exc:  # the conversation went, or the store closed
            logger.info("stopped following %s: %s", conversation_id, exc)
            self._caught_up.set()

    async def _act(self, stored: StoredEvent) -> None:
        run = self.run
        event = stored.to_event()
        try:
            if isinstance(event, MessageAction):
                if run.active:
                    run.deliver(event)
                else:  # it ended: the message starts the next run (here or elsewhere)
                    await self._start_next(run.conversation_id)
            elif isinstance(event, ChangeAgentStateAction):
                command = CONTROLS.get(event.args.agent_state)
                who = (event.args.model_extra or {}).get("requested_by") or "a user"
                if command == "stop":
                    await run.stop(f"stopped by {who}")
                elif command == "pause" and run.active:
                    await run.pause(f"paused by {who}")
                elif command == "resume":
                    if run.active:
                        await run.resume(f"resumed by {who}")
                    else:
                        await self._start_next(run.conversation_id)
        except Exception as exc:
            logger.warning(
                "could not act on event %d of %s: %s", stored.id, run.conversation_id, exc
            )


def _is_user_input(shape: dict[str, object]) -> bool:
    """A message or control request a user sent (the service logs them with no original
    id; a replay's copies of recorded user actions carry theirs, and are the run's own)."""
    return (
        shape.get("source") == "user"
        and shape.get("action") in _INPUT
        and shape.get("original_id") is None
    )
