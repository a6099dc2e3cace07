"""The cluster ledger: which conversations run on which server process, and which wait.

Several server processes on one database share the caps and the queue through this
ledger. Every decision is taken in a `LedgerTransaction` that holds one cluster-wide lock
(so two processes never both take the last slot), and each process holds a lease that it
renews; a process whose lease has expired is dead, and another takes its runs over.
Only backends shared by several processes have a ledger (PostgreSQL); SQLite has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

RowState = Literal["running", "queued"]


@dataclass(frozen=True, kw_only=True)
class LedgerRow:
    conversation_id: str
    owner: str | None
    """The user the conversation belongs to (per-user caps)."""
    priority: int
    state: RowState
    node: str | None
    """The server process running it; None while queued."""
    order: int
    """Arrival order: first come, first served within a priority."""
    last_active_us: int
    """When its run last did something, as its process last reported (eviction)."""


class LedgerTransaction(Protocol):
    """One decision, under the cluster-wide lock; committed when the block ends without
    an exception, rolled back otherwise."""

    rows: list[LedgerRow]
    """Every row, as of taking the lock."""

    async def add(
        self, conversation_id: str, owner: str | None, priority: int, node: str | None
    ) -> LedgerRow:
        """A running row (``node`` set) or a queued one (``node`` None)."""
        ...

    async def run_on(self, conversation_id: str, node: str) -> None:
        """A queued row starts running on ``node``."""
        ...

    async def remove(self, conversation_id: str, node: str | None = None) -> bool:
        """Remove the row (only if it runs on ``node``, when given); True if it was there."""
        ...

    async def expired_nodes(self) -> list[str]:
        """Processes with running rows and no live lease (it ran out by the database's
        clock, or they left)."""
        ...

    async def remove_node(self, node: str) -> None:
        """Forget a process whose lease ran out."""
        ...


class ClusterLedger(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[LedgerTransaction]: ...

    async def join(self, node: str, lease_seconds: float) -> None:
        """Register this process with a lease of ``lease_seconds``."""
        ...

    async def renew(self, node: str, lease_seconds: float, activity: Mapping[str, int]) -> bool:
        """Extend the lease and record the last activity (µs) of this process's runs.
        False when the lease was already lost (another process took the runs over)."""
        ...

    async def snapshot(self) -> list[LedgerRow]:
        """Every row, without the lock (what a reader shows)."""
        ...

    async def leave(self, node: str) -> None: ...

    async def close(self) -> None: ...
