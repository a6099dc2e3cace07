"""Scenario 5: consumers that never read.

One phase per transport: ``slow_clients`` clients subscribe and never read while
``slow_mb`` megabytes of events flow (mostly 1 KB, every fifth one ``slow_large_bytes``),
then they leave. The same flow with no slow client first warms the server up (caches,
allocator arenas) so a phase's growth is what its slow clients cost. Per phase the
server's RSS growth must stay under ``slow_rss_bound_mb`` (a transport that holds
everything for each client grows by about clients x flow); subscribers that do read (one
per transport, all along) must keep receiving every event exactly once.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.chaos.api import Api
from tests.chaos.audit import Ledger
from tests.chaos.fleet import Fleet, Plan
from tests.chaos.load import Load, Mix
from tests.chaos.options import Options
from tests.chaos.outcome import Outcome
from tests.chaos.server import ChaosServer, RssSampler, settle
from tests.chaos.slow_clients import SlowClient, open_slow
from tests.chaos.subscribers import TRANSPORTS
from tests.chaos.verify import check_logs, check_subscribers, read_logs, standard_totals

SMALL = 1_000
LARGE_EVERY = 5


async def flow(load: Load, megabytes: int, large: int, concurrency: int = 3) -> int:
    """Append events until ``megabytes`` have been sent; returns how many were."""
    per_cycle = (LARGE_EVERY - 1) * SMALL + large
    count = max(LARGE_EVERY, megabytes * 1_000_000 // per_cycle * LARGE_EVERY)
    remaining = iter(range(count))

    async def writer(index: int) -> None:
        for _ in remaining:
            await load.send_one(index)

    await asyncio.gather(*(writer(index) for index in range(concurrency)))
    return count


async def caught_up(fleet: Fleet, conversation_id: str, target: int, within: float) -> float | None:
    """Seconds until the reading subscribers of a conversation have seen ``target``
    (None: not ``within`` seconds)."""
    readers = [s for s in fleet.subscribers if s.conversation_id == conversation_id]
    started = time.monotonic()
    while time.monotonic() - started < within:
        if all(s.sequence.last >= target for s in readers):
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    return None


async def run(options: Options, workdir: Path) -> Outcome:
    outcome = Outcome(f"slow consumers ({options.slow_clients} per transport)")
    server = ChaosServer(workdir / "data", workdir / "server.log").start()
    api = Api(server.url)
    sampler = RssSampler(server, interval=0.05).start()
    fleet = Fleet(server.url, options.seed)
    slow: list[SlowClient] = []
    try:
        ledger = Ledger()
        conversations: list[str] = []

        async def conversation(title: str) -> tuple[str, Load]:
            conversation_id = await api.create(title=f"chaos slow consumers: {title}")
            conversations.append(conversation_id)
            fleet.start([Plan(transport, conversation_id) for transport in TRANSPORTS])
            mix = Mix(
                think_to=[conversation_id], padding=SMALL,
                large_every=LARGE_EVERY, large_bytes=options.slow_large_bytes,
            )  # fmt: skip
            return conversation_id, Load(api, ledger, mix, name=title[:2], seed=options.seed)

        started_at = server.rss_mib() or float("nan")
        warm_id, warm_load = await conversation("warm-up")
        await flow(warm_load, options.slow_mb, options.slow_large_bytes)
        await caught_up(fleet, warm_id, await api.last_id(warm_id), 30)
        outcome.add(rss_before_mib=await settle(server, 1.0))
        outcome.add(warm_up_growth_mib=float(outcome.figures["rss_before_mib"]) - started_at)
        lagging: list[str] = []
        over: list[str] = []
        for transport in options.slow_transports:
            # A conversation of its own: slow clients an earlier phase left behind (and the
            # server may still hold) see none of this phase's events.
            conversation_id, load = await conversation(transport)
            before = server.rss_mib() or float("nan")
            sampler.mark()
            slow = [
                await open_slow(transport, server.url, server.port, conversation_id, -1)
                for _ in range(options.slow_clients)
            ]
            await flow(load, options.slow_mb, options.slow_large_bytes)
            last_id = await api.last_id(conversation_id)
            delay = await caught_up(fleet, conversation_id, last_id, 30)
            await asyncio.sleep(0.5)
            sampler.sample()
            growth = sampler.window_peak - before
            for client in slow:
                await client.close()
            slow = []
            after = await settle(server, options.settle)
            outcome.add(**{
                f"{transport}_growth_mib": growth,
                f"{transport}_after_mib": after,
                f"{transport}_readers_caught_up_s": float("nan") if delay is None else delay,
            })  # fmt: skip
            if delay is None:
                lagging.append(f"{transport}: readers not at id {last_id} 30 s after the flow")
            if growth > options.slow_rss_bound_mb:
                over.append(f"{transport} +{growth:.0f} MiB")
            outcome.check(
                f"rss_bounded_{transport.replace('-', '_')}",
                growth <= options.slow_rss_bound_mb,
                f"RSS {before:.0f} -> peak {sampler.window_peak:.0f} MiB (+{growth:.0f}, bound "
                f"{options.slow_rss_bound_mb:g}) with {options.slow_clients} never-reading "
                f"{transport} clients while {options.slow_mb} MB flowed; "
                f"{after:.0f} MiB {options.settle:g} s after they left",
            )
        outcome.check(
            "readers_keep_receiving",
            not lagging,
            "; ".join(lagging) or "reading subscribers caught up after every phase",
        )
        logs = await read_logs(api, conversations)
        check_logs(outcome, logs, ledger)
        targets = {cid: (events[-1]["id"] if events else -1) for cid, events in logs.items()}
        check_subscribers(outcome, await fleet.finish(targets, 30))
        outcome.add(rounds=len(options.slow_transports), http_5xx=api.count_5xx())
        if over:
            outcome.notes.append(f"unbounded under slow consumers: {', '.join(over)}")
        standard_totals(outcome)
    finally:
        for client in slow:
            await client.close()
        await fleet.close()
        await sampler.stop()
        outcome.add(rss_peak_mib=sampler.peak, rss_after_mib=server.rss_mib() or float("nan"))
        await api.close()
        server.shut()
        outcome.add(server_errors_logged=server.problems())
    return outcome
