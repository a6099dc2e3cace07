"""Scenario 2: SIGTERM rounds while runs are active, conversations wait in the queue and
messages keep arriving.

Odd rounds run with a small global cap, so some conversations are queued when the
signal lands; even rounds with no cap, so a message arriving during the drain finds its
conversation's run just stopped and may start one. The writers keep sending through
the drain; the server must exit within its grace, answer
no request with a 500, refuse what it cannot take (503) or keep what it acknowledged,
start no run on its way out, and leave queued conversations queued. Each round's
window is [SIGTERM, restart): the server's own timestamps place the events in it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from tests.chaos.api import STEPS, Api, Event
from tests.chaos.audit import Ledger
from tests.chaos.fleet import Fleet, Plan
from tests.chaos.load import Mix, Writers
from tests.chaos.options import Options
from tests.chaos.outcome import Outcome
from tests.chaos.probe import HealthProber
from tests.chaos.server import ChaosServer, RssSampler, settle
from tests.chaos.subscribers import TRANSPORTS
from tests.chaos.verify import (
    check_logs,
    check_subscribers,
    disagreements,
    quiesce,
    read_logs,
    standard_totals,
    wedged,
)

STARTING = ("starting the sandbox",)


def stamp(event: Event) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def states_between(events: list[Event], start: float, end: float) -> list[Event]:
    return [
        e
        for e in events
        if e.get("observation") == "agent_state_changed" and start <= stamp(e) < end
    ]


def queued_at(events: list[Event], moment: float) -> bool:
    """Whether the conversation's last state before ``moment`` put it in the queue."""
    before = [
        e for e in events if e.get("observation") == "agent_state_changed" and stamp(e) < moment
    ]
    return bool(before) and before[-1]["extras"].get("conversation_status") == "QUEUED"


async def wait_for_runs(api: Api, queued: bool, within: float = 15.0) -> dict[str, object]:
    """Until runs are active (and, if ``queued``, others wait in the queue) or ``within``
    seconds passed: the sessions then."""
    deadline = time.monotonic() + within
    while True:
        sessions = await api.sessions()
        ready = sessions["running_count"] and (sessions["queued_count"] or not queued)
        if ready or time.monotonic() > deadline:
            return sessions
        await asyncio.sleep(0.1)


def environment(options: Options, capped: bool) -> dict[str, str]:
    cap = options.sigterm_max_running if capped else 100
    return {
        "THREADLINE_DEMO_PACE": str(options.sigterm_pace),
        "THREADLINE_MAX_RUNNING": str(cap),
    }


