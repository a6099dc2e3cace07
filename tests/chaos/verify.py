"""The checks every scenario ends with, over the real server's answers: runs settle, the
logs hold every acknowledged append exactly once with no gap, every subscriber saw every
id exactly once in order, and records agree with their logs."""

from __future__ import annotations

import asyncio
import time

from tests.chaos.api import Api, Event
from tests.chaos.audit import (
    Ledger,
    LogAudit,
    audit_log,
    disagreement,
    last_state,
    still_running,
)
from tests.chaos.fleet import Summary, totals
from tests.chaos.outcome import Outcome


async def quiesce(api: Api, within: float) -> list[str]:
    """Wait until nothing runs or waits in the queue; stop what still does once it has
    made no progress (no new event in a running conversation's log) for ``within`` s, or
    after 3 x ``within`` s in all (and give it 3 s). A run that started late and is still
    working (a message sent as space returned starts one) is not wedged. Returns what
    had to be stopped, as it was then."""
    began = time.monotonic()
    progress = began
    newest: dict[str, int] = {}
    while time.monotonic() - progress < within and time.monotonic() - began < 3 * within:
        sessions = await api.sessions()
        if not sessions["running_count"] and not sessions["queued_count"]:
            return []
        for conversation_id in sessions["running"]:
            latest = await api.last_id(conversation_id)
            if latest != newest.get(conversation_id):
                newest[conversation_id] = latest
                progress = time.monotonic()
        await asyncio.sleep(0.2)
    sessions = await api.sessions()
    stuck = [*sessions["running"], *(q["conversation_id"] for q in sessions["queued"])]
    described = []
    for conversation_id in stuck:
        record = await api.record(conversation_id)
        last = last_state(await api.events(conversation_id))
        extras = (last or {}).get("extras") or {}
        described.append(
            f"{conversation_id[:8]} record {record['status']}/{record['agent_state']}, log "
            f"{extras.get('agent_state')} {extras.get('reason', '')!r} "
            f"(id {(last or {}).get('id')})"
        )
        await api.stop(conversation_id)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if not (await api.sessions())["running_count"]:
            break
        await asyncio.sleep(0.2)
    return described


async def read_logs(api: Api, conversations: list[str]) -> dict[str, list[Event]]:
    return {cid: await api.events(cid) for cid in conversations}


def check_logs(outcome: Outcome, logs: dict[str, list[Event]], ledger: Ledger) -> LogAudit:
    """``acknowledged_kept`` and ``log_gapless`` (ids 0..n, no repeat, no marker twice)."""
    audit = LogAudit()
    for conversation_id, events in logs.items():
        audit.merge(audit_log(conversation_id, events, ledger))
    outcome.add(
        events_checked=audit.events,
        acknowledged=len(ledger),
        log_lost=audit.lost,
        log_duplicated=audit.duplicated,
        log_gaps=audit.gaps,
        log_reorders=audit.reorders,
    )
    examples = "; ".join(audit.examples[:3])
    outcome.check(
        "acknowledged_kept",
        audit.lost == 0,
        f"{len(ledger)} acknowledged appends, {audit.lost} missing from the log" + _tail(examples),
    )
    outcome.check(
        "log_gapless",
        not (audit.duplicated or audit.gaps or audit.reorders),
        f"{audit.events} events: {audit.gaps} gaps, {audit.duplicated} duplicates, "
        f"{audit.reorders} reorders" + _tail(examples),
    )
    return audit


def check_subscribers(outcome: Outcome, summary: Summary) -> None:
    """``subscribers_exact``: each subscriber saw each id once, in order, up to the end."""
    total = totals(summary)
    outcome.add(
        deliveries_checked=total["received"],
        subscribers=total["subscribers"],
        subscriber_connections=total["connections"],
        sub_missing=total["missing"],
        sub_duplicated=total["duplicates"],
        sub_gaps=total["gaps"],
        sub_reorders=total["reorders"],
    )
    per_transport = ", ".join(
        f"{transport} {value['exact']}/{value['subscribers']}"
        for transport, value in summary.items()
        if transport != "errors"
    )
    exact = total["exact"] == total["subscribers"] > 0
    outcome.check(
        "subscribers_exact",
        exact,
        f"exact: {per_transport}; missing {total['missing']}, duplicates "
        f"{total['duplicates']}, gaps {total['gaps']}, reorders {total['reorders']}"
        + ("" if exact else _tail("; ".join(summary["errors"][:3]))),
    )


def standard_totals(outcome: Outcome) -> None:
    """lost / duplicated / gaps / reorders: the log's and the subscribers' together."""
    f = outcome.figures
    outcome.add(
        lost=int(f.get("log_lost", 0)) + int(f.get("sub_missing", 0)),
        duplicated=int(f.get("log_duplicated", 0)) + int(f.get("sub_duplicated", 0)),
        gaps=int(f.get("log_gaps", 0)) + int(f.get("sub_gaps", 0)),
        reorders=int(f.get("log_reorders", 0)) + int(f.get("sub_reorders", 0)),
    )


async def disagreements(
    api: Api, conversations: list[str], attempts: int = 5, pause: float = 0.4
) -> list[str]:
    """Conversations whose record and log's last state disagree, persistently: a
    disagreement must survive ``attempts`` reads ``pause`` s apart (a state change
    writes the record just before the event, so one read can catch it in between)."""
    suspects = list(conversations)
    found: dict[str, str] = {}
    for attempt in range(attempts):
        found = {}
        for conversation_id in suspects:
            events = await api.events(conversation_id)
            problem = disagreement(await api.record(conversation_id), events)
            if problem is not None:
                found[conversation_id] = problem
        suspects = list(found)
        if not suspects:
            return []
        if attempt < attempts - 1:
            await asyncio.sleep(pause)
    return [f"{cid[:8]}: {problem}" for cid, problem in found.items()]


async def wedged(api: Api, conversations: list[str]) -> list[str]:
    """With nothing running: conversations whose record or log still shows a run."""
    found = []
    for conversation_id in conversations:
        events = await api.events(conversation_id)
        problem = still_running(await api.record(conversation_id), events)
        if problem is not None:
            found.append(f"{conversation_id[:8]}: {problem}")
    return found


def _tail(text: str) -> str:
    return f" ({text})" if text else ""
