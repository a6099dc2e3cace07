"""Hooks on runs: what else follows a conversation's run (its task, its schedule).

The run owner calls every listener when a run is launched (at once, then in a task of its
own), as it enters each phase of its start, and once its end is durable. Listeners are
told, never asked: a listener that fails is logged and the run goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a run ended."""

    state: str
    """The agent's final state: finished, stopped, error or rejected."""
    reason: str
    cost: float
    """What this run spent (the budget flag's currency)."""
    continues: bool
    """Another run starts at once (for a message the agent never saw)."""


class RunListener(Protocol):
    def run_began(self, conversation_id: str, created: bool) -> None:
        """A run's start is recorded and its first phase is yet to come: a listener may
        start reading, once for the whole run, what its later calls need (it must not
        block). ``created``: the conversation was created for this run by
        `ConversationService.create`, with nothing but its messages (no task)."""
        ...

    async def run_launched(self, conversation_id: str) -> None:
        """A run was admitted and its start recorded (its sandbox is starting)."""
        ...

    async def run_phase(self, conversation_id: str, phase: str) -> None:
        """The run entered a phase of its start (awaited by the run: keep it short)."""
        ...

    async def run_settled(self, conversation_id: str, outcome: RunOutcome) -> None:
        """The run ended and its end is durable."""
        ...


class RunListeners:
    def __init__(self) -> None:
        self._listeners: list[RunListener] = []

    def add(self, listener: RunListener) -> None:
        self._listeners.append(listener)

    def began(self, conversation_id: str, *, created: bool = False) -> None:
        for listener in self._listeners:
            try:
                listener.run_began(conversation_id, created)
            except Exception:
                logger.exception("a run listener failed on the start of %s", conversation_id)

    async def launched(self, conversation_id: str) -> None:
        for listener in self._listeners:
            try:
                await listener.run_launched(conversation_id)
            except Exception:
                logger.exception("a run listener failed on the launch of %s", conversation_id)

    async def phase(self, conversation_id: str, phase: str) -> None:
        for listener in self._listeners:
            try:
                await listener.run_phase(conversation_id, phase)
            except Exception:
                logger.exception("a run listener failed on %s of %s", phase, conversation_id)

    async def settled(self, conversation_id: str, outcome: RunOutcome) -> None:
        for listener in self._listeners:
            try:
                await listener.run_settled(conversation_id, outcome)
            except Exception:
                logger.exception("a run listener failed on the end of %s", conversation_id)
