"""What is checked, independent of how the load was made.

* `Ledger`: every acknowledged append (a 200 with an ``event_id``), by the unique marker
  its writer put in it. `audit_log` holds the log against it: every acknowledged event at
  its id, no marker twice, ids 0..n with no gap or repeat.
* `Sequence`: what one subscriber saw across all its connections: each id exactly once,
  in order, from its first ``latest_event_id`` on.
* `disagreement`: the conversation record against the last ``agent_state_changed`` event
  of its log (the two must tell the same story).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]
MARKER = re.compile(r"chaos#([\w.-]+)")
ENDED_STATES = frozenset({"finished", "stopped", "error", "rejected"})


def marker_of(event: Event) -> str | None:
    """The writer's marker of a user action the harness sent (think or message)."""
    if event.get("source") != "user":
        return None
    args = event.get("args") or {}
    text = args.get("thought") if event.get("action") == "think" else args.get("content")
    if not isinstance(text, str):
        return None
    found = MARKER.match(text)
    return found.group(1) if found else None


@dataclass
class Ledger:
    acknowledged: dict[str, dict[str, int]] = field(default_factory=dict)
    """conversation -> marker -> acknowledged event id."""

    def acknowledge(self, conversation_id: str, marker: str, event_id: int) -> None:
        self.acknowledged.setdefault(conversation_id, {})[marker] = event_id

    def __len__(self) -> int:
        return sum(len(acks) for acks in self.acknowledged.values())


@dataclass
class LogAudit:
    events: int = 0
    lost: int = 0
    duplicated: int = 0
    gaps: int = 0
    reorders: int = 0
    examples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.examples) < 8:
            self.examples.append(text)

    def merge(self, other: LogAudit) -> None:
        self.events += other.events
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.gaps += other.gaps
        self.reorders += other.reorders
        for example in other.examples:
            self.note(example)


def audit_log(conversation_id: str, events: list[Event], ledger: Ledger) -> LogAudit:
    audit = LogAudit(events=len(events))
    ids = [event["id"] for event in events]
    repeated = sum(n - 1 for n in Counter(ids).values() if n > 1)
    audit.duplicated += repeated
    audit.reorders += sum(1 for a, b in itertools.pairwise(ids) if b < a)
    present = set(ids)
    if present:
        audit.gaps += max(present) + 1 - len(present)
        if audit.gaps:
            holes = sorted(set(range(max(present) + 1)) - present)[:5]
            audit.note(f"{conversation_id}: ids missing {holes}")
    if repeated:
        audit.note(f"{conversation_id}: {repeated} ids appear twice")
    markers: dict[str, list[int]] = {}
    for event in events:
        marker = marker_of(event)
        if marker is not None:
            markers.setdefault(marker, []).append(event["id"])
    for marker, where in markers.items():
        if len(where) > 1:
            audit.duplicated += len(where) - 1
            audit.note(f"{conversation_id}: {marker} stored at ids {where}")
    for marker, event_id in ledger.acknowledged.get(conversation_id, {}).items():
        if event_id not in markers.get(marker, []):
            audit.lost += 1
            audit.note(
                f"{conversation_id}: {marker} acknowledged as id {event_id}, log has "
                f"{markers.get(marker, 'nothing')}"
            )
    return audit


class Sequence:
    """Ids one subscriber received, across reconnections."""

    __slots__ = ("duplicates", "expected", "first", "gaps", "holes", "received", "reorders")

    def __init__(self, after: int = -1) -> None:
        self.first = after + 1
        self.expected = after + 1
        self.holes: set[int] = set()
        self.received = self.gaps = self.duplicates = self.reorders = 0

    @property
    def last(self) -> int:
        """The id to resume after (``latest_event_id``)."""
        return self.expected - 1

    def see(self, event_id: int) -> None:
        self.received += 1
        if event_id == self.expected:
            self.expected += 1
        elif event_id > self.expected:
            self.gaps += event_id - self.expected
            self.holes.update(range(self.expected, event_id))
            self.expected = event_id + 1
        elif event_id in self.holes:
            self.holes.discard(event_id)
            self.reorders += 1
        else:
            self.duplicates += 1

    def missing(self, final: int) -> int:
        """Ids up to ``final`` never received."""
        return max(0, final + 1 - self.expected) + len(self.holes)

    def tally(self, final: int) -> dict[str, int]:
        return {
            "received": self.received,
            "gaps": self.gaps,
            "duplicates": self.duplicates,
            "reorders": self.reorders,
            "missing": self.missing(final),
        }


def last_state(events: list[Event]) -> Event | None:
    for event in reversed(events):
        if event.get("observation") == "agent_state_changed":
            return event
    return None


def disagreement(record: dict[str, Any], events: list[Event]) -> str | None:
    """Why the record and the log's last state event disagree (None when they agree)."""
    last = last_state(events)
    status, agent_state = record.get("status"), record.get("agent_state")
    if last is None:
        if status in ("RUNNING", "STARTING", "QUEUED"):
            return f"record {status}/{agent_state} but the log has no state event"
        return None
    extras = last.get("extras") or {}
    logged_state, logged_status = extras.get("agent_state"), extras.get("conversation_status")
    if agent_state != logged_state or (logged_status is not None and status != logged_status):
        return (
            f"record {status}/{agent_state}, log ends in {logged_status}/{logged_state} "
            f"(id {last['id']}: {extras.get('reason', '')!r})"
        )
    return None


def still_running(record: dict[str, Any], events: list[Event]) -> str | None:
    """When nothing runs any more (the server says so): a record or a log that still
    shows the agent at work, i.e. a run wedged or recorded dishonestly."""
    last = last_state(events)
    state = (last.get("extras") or {}).get("agent_state") if last else None
    if record.get("status") in ("RUNNING", "STARTING") or (
        state is not None and state not in ENDED_STATES
    ):
        return f"record {record.get('status')}/{record.get('agent_state')}, log ends in {state}"
    return None
