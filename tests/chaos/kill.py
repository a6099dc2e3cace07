"""Scenario 1: kill -9 rounds under load.

Writers append user actions and messages over REST to several conversations (messages
start demo-agent runs) while subscribers follow every conversation on every transport.
At a random moment the server is killed with SIGKILL and started again on the same data
directory; the writers pause across the restart (so the records can be read as recovery
left them), the subscribers resume from the last id they saw. After the last round the
load stops, runs settle, and everything is held against what was acknowledged.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from tests.chaos.aim import Aim
from tests.chaos.api import STEPS, Api
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


async def run(options: Options, workdir: Path) -> Outcome:
    outcome = Outcome("kill -9 rounds under load")
    rng = random.Random(options.seed)
    env = {"THREADLINE_DEMO_PACE": str(options.demo_pace)}
    server = ChaosServer(workdir / "data", workdir / "server.log", env=env).start()
    api = Api(server.url)
    prober: HealthProber | None = None
    sampler = RssSampler(server).start()
    fleet = Fleet(server.url, options.seed)
    writers: Writers | None = None
    try:
        agents = [
            await api.create(initial_user_msg=f"chaos agent {index}", max_iterations=STEPS)
            for index in range(options.kill_agent_conversations)
        ]
        plain = [
            await api.create(title=f"chaos plain {index}")
            for index in range(options.kill_plain_conversations)
        ]
        conversations = agents + plain
        ledger = Ledger()
        mix = Mix(think_to=conversations, message_to=agents, message_share=0.25)
        outcome.add(rss_before_mib=server.rss_mib() or float("nan"))
        fleet.start(
            [
                Plan(transport, conversation_id)
                for conversation_id in conversations
                for transport in TRANSPORTS
                for _ in range(options.kill_subscribers)
            ]
        )
        prober = HealthProber(server.url)
        writers = Writers(api, ledger, mix, name="k", seed=options.seed)
        writers.start(options.kill_writers, pause=0.01)
        deadline = time.monotonic() + options.seconds
        dishonest: list[str] = []
        restarts: list[float] = []
        rounds = aimed = 0
        aim = Aim(server, rng)
        while rounds < options.kill_rounds and time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(*options.kill_interval))
            rounds += 1
            if options.aim_every and rounds % options.aim_every == 0:
                aimed += 1
                await aim.kill_in_window(min(options.aim_seconds, deadline - time.monotonic()))
            server.kill()
            writers.gate.clear()
            started = time.monotonic()
            await asyncio.to_thread(server.start)
            restarts.append(time.monotonic() - started)
            found = await disagreements(api, conversations)
            dishonest += [f"after kill {rounds}: {problem}" for problem in found]
            writers.gate.set()
        await asyncio.sleep(rng.uniform(*options.kill_interval))
        await writers.stop()
        stuck = await quiesce(api, within=30)
        logs = await read_logs(api, conversations)
        check_logs(outcome, logs, ledger)
        targets = {cid: (events[-1]["id"] if events else -1) for cid, events in logs.items()}
        check_subscribers(outcome, await fleet.finish(targets, within=30))
        dishonest += [f"at the end: {p}" for p in await disagreements(api, conversations)]
        outcome.check(
            "recorded_honestly",
            not dishonest,
            f"{len(dishonest)} record/log disagreements: {'; '.join(dishonest[:3])}"
            if dishonest
            else f"records agree with their logs after each of {rounds} restarts",
        )
        left = await wedged(api, conversations)
        outcome.check(
            "no_run_left_running",
            not stuck and not left,
            f"runs still going 30 s after the load stopped: {'; '.join(stuck[:3]) or 'none'}; "
            f"shown running at the end: {'; '.join(left[:3]) or 'none'}"
            if stuck or left
            else "every run ended; no record or log shows one running",
        )
        outcome.check(
            "no_5xx",
            api.count_5xx() == 0,
            f"{api.count_5xx()} server errors" + "".join(f"; {e}" for e in api.errors[:3]),
        )
        outcome.add(
            rounds=rounds,
            http_5xx=api.count_5xx(),
            restart_max_s=max(restarts, default=float("nan")),
            unanswered_requests=api.statuses[None],
            aimed_kills=aimed,
            aimed_hits=len(aim.hits),
            aim_probes=aim.probes,
        )
        if aim.hits:
            outcome.notes.append(f"aimed kills landed in a run's end: {'; '.join(aim.hits[:3])}")
        if not aim.available:
            outcome.notes.append(f"aiming unavailable, kills were random: {aim.problem}")
        standard_totals(outcome)
    finally:
        if writers is not None:
            await writers.stop()
        await fleet.close()
        if prober is not None:
            health = prober.finish()
            outcome.latencies("health", health["latencies"])
            outcome.add(health_failures=health["failures"])
        outcome.add(rss_after_mib=await settle(server, 1.0))
        await sampler.stop()
        outcome.add(rss_peak_mib=sampler.peak)
        await api.close()
        server.shut()
        outcome.add(server_errors_logged=server.problems())
    return outcome
