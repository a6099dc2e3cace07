"""Scenario 3: a reconnect storm.

``subscribers`` subscribers (spread over the three transports and a few conversations,
in worker processes) each reconnect a random 5-10 times with ``latest_event_id`` while
events flow at ``storm_rate`` per second. Meanwhile a prober in its own process asks
``/api/health`` every 50 ms, every append's answer time is kept, and the server's RSS is
sampled. At the end every subscriber must have seen every id of its conversation exactly
once, in order.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from tests.chaos.api import Api
from tests.chaos.audit import Ledger
from tests.chaos.fleet import Plan, RemoteFleet
from tests.chaos.load import Mix, Paced
from tests.chaos.options import Options
from tests.chaos.outcome import Outcome
from tests.chaos.probe import HealthProber
from tests.chaos.server import ChaosServer, RssSampler, settle
from tests.chaos.subscribers import TRANSPORTS
from tests.chaos.verify import check_logs, check_subscribers, read_logs, standard_totals


def plans(options: Options, conversations: list[str], rng: random.Random) -> list[Plan]:
    """Transports and conversations round-robin; reconnects spread over the storm."""
    low, high = options.reconnects
    mean_hold = options.storm_seconds / ((low + high) / 2)
    return [
        Plan(
            TRANSPORTS[index % len(TRANSPORTS)],
            conversations[(index // len(TRANSPORTS)) % len(conversations)],
            rng.randint(low, high),
            (0.1 * mean_hold, 1.9 * mean_hold),
        )
        for index in range(options.subscribers)
    ]


async def run(options: Options, workdir: Path) -> Outcome:
    outcome = Outcome(f"reconnect storm ({options.subscribers} subscribers)")
    rng = random.Random(options.seed)
    server = ChaosServer(workdir / "data", workdir / "server.log").start()
    api = Api(server.url)
    sampler = RssSampler(server).start()
    fleet: RemoteFleet | None = None
    prober: HealthProber | None = None
    load: Paced | None = None
    try:
        conversations = [
            await api.create(title=f"chaos storm {index}")
            for index in range(options.storm_conversations)
        ]
        ledger = Ledger()
        load = Paced(api, ledger, Mix(think_to=conversations), name="s", seed=options.seed)
        load.start(options.storm_rate)
        await asyncio.sleep(1.0)
        outcome.add(rss_before_mib=server.rss_mib() or float("nan"))
        sampler.mark()
        workers, seed = options.storm_workers, options.seed
        fleet = await asyncio.to_thread(RemoteFleet, server.url, workers, seed)
        prober = HealthProber(server.url)
        storm_started = time.monotonic()
        await asyncio.to_thread(fleet.start, plans(options, conversations, rng), 2.0)
        await asyncio.sleep(max(0.0, options.storm_seconds - (time.monotonic() - storm_started)))
        progress = await asyncio.to_thread(fleet.progress)
        await load.stop()
        health = prober.finish()
        prober = None
        outcome.latencies("health", health["latencies"])
        posts = [s.answer.seconds for s in load.sent if s.answer.status == 200]
        outcome.latencies("post", posts)
        outcome.add(rss_peak_mib=sampler.window_peak)
        logs = await read_logs(api, conversations)
        check_logs(outcome, logs, ledger)
        targets = {cid: (events[-1]["id"] if events else -1) for cid, events in logs.items()}
        summary = await asyncio.to_thread(fleet.finish, targets, 60.0)
        check_subscribers(outcome, summary)
        reconnects = sum(v["planned_reconnects"] for k, v in summary.items() if k != "errors")
        outcome.check(
            "no_5xx",
            api.count_5xx() == 0,
            f"{api.count_5xx()} server errors" + (f": {api.errors[0]}" if api.errors else ""),
        )
        outcome.add(
            rounds=1,
            reconnects=reconnects,
            reconnects_during_storm=progress["planned_reconnects"],
            events_appended=len(posts),
            appends_per_s=len(posts) / options.storm_seconds,
            http_5xx=api.count_5xx(),
            health_failures=health["failures"],
        )
        standard_totals(outcome)
        await asyncio.to_thread(fleet.close)
        fleet = None
        outcome.add(rss_after_mib=await settle(server, options.settle))
    finally:
        if load is not None:
            await load.stop()
        if prober is not None:
            prober.finish()
        if fleet is not None:
            await asyncio.to_thread(fleet.close)
        await sampler.stop()
        await api.close()
        server.shut()
        outcome.add(server_errors_logged=server.problems())
    return outcome
