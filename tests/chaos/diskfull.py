"""Scenario 4: the disk fills up, and space comes back.

The data directory is a small tmpfs. Writers append padded events (and messages that
start demo-agent runs) until the server refuses for lack of space; a filler file takes
whatever bytes are left; the writers keep going through the burst; then the filler goes,
the tmpfs is grown, and the writers keep going. The server must refuse with 507 and
Retry-After (never 500), log one line per burst rather than one per request, lose
nothing it acknowledged, leave no run wedged (a run whose end could not be written must
end once space returns, its slot freed, and stop must mean stop), and recover by
itself: appends succeed again with no gap.

Each run must meet a really full disk, not a sliver: the agents sleep through the
filling (a slow pace; the writers start once every agent has logged its plan) and wake
inside the burst; and their conversations carry ``disk_record_bytes`` of image URLs
(the largest fields a conversation's record keeps), so each state change rewrites a
record that large. A small write can slip into the WAL
pages a failed batch left allocated (so today a run's end is written, or not, by luck);
a 1 MB one cannot, which makes "a run whose end could not be written" happen every time.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from tests.chaos.api import STEPS, Api
from tests.chaos.audit import Ledger
from tests.chaos.fleet import Fleet, Plan
from tests.chaos.load import Mix, Sent, Writers
from tests.chaos.options import Options
from tests.chaos.outcome import Outcome
from tests.chaos.server import ChaosServer, RssSampler, settle
from tests.chaos.subscribers import TRANSPORTS
from tests.chaos.tmpfs import tmpfs
from tests.chaos.verify import (
    check_logs,
    check_subscribers,
    disagreements,
    quiesce,
    read_logs,
    standard_totals,
    wedged,
)

MAX_LOG_LINES_PER_BURST = 4
"""Distinct lines a full disk may log (the writer's "full" and "space returned", a
checkpoint that failed, an indexing batch that failed); each may repeat once for every
time the free space flaps around the last bytes (a small batch of appends still fits),
which a loaded machine makes more likely, but never once per refused request."""
MAX_FLAPS = 3


async def first(
    writers: Writers, since: float, wanted: set[int | None], within: float
) -> Sent | None:
    """The first append sent after ``since`` answered with one of ``wanted`` (waiting up
    to ``within`` seconds for one)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for sent in writers.answered_since(since):
            if sent.answer.status in wanted:
                return sent
        await asyncio.sleep(0.05)
    return None


async def answered(api: Api, conversation_id: str, within: float) -> str | None:
    """Send a message; None when a run took it up (its state moved), else what happened."""
    sent = await api.message(conversation_id, "chaos#after-recovery are you there?")
    if sent.event_id is None:
        return f"{conversation_id[:8]}: message answered {sent.status} {sent.body}"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        events = await api.events(conversation_id, start_id=sent.event_id + 1)
        if any(e.get("observation") == "agent_state_changed" for e in events):
            return None
        await asyncio.sleep(0.2)
    return f"{conversation_id[:8]}: no run took up message {sent.event_id} in {within:g} s"


