"""Control flags: limits that stop an agent and wait for a person.

A flag trips when its current value reaches its limit. The run then moves to ``error``
with the reason, and waits; a user message or a resume raises the limit by the flag's
increment (its original limit) and the agent continues where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ControlFlag:
    name: str
    current: float
    limit: float | None
    increment: float | None

    @classmethod
    def make(cls, name: str, current: float, limit: float | None) -> ControlFlag:
        return cls(name, current, limit, limit)

    @property
    def tripped(self) -> bool:
        return self.limit is not None and self.current >= self.limit

    def raise_limit(self) -> None:
        if self.limit is not None and self.increment is not None:
            while self.current >= self.limit:
                self.limit += self.increment

    def reason(self) -> str:
        if self.name == "budget":
            return (
                f"the budget flag tripped: ${self.current:.4f} spent of ${self.limit:.4f}; "
                "send a message or resume to raise it and continue"
            )
        return (
            f"the iteration flag tripped: {int(self.current)} of {int(self.limit or 0)} steps; "
            "send a message or resume to raise it and continue"
        )
