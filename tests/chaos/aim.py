"""Aimed kills: kill -9 at the moment a run's end is in the record but not yet in the log.

A run's final state is written to the conversation record and then logged as an
``agent_state_changed`` event. If those are two transactions, a crash between them
leaves a record that says STOPPED / ERROR under a log whose last state is still
``running``; recovery only repairs records that say RUNNING, so that disagreement is
permanent (issue 9, item 14). The window is a millisecond or two per run, so a random
kill finds it rarely. To find it on purpose, the server is frozen (SIGSTOP) at random
moments and its SQLite file read, read-only, while it cannot move; when a conversation
is caught inside the window the frozen server is killed there (SIGKILL), else thawed
(SIGCONT). A server that writes both in one transaction never shows the window, and the
round falls back to a plain kill.

This reads the SQLite backend's files (``log/events.db``: tables ``conversations`` and
``events``), the only part of the harness that knows the schema; if it does not match,
aiming is reported unavailable and kills are random.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from tests.chaos.audit import ENDED_STATES
from tests.chaos.server import ChaosServer

TORN = """
SELECT c.id, c.status, (
    SELECT e.data FROM events e
    WHERE e.conv = c.key AND e.kind = 'observation:agent_state_changed'
    ORDER BY e.id DESC LIMIT 1
)
FROM conversations c WHERE c.status IN ('STOPPED', 'ERROR')
"""


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """The process stopped (every thread) for the duration, then continued."""
    os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 1.0
        while _state(pid) not in ("T", "t") and time.monotonic() < deadline:
            time.sleep(0.0002)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "?"


def torn(database: Path) -> dict[str, str]:
    """Conversations whose record has ended while the log's last state has not."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=0.05)
    try:
        rows = connection.execute(TORN).fetchall()
    finally:
        connection.close()
    found = {}
    for conversation_id, status, data in rows:
        if data is None:
            continue
        state = (orjson.loads(data).get("extras") or {}).get("agent_state")
        if state not in ENDED_STATES:
            found[conversation_id] = f"{conversation_id[:8]}: record {status}, log {state}"
    return found


class Aim:
    def __init__(self, server: ChaosServer, rng: random.Random) -> None:
        self.server = server
        self.rng = rng
        self.database = server.data_dir / "log" / "events.db"
        self.available = True
        self.problem = ""
        self.probes = 0
        self.hits: list[str] = []
        self._known: set[str] = set()

    async def kill_in_window(self, seconds: float) -> str | None:
        """Probe for up to ``seconds``; on a hit the server is killed and the hit
        returned, else None (the server still runs; the caller kills it at random)."""
        deadline = time.monotonic() + seconds
        while self.available and time.monotonic() < deadline:
            await asyncio.sleep(self.rng.uniform(0.003, 0.015))
            pid = self.server.pid
            if pid is None:
                return None
            with frozen(pid):
                self.probes += 1
                try:
                    found = torn(self.database)
                except sqlite3.OperationalError as exc:
                    if "locked" in str(exc) or "busy" in str(exc):
                        continue
                    self.available, self.problem = False, f"cannot read the log: {exc}"
                    return None
                fresh = {cid: text for cid, text in found.items() if cid not in self._known}
                self._known.update(found)  # torn earlier and never repaired: not a new hit
                if fresh:
                    self.server.kill()
                    hit = next(iter(fresh.values()))
                    self.hits.append(hit)
                    return hit
        return None
