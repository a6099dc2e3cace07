"""The short version of ``scripts/fuzz`` (issue 9): a small budget against real servers,
with and without API keys. REST must answer no 5xx, never hang, log no traceback and
answer only documented statuses. Each stream check is its own test.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fuzz.streams import STREAM_CHECKS
from tests.server.running import REPOSITORY

BUDGET = ["--max-inputs", "360", "--seconds", "40", "--deadline", "5", "--seed", "1"]


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    output = tmp_path_factory.mktemp("fuzz") / "figures.json"
    run = subprocess.run(
        [str(REPOSITORY / "scripts" / "fuzz"), *BUDGET, "--json", str(output)],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    print(run.stdout, run.stderr)
    assert output.exists(), run.stdout + run.stderr
    return json.loads(Path(output).read_text())  # type: ignore[no-any-return]


def test_every_phase_ran(figures: dict[str, Any]) -> None:
    assert set(figures["peak_rss_kib"]) == {"rest", "rest+keys", "streams"}
    assert figures["inputs"]["rest"] >= 50
    assert figures["inputs"]["rest+keys"] >= 50
    assert figures["inputs"]["streams"] == 11  # every probe
    assert figures["seconds"] < 120  # bounded (the budget is 40 s; probes add a few)


def test_rest_answers_no_server_error_and_never_hangs(figures: dict[str, Any]) -> None:
    assert figures["server_errors"] == {}, figures["samples"]
    assert figures["hangs"] == {}, figures["samples"]


def test_rest_logs_no_traceback(figures: dict[str, Any]) -> None:
    assert figures["tracebacks"]["rest"] == 0
    assert figures["tracebacks"]["rest+keys"] == 0


def test_rest_answers_only_documented_statuses(figures: dict[str, Any]) -> None:
    assert figures["undocumented"] == {}


@pytest.mark.parametrize("name", STREAM_CHECKS)
def test_stream_check(figures: dict[str, Any], name: str) -> None:
    check = figures["checks"][name]
    assert not check["failed"], (check["details"], check["reproduction"])