async def run(options: Options, workdir: Path) -> Outcome:
    outcome = Outcome("SIGTERM rounds")
    env = environment(options, capped=True)
    server = ChaosServer(workdir / "data", workdir / "server.log", env=env).start()
    api = Api(server.url)
    sampler = RssSampler(server).start()
    fleet = Fleet(server.url, options.seed)
    prober: HealthProber | None = None
    writers: Writers | None = None
    try:
        conversations = [
            await api.create(initial_user_msg=f"chaos sigterm {index}", max_iterations=STEPS)
            for index in range(options.sigterm_conversations)
        ]
        ledger = Ledger()
        outcome.add(rss_before_mib=server.rss_mib() or float("nan"))
        fleet.start([Plan(t, cid) for cid in conversations for t in TRANSPORTS])
        prober = HealthProber(server.url)
        mix = Mix(think_to=conversations, message_to=conversations, message_share=0.5)
        writers = Writers(api, ledger, mix, name="t", seed=options.seed).start(12, pause=0.02)
        deadline = time.monotonic() + options.seconds
        exits: list[float] = []
        late, drain_statuses = [], Counter[int | None]()
        started_in_drain, stopped_queued, dishonest = [], [], []
        rounds = 0
        while rounds < options.sigterm_rounds and time.monotonic() < deadline:
            capped = rounds % 2 == 0
            sessions = await wait_for_runs(api, queued=capped)
            rounds += 1
            signalled = time.time()
            seconds, code = await asyncio.to_thread(server.terminate, options.grace)
            exits.append(seconds)
            if code is None or code not in (0, -15):
                late.append(f"round {rounds}: exit code {code} after {seconds:.1f} s")
            writers.gate.clear()
            restarted = time.time()
            in_drain = [  # answered after the signal, sent before the restart
                sent
                for sent in writers.sent
                if sent.answer.sent_at + sent.answer.seconds >= signalled
                and sent.answer.sent_at < restarted
            ]
            drain_statuses.update(sent.answer.status for sent in in_drain)
            server.env = environment(options, capped=rounds % 2 == 0)  # the next round's
            await asyncio.to_thread(server.start)
            logs = await read_logs(api, conversations)
            for cid, events in logs.items():
                window = states_between(events, signalled, restarted)
                story = " -> ".join(
                    f"{e['extras'].get('agent_state')} {e['extras'].get('reason', '')[:30]!r}"
                    for e in window
                )
                # A launch after the signal is what must not happen; a run launched just
                # before it may still reach "running" before its stop lands.
                if any(e["extras"].get("reason") in STARTING for e in window):
                    started_in_drain.append(f"round {rounds}: {cid[:8]} {story}")
                if queued_at(events, signalled):
                    record = await api.record(cid)
                    stopped = any(
                        e["extras"].get("agent_state") in ("stopped", "error") for e in window
                    )
                    if record["status"] in ("STOPPED", "ERROR") or stopped:
                        stopped_queued.append(
                            f"round {rounds}: {cid[:8]} queued at SIGTERM; after the restart "
                            f"{record['status']}/{record['agent_state']}; in the drain: "
                            f"{story or 'nothing logged'}"
                        )
            dishonest += [f"round {rounds}: {p}" for p in await disagreements(api, conversations)]
            kept = sum(1 for sent in in_drain if sent.answer.status == 200)
            outcome.notes.append(
                f"round {rounds} ({'capped' if capped else 'no cap'}): "
                f"{sessions['running_count']} running, {sessions['queued_count']} queued at "
                f"SIGTERM; exited in {seconds:.2f} s; {kept} appends acknowledged in the drain"
            )
            writers.gate.set()
            await asyncio.sleep(1.0)
        await writers.stop()
        stuck = await quiesce(api, within=30)
        logs = await read_logs(api, conversations)
        check_logs(outcome, logs, ledger)
        targets = {cid: (events[-1]["id"] if events else -1) for cid, events in logs.items()}
        check_subscribers(outcome, await fleet.finish(targets, within=30))
        outcome.check(
            "exits_within_grace",
            not late,
            "; ".join(late)
            or f"every exit within {options.grace:g} s (max {max(exits, default=0):.2f} s)",
        )
        bad = {s: n for s, n in drain_statuses.items() if s not in (200, 503, None)}
        outcome.check(
            "drain_answers_honest",
            not bad and api.count_5xx(allowed=(503,)) == 0,
            f"answers during the drain: {dict(drain_statuses)}; server errors overall "
            f"{api.count_5xx(allowed=(503,))}" + (f": {api.errors[0]}" if api.errors else ""),
        )
        outcome.check(
            "no_run_started_in_drain",
            not started_in_drain,
            f"{len(started_in_drain)} runs started after SIGTERM: {'; '.join(started_in_drain[:3])}"
            if started_in_drain
            else "no run started after SIGTERM",
        )
        outcome.check(
            "queued_stay_queued",
            not stopped_queued,
            "; ".join(stopped_queued[:3])
            or "every conversation queued at SIGTERM came back queued",
        )
        dishonest += [f"at the end: {p}" for p in await disagreements(api, conversations)]
        outcome.check(
            "recorded_honestly",
            not dishonest,
            "; ".join(dishonest[:3]) or f"records agree with their logs after {rounds} restarts",
        )
        left = await wedged(api, conversations)
        outcome.check(
            "no_run_left_running",
            not stuck and not left,
            f"still going 30 s after the load: {'; '.join(stuck[:3]) or 'none'}; shown running: "
            f"{'; '.join(left[:3]) or 'none'}",
        )
        outcome.add(
            rounds=rounds,
            http_5xx=api.count_5xx(),
            exit_max_s=max(exits, default=float("nan")),
            drain_503=drain_statuses[503],
            drain_200=drain_statuses[200],
            drain_500=drain_statuses[500],
            drain_unanswered=drain_statuses[None],
        )
        standard_totals(outcome)
    finally:
        if writers is not None:
            await writers.stop()
        await fleet.close()
        if prober is not None:
            health = prober.finish()
            outcome.latencies("health", health["latencies"])
        outcome.add(rss_after_mib=await settle(server, 1.0))
        await sampler.stop()
        outcome.add(rss_peak_mib=sampler.peak)
        await api.close()
        server.shut()
        outcome.add(server_errors_logged=server.problems())
    return outcome
