"""`bench/sessions.py` (b): the controller's own overhead, one LLM conversation against an
instant model.

Three processes: the fake model (`bench/sessions_model.py`: every answer a ``think``
tool call, then ``finish`` after K of them), ``threadline serve`` with
``THREADLINE_LLM_BASE_URL`` pointing at it, and this one, which creates a conversation
(``"agent": "llm"``, ``max_iterations`` above K) and polls its status every
``poll`` seconds until the run has ended. Nothing subscribes. One think step is: the
agent asks the model (``openai`` client, the whole transcript each time), logs the
action, the controller answers it (a think is a no-op) and logs the observation; the
next step starts. A warm-up conversation runs first.

From the stored events (read back over REST after the run): events/s = events logged /
(last event's timestamp - first event's), for the whole run and for its first and last
10 % of steps; each step split into "log" (action timestamp -> its observation's: the
action's append, the no-op, the observation's append up to its batch) and "model"
(observation -> the next action: the rest of that append, the model call, turning the
answer into an action); and a least-squares line step time = a + b * step number, whose
slope is what the growing transcript costs. Projected figures for a larger K follow
from that line.

Then, with both servers idle, `bench.sessions_components` times the parts alone.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import secrets
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import Metrics, log
from bench.machine import Usage, memory
from bench.processes import Profiler
from bench.sessions_components import components
from bench.sessions_model import marker
from bench.sessions_server import FakeModel, ThreadlineServer

ENDED = frozenset({"STOPPED", "ERROR"})


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    steps: tuple[int, ...]
    project: int
    warmup_steps: int
    histories: tuple[int, ...]
    component_calls: int
    appends: int
    poll: float
    run_timeout: float


def measure(config: ControllerConfig, root: Path, profile_dir: Path | None) -> Metrics:
    """Every K on one server (after a warm-up conversation), then the parts alone. With
    ``profile_dir``, each K's run is recorded with py-spy into ``controller-<K>.txt``."""
    model = FakeModel(root / "model.log")
    data_dir = Path(tempfile.mkdtemp(prefix="controller-", dir=root))
    data_dir.chmod(0o711)  # sandbox users must reach their workspaces below it
    server: ThreadlineServer | None = None
    found: Metrics = {}
    try:
        env = {
            "THREADLINE_LLM_BASE_URL": model.base_url,
            "THREADLINE_LLM_API_KEY": "bench",
            "THREADLINE_LLM_MODEL": "bench-instant",
            "THREADLINE_LOG_LEVEL": "warning",
        }
        server = ThreadlineServer(data_dir, env)
        _conversation(config, server, model, config.warmup_steps, Profiler(None))
        for steps in config.steps:
            output = profile_dir / f"controller-{steps}.txt" if profile_dir else None
            found |= _conversation(config, server, model, steps, Profiler(output))
            found |= _projection(found, steps, config.project)
        found["controller.server_log_problems"] = float(server.problems())
        server.stop()
        server = None
        found |= asyncio.run(
            components(config.histories, config.component_calls, config.appends, model, root)
        )
    finally:
        if server is not None:
            server.stop()
        model.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return found


