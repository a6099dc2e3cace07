"""Control flags: limits that stop an agent and wait for a person.

A flag trips when its current value reaches its limit. The run then moves to ``error``
with the reason, and waits; a user message or a resume raises the limit by the flag's
increment (its original limit) and the agent continues where it stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class ControlFlag:
    name: str
    current: float
    limit: float | None
    increment: float | None
    unit: str = ""
    """The budget's currency (shown in its reason)."""

    @classmethod
    def make(cls, name: str, current: float, limit: float | None, unit: str = "") -> ControlFlag:
        return cls(name, current, limit, limit, unit)

    @property
    def tripped(self) -> bool:
        return self.limit is not None and self.current >= self.limit

    def raise_limit(self) -> None:
        """Raise the limit by as many increments as it takes to pass the current value
        (computed, not counted: an increment of 1e-12 must not loop a trillion times)."""
        if self.limit is None or self.increment is None or self.increment <= 0:
            return
        if self.current >= self.limit:
            steps = math.floor((self.current - self.limit) / self.increment) + 1
            self.limit += steps * self.increment
            if self.current >= self.limit:  # rounding: the sum did not move past it
                self.limit = self.current + self.increment
            # To the micro-unit costs are stored in: 0.1 + 0.2 is 0.3, not 0.30000000000000004.
            self.limit = round(self.limit, 6)
            if self.current >= self.limit:
                self.limit = round(self.current + self.increment, 6)

    def reason(self) -> str:
        if self.name == "budget":
            return (
                f"the budget flag tripped: {_amount(self.current)} {self.unit} spent of "
                f"{_amount(self.limit or 0)} {self.unit}; "
                "send a message or resume to raise it and continue"
            )
        return (
            f"the iteration flag tripped: {int(self.current)} of {int(self.limit or 0)} steps; "
            "send a message or resume to raise it and continue"
        )


def _amount(value: float) -> str:
    """Every digit there is (to the micro-unit), and at least the cents."""
    text = f"{round(value, 6):.6f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"{whole}.{cents.ljust(2, '0')}"
