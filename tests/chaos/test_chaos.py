"""The short version of every ``scripts/chaos`` scenario, against a real server.

Each scenario runs once per module (`Options.short`); each of its checks is a test, so a
failure names the guarantee and carries the evidence. Only correctness is asserted:
timing and memory figures are printed with the scenario's report (``pytest -s``), never
compared. A check the server is known to fail is a strict xfail naming its issue
(`KNOWN`), so it turns into a failure (XPASS) the moment its fix lands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.chaos.cli import run_one
from tests.chaos.options import Options
from tests.chaos.outcome import Outcome, report
from tests.chaos.tmpfs import TmpfsUnavailable

pytestmark = pytest.mark.slow

KNOWN: dict[tuple[str, str], str] = {}
"""(scenario, check) -> the issue a failing check is known for (a strict xfail)."""

LOG = ("acknowledged_kept", "log_gapless", "subscribers_exact")
CHECKS: dict[str, tuple[str, ...]] = {
    "kill": (*LOG, "recorded_honestly", "no_run_left_running", "no_5xx"),
    "sigterm": (
        *LOG,
        "exits_within_grace",
        "drain_answers_honest",
        "no_run_started_in_drain",
        "queued_stay_queued",
        "recorded_honestly",
        "no_run_left_running",
    ),
    "storm": (*LOG, "no_5xx"),
    "disk": (
        *LOG,
        "refusals_are_507",
        "one_log_line_per_burst",
        "recovers_by_itself",
        "no_run_wedged",
        "answers_after_recovery",
        "recorded_honestly",
    ),
    "slow": (
        *LOG,
        "rss_bounded_sio",
        "rss_bounded_sio_polling",
        "rss_bounded_ws",
        "rss_bounded_sse",
        "readers_keep_receiving",
    ),
}


def _cases() -> Iterator[object]:
    for scenario, checks in CHECKS.items():
        for check in checks:
            reason = KNOWN.get((scenario, check))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(scenario, check, marks=marks, id=f"{scenario}-{check}")


@pytest.fixture(scope="module")
def outcome_of(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Outcome]:
    """Runs a scenario the first time one of its checks asks, then remembers it."""
    outcomes: dict[str, Outcome | Exception] = {}

    def get(scenario: str) -> Outcome:
        if scenario not in outcomes:
            workdir = Path(tmp_path_factory.mktemp(f"chaos-{scenario}"))
            try:
                outcome = asyncio.run(run_one(scenario, Options.short(), workdir))
                print(report(outcome))  # the figures, for -s
                outcomes[scenario] = outcome
            except Exception as exc:  # every check of the scenario reports it, once run
                outcomes[scenario] = exc
        found = outcomes[scenario]
        if isinstance(found, TmpfsUnavailable):
            pytest.skip(f"{scenario}: {found}")
        if isinstance(found, Exception):
            raise found
        return found

    return get


@pytest.mark.parametrize(("scenario", "check"), list(_cases()))
def test_chaos(outcome_of: Callable[[str], Outcome], scenario: str, check: str) -> None:
    found = outcome_of(scenario).get(check)
    assert found.passed, found.detail