def _conversation(
    config: ControllerConfig,
    server: ThreadlineServer,
    model: FakeModel,
    steps: int,
    profiler: Profiler,
) -> Metrics:
    name = f"k{steps}x{secrets.token_hex(4)}"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        before = Usage.of(server.pid)
        profiler.start(server.pid)
        started = time.perf_counter()
        response = client.post(
            "/api/conversations",
            json={
                "initial_user_msg": f"{marker(name, steps)} Think it through, then finish.",
                "agent": "llm",
                "max_iterations": steps + 100,
            },
        )
        response.raise_for_status()
        conversation_id = response.json()["conversation_id"]
        status = _wait_until_ended(client, conversation_id, config)
        polled_s = time.perf_counter() - started
        profiler.stop()
        used = Usage.of(server.pid) - before
        events = _events(client, conversation_id)
        tally = model.stats().get(name, {})
        restart_ms = _next_run_start_ms(client, conversation_id, config, len(events))
    _, rss_peak, _ = memory(server.pid)
    p = f"controller.{steps}"
    found = {
        f"{p}.ended_in_error": float(status == "ERROR"),
        f"{p}.polled_s": polled_s,
        f"{p}.cpu_server_core": used.own / polled_s,
        f"{p}.cpu_main_core": used.main / polled_s,
        f"{p}.rss_peak_mib": rss_peak,
        f"{p}.model_requests": float(tally.get("requests", 0)),
        f"{p}.model_busy_us_per_request": tally.get("busy_s", 0.0)
        / max(1, tally.get("requests", 0))
        * 1e6,
        f"{p}.request_kib_first": tally.get("first_bytes", 0) / 1024,
        f"{p}.request_kib_last": tally.get("last_bytes", 0) / 1024,
        f"{p}.request_mib_total": tally.get("total_bytes", 0) / 1024 / 1024,
        **_timeline(p, events),
        f"{p}.next_run_start_ms": restart_ms,
        **_ours(p, events, _samples(tally.get("wire_us", []))),
    }
    log(
        f"  K={steps}: {found[f'{p}.events']:.0f} events in {found[f'{p}.wall_s']:.1f} s = "
        f"{found[f'{p}.events_per_s']:,.0f} events/s (first 10% "
        f"{found[f'{p}.early_events_per_s']:,.0f}, last 10% "
        f"{found[f'{p}.late_events_per_s']:,.0f}); ours, model wire time aside, "
        f"{found[f'{p}.ours_events_per_s']:,.0f} (last 10% "
        f"{found[f'{p}.ours_late_events_per_s']:,.0f}); next run's start "
        f"{restart_ms:.1f} ms; status {status}"
    )
    return found


def _ours(p: str, events: list[dict[str, Any]], wire_us: list[float]) -> Metrics:
    """Events/s with the model's side of each call taken out: from a request's first
    byte reaching the model to its answer written (the transcript's transfer and the
    model's work), whole run and last 10 % of steps."""
    stamps = [_seconds(event["timestamp"]) for event in events]
    wall = stamps[-1] - stamps[0]
    wire_s = sum(wire_us) / 1e6
    starts = [stamps[i] for i, e in enumerate(events) if e.get("observation") == "model_exchange"]
    step_ms = [(b - a) * 1000 for a, b in itertools.pairwise(starts)]
    steps_wire = wire_us[1 : len(step_ms) + 1]  # step i ends with request i + 1 answered
    tenth = max(1, len(step_ms) // 10)
    late_ours_ms = statistics.fmean(step_ms[-tenth:]) - statistics.fmean(steps_wire[-tenth:]) / 1000
    return {
        f"{p}.model_wire_s": wire_s,
        f"{p}.model_wire_us_last": statistics.fmean(steps_wire[-tenth:]),
        f"{p}.ours_events_per_s": len(events) / (wall - wire_s),
        f"{p}.ours_late_events_per_s": 3000 / late_ours_ms,
    }


def _next_run_start_ms(
    client: httpx.Client, conversation_id: str, config: ControllerConfig, before: int
) -> float:
    """A message to the ended conversation starts its next run: ms from the message
    logged to the run's first model call answered (its first request carries the whole
    chat; the model answers ``finish`` at once)."""
    client.post(
        f"/api/conversations/{conversation_id}/message", json={"message": "one more thing"}
    ).raise_for_status()
    deadline = time.monotonic() + config.run_timeout
    while time.monotonic() < deadline:
        time.sleep(config.poll)
        page = client.get(
            f"/api/conversations/{conversation_id}/events",
            params={"start_id": before, "limit": 100},
        ).json()["events"]
        said = [e for e in page if e.get("action") == "message" and e.get("source") == "user"]
        called = [e for e in page if e.get("observation") == "model_exchange"]
        if said and called:
            _wait_until_ended(client, conversation_id, config)
            return (_seconds(called[0]["timestamp"]) - _seconds(said[0]["timestamp"])) * 1000
    raise TimeoutError("the next run made no model call")


def _wait_until_ended(client: httpx.Client, conversation_id: str, config: ControllerConfig) -> str:
    deadline = time.monotonic() + config.run_timeout
    while True:
        status = str(client.get(f"/api/conversations/{conversation_id}").json()["status"])
        if status in ENDED:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"the run did not end within {config.run_timeout:g} s")
        time.sleep(config.poll)


