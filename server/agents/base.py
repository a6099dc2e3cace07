"""The agent contract.

An agent is a coroutine that drives one run of a conversation through an
`AgentContext`: it reads the history, acts (each action is logged, executed, and its
observation logged and returned), talks to the user, and returns when it is done. The
controller behind the context enforces everything else (pause, stop, limits), so agents
stay small.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from events import ActionBase, EventBase, MessageAction, ObservationBase, TaskItem


@dataclass(frozen=True, slots=True)
class Usage:
    """What a conversation has spent, as the server recorded it."""

    cost: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class AgentContext(Protocol):
    conversation_id: str

    async def history(self) -> list[EventBase]:
        """Every event of the conversation so far, oldest first."""
        ...

    async def history_from(self, start_id: int, *, unread: bool = False) -> list[EventBase]:
        """The conversation's events from id ``start_id`` on, oldest first (an agent
        that kept what it folded of earlier ones reads only what is new). With
        ``unread``, user messages among them still count as not looked at (a run that
        ends leaves them for the next one)."""
        ...

    async def act(
        self,
        action: ActionBase,
        *,
        annotate: Callable[[ObservationBase], ObservationBase] | None = None,
    ) -> ObservationBase | None:
        """Log the action, carry it out, log and return its observation (None for
        actions that have none: messages, finish). ``annotate`` may amend the
        observation before it is logged (a replay adds what was recorded)."""
        ...

    async def checkpoint(self) -> None:
        """Pass the controller's gate without acting: wait out a pause or a tripped
        limit. Agents call it before spending (a model call)."""
        ...

    def usage(self) -> Usage:
        """What the conversation has spent so far, as the server recorded it (an agent
        counts on from there; the log may hold imported, untrusted figures)."""
        ...

    async def log(self, event: EventBase, *, settings: dict[str, Any] | None = None) -> None:
        """Log an event no action caused (a malformed tool call's error, a model
        exchange, a user's message replayed from a recording). With ``settings``, the
        conversation record's settings become these in the same write."""
        ...

    async def say(self, text: str, *, wait_for_response: bool = False) -> None:
        """Send the user a message."""
        ...

    async def plan(self, tasks: list[TaskItem]) -> None:
        """Replace the conversation's task-tracking plan."""
        ...

    def take_user_messages(self) -> list[MessageAction]:
        """User messages that arrived since the last call, without waiting."""
        ...

    async def wait_for_user_message(self) -> MessageAction:
        """Wait (in state ``awaiting_user_input``) for the user's next message."""
        ...


class Agent(Protocol):
    name: str

    async def run(self, context: AgentContext) -> None:
        """Work until done; return normally to finish the run."""
        ...
