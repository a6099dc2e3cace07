"""The probe event of the fan-out benchmark: a think action whose thought starts with the
wall-clock time it was sent at, so a client takes append -> receive latency on arrival.

Imports nothing of threadline: the client processes (`bench.fanout_client`) read it too.
"""

from __future__ import annotations

EVENT_BYTES = 530
"""About the size of a typical stored event (PERFORMANCE.md's serialization figures)."""

_FILLER = (
    "the test fails because the value is missing from the response so check how the parser "
    "handles empty input before changing the code then run the suite again and see whether "
    "it passes now "
)


def stamped_thought(sent_at: float, length: int) -> str:
    """A think action's thought that starts with the wall-clock time it was sent at
    (``time.time()``), padded with prose to ``length`` characters."""
    head = f"{sent_at:.6f} "
    padding = (_FILLER * (length // len(_FILLER) + 1))[: max(0, length - len(head))]
    return head + padding


def sent_at(thought: str) -> float:
    """The inverse of `stamped_thought`."""
    return float(thought[: thought.index(" ")])