def _events(client: httpx.Client, conversation_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while True:
        page = client.get(
            f"/api/conversations/{conversation_id}/events",
            params={"start_id": len(events), "limit": 100},
        ).json()
        events.extend(page["events"])
        if not page["has_more"]:
            return events


def _timeline(p: str, events: list[dict[str, Any]]) -> Metrics:
    """Rates and the per-step split from the events' server timestamps (seconds)."""
    stamps = [_seconds(event["timestamp"]) for event in events]
    wall = stamps[-1] - stamps[0]
    actions = [
        (index, stamps[index]) for index, e in enumerate(events) if e.get("action") == "think"
    ]
    observed = {e.get("cause"): stamps[i] for i, e in enumerate(events) if e.get("observation")}
    finish = next((stamps[i] for i, e in enumerate(events) if e.get("action") == "finish"), None)
    starts = [at for _, at in actions] + ([finish] if finish is not None else [])
    step_ms = [(b - a) * 1000 for a, b in itertools.pairwise(starts)]
    log_ms = [(observed[events[i]["id"]] - at) * 1000 for i, at in actions]
    model_ms = [
        (after - observed[events[i]["id"]]) * 1000
        for (i, _), after in zip(actions, starts[1:], strict=False)
    ]
    tenth = max(1, len(step_ms) // 10)
    found: Metrics = {
        f"{p}.events": float(len(events)),
        f"{p}.steps": float(len(actions)),
        f"{p}.wall_s": wall,
        f"{p}.events_per_s": len(events) / wall if wall > 0 else math.nan,
        f"{p}.early_events_per_s": 2000 / statistics.fmean(step_ms[:tenth]),
        f"{p}.late_events_per_s": 2000 / statistics.fmean(step_ms[-tenth:]),
        f"{p}.step_ms_early": statistics.median(step_ms[:tenth]),
        f"{p}.step_ms_late": statistics.median(step_ms[-tenth:]),
        f"{p}.log_ms": statistics.median(log_ms),
        f"{p}.model_ms_early": statistics.median(model_ms[:tenth]),
        f"{p}.model_ms_late": statistics.median(model_ms[-tenth:]),
    }
    if len(step_ms) >= 3:
        slope, intercept = statistics.linear_regression(range(len(step_ms)), step_ms)
        found[f"{p}.fit_fixed_ms"] = intercept
        found[f"{p}.fit_growth_us_per_step"] = slope * 1000
    return found


def _projection(found: Metrics, measured: int, target: int) -> Metrics:
    """The growth term's share of the run, and run time and events/s of a
    ``target``-step run, from the measured line."""
    p = f"controller.{measured}"
    fixed, growth = found.get(f"{p}.fit_fixed_ms"), found.get(f"{p}.fit_growth_us_per_step")
    if fixed is None or growth is None:
        return {}
    shares = {f"{p}.growth_share": _growth_share(fixed, growth, measured)}
    if target == measured:
        return shares
    seconds = (target * fixed + growth / 1000 * target * (target - 1) / 2) / 1000
    events = found[f"{p}.events"] - 2 * found[f"{p}.steps"] + 2 * target
    return {
        **shares,
        f"{p}.projected_{target}_growth_share": _growth_share(fixed, growth, target),
        f"{p}.projected_{target}_s": seconds,
        f"{p}.projected_{target}_events_per_s": events / seconds,
    }


def _growth_share(fixed_ms: float, growth_us: float, steps: int) -> float:
    """Of a ``steps``-step run on the fitted line, the share the growth term takes."""
    growth = growth_us / 1000 * steps * (steps - 1) / 2
    return growth / (steps * fixed_ms + growth)


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


def _samples(value: float | list[float]) -> list[float]:
    """A tally's list of samples (a tally holds counts and lists side by side)."""
    return value if isinstance(value, list) else []