async def sleeping(api: Api, conversations: list[str], within: float = 30.0) -> None:
    """Until each demo agent has logged its plan: it then sleeps ``pace`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        logs = [await api.events(cid) for cid in conversations]
        if all(any(e.get("action") == "task_tracking" for e in log) for log in logs):
            return
        await asyncio.sleep(0.05)


async def run(options: Options, workdir: Path) -> Outcome:
    outcome = Outcome(f"disk full ({options.disk_mb} MiB tmpfs)")
    with tmpfs(workdir / "data", options.disk_mb) as disk:
        env = {"THREADLINE_DEMO_PACE": str(options.disk_pace)}
        server = ChaosServer(disk.path, workdir / "server.log", env=env).start()
        api = Api(server.url)
        sampler = RssSampler(server).start()
        fleet = Fleet(server.url, options.seed)
        writers: Writers | None = None
        try:
            agents = [
                await api.create(
                    initial_user_msg=f"chaos disk {index}",
                    max_iterations=STEPS,
                    image_urls=_large_urls(options.disk_record_bytes),
                )
                for index in range(options.disk_agent_conversations)
            ]
            plain = [await api.create(title="chaos disk plain")]
            conversations = agents + plain
            ledger = Ledger()
            outcome.add(rss_before_mib=server.rss_mib() or float("nan"))
            fleet.start([Plan(t, cid) for cid in conversations for t in TRANSPORTS])
            await sleeping(api, agents)
            mix = Mix(
                think_to=conversations, message_to=agents, message_share=0.2,
                padding=options.disk_padding,
            )  # fmt: skip
            writers = Writers(api, ledger, mix, name="d", seed=options.seed)
            writers.start(options.disk_writers, pause=0.005)
            started = time.time()
            refused = await first(writers, started, {500, 503, 507}, within=options.seconds)
            if refused is None:
                outcome.check("disk_filled", False, f"no refusal within {options.seconds:g} s")
                return outcome
            full_at = refused.answer.sent_at
            log_from = server.log_size()
            filler = disk.fill()
            outcome.add(fill_s=full_at - started, filler_mib=filler / 2**20)
            await asyncio.sleep(options.disk_full_seconds)
            freed_at = time.time()
            log_to = server.log_size()
            disk.empty()
            disk.resize(options.disk_grown_mb)
            recovered = await first(writers, freed_at, {200}, within=30)
            await asyncio.sleep(0.5)  # a few more appends, not enough to fill the disk again
            await writers.stop()
            outcome.add(free_after_mib=disk.free_bytes() / 2**20)

            burst = [s for s in writers.sent if full_at <= s.answer.sent_at < freed_at]
            statuses = Counter(s.answer.status for s in burst)
            refusals = [s for s in burst if (s.answer.status or 0) >= 500]
            no_retry_after = [
                s for s in refusals
                if s.answer.status == 507 and "retry-after" not in (s.answer.headers or {})
            ]  # fmt: skip
            outcome.check(
                "refusals_are_507",
                bool(refusals) and statuses[500] == 0 and not no_retry_after
                and all(s.answer.status == 507 for s in refusals),
                f"answers while full: {dict(statuses)}; 507 without Retry-After: "
                f"{len(no_retry_after)}"
                + (f"; e.g. {refusals[0].answer.body}" if refusals else ""),
            )  # fmt: skip
            lines = server.log_lines(log_from, log_to)
            tracebacks = sum(1 for line in lines if line.startswith("Traceback"))
            outcome.check(
                "one_log_line_per_burst",
                len(set(lines)) <= MAX_LOG_LINES_PER_BURST
                and len(lines) <= MAX_LOG_LINES_PER_BURST * MAX_FLAPS
                and not tracebacks,
                f"{len(lines)} log lines, {len(set(lines))} distinct ({tracebacks} tracebacks) "
                f"for {len(refusals)} refusals in one {options.disk_full_seconds:g} s burst "
                f"(allowed: {MAX_LOG_LINES_PER_BURST} distinct, each at most {MAX_FLAPS} times, "
                "no traceback): " + " | ".join(line[:160] for line in lines[:6]),
            )
            outcome.check(
                "recovers_by_itself",
                recovered is not None,
                f"first append acknowledged {recovered.answer.sent_at - freed_at:.2f} s after "
                "space returned"
                if recovered
                else "no append succeeded within 30 s of space returning",
            )
            stuck = await quiesce(api, within=options.disk_wait)
            left = await wedged(api, conversations)
            slots = (await api.sessions())["running_count"]
            outcome.check(
                "no_run_wedged",
                not stuck and not left and not slots,
                f"still running with no progress for {options.disk_wait:g} s after recovery: "
                f"{'; '.join(stuck[:3]) or 'none'}; shown "
                f"running after a stop: {'; '.join(left[:3]) or 'none'}; slots held: {slots}",
            )
            found = await asyncio.gather(*(answered(api, cid, options.disk_wait) for cid in agents))
            unanswered = [problem for problem in found if problem is not None]
            outcome.check(
                "answers_after_recovery",
                not unanswered,
                "; ".join(unanswered[:3]) or f"each of {len(agents)} agents answered a new message",
            )
            logs = await read_logs(api, conversations)
            check_logs(outcome, logs, ledger)
            targets = {cid: (events[-1]["id"] if events else -1) for cid, events in logs.items()}
            check_subscribers(outcome, await fleet.finish(targets, within=30))
            dishonest = await disagreements(api, conversations)
            outcome.check(
                "recorded_honestly",
                not dishonest,
                "; ".join(dishonest[:3]) or "records agree with their logs",
            )
            outcome.add(
                rounds=1,
                http_5xx=api.count_5xx(),
                refusals=len(refusals),
                refused_500=statuses[500],
                refused_507=statuses[507],
                burst_log_lines=len(lines),
                burst_tracebacks=tracebacks,
            )
            standard_totals(outcome)
        finally:
            if writers is not None:
                await writers.stop()
            await fleet.close()
            outcome.add(rss_after_mib=await settle(server, 1.0))
            await sampler.stop()
            outcome.add(rss_peak_mib=sampler.peak)
            await api.close()
            server.shut()
            outcome.add(server_errors_logged=server.problems())
    return outcome


def _large_urls(total: int, each: int = 500_000) -> list[str]:
    """``data:`` URLs adding up to ``total`` characters (an image URL may be 1,000,000)."""
    count = max(1, -(-total // each))
    return ["data:text/plain," + "i" * (total // count) for _ in range(count)]
