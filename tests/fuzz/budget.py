"""How much a fuzz run may do: inputs and seconds, shared by every phase."""

from __future__ import annotations

import time


class Exhausted(Exception):
    """The budget is spent: the phase stops where it is."""


class Budget:
    def __init__(self, max_inputs: int, seconds: float) -> None:
        self.max_inputs = max_inputs
        self.used = 0
        self.deadline = time.monotonic() + seconds

    def spend(self, inputs: int = 1) -> None:
        """Count inputs about to be tried; raises `Exhausted` when none are left."""
        if self.used + inputs > self.max_inputs or time.monotonic() > self.deadline:
            raise Exhausted
        self.used += inputs

    def share(self, parts: int) -> int:
        """Inputs each of ``parts`` equal shares of what is left may use."""
        return max(1, (self.max_inputs - self.used) // max(1, parts))

    @property
    def seconds_left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())
