"""``scripts/fuzz``: fuzz a real threadline server and print what it found.

Phases: REST without keys, REST with an API key (created with ``threadline keys`` before
the server starts), then the streams (probes and random frames on the plain WebSocket,
Engine.IO over WebSocket and long-polling, SSE). Bounded by ``--max-inputs`` and
``--seconds``; a request with no answer within ``--deadline`` counts as a hang.

Exit status: 1 when REST answered a 5xx, hung, logged a traceback or answered a status
the OpenAPI document does not list, or a stream check failed; else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from tests.fuzz.budget import Budget
from tests.fuzz.figures import Figures
from tests.fuzz.rest import fuzz_rest
from tests.fuzz.streams import fuzz_streams
from tests.fuzz.target import Target

PHASES = ("rest", "rest+keys", "streams")


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-inputs", type=int, default=5000, help="inputs in all (5000)")
    parser.add_argument("--seconds", type=float, default=600.0, help="time in all (600)")
    parser.add_argument("--deadline", type=float, default=5.0, help="a hang, in seconds (5)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (0)")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"of {', '.join(PHASES)}")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    arguments = parser.parse_args()
    phases = [phase for phase in arguments.phases.split(",") if phase]
    started = time.monotonic()
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="threadline-fuzz-") as scratch:
        for index, phase in enumerate(phases):
            # Each phase gets an equal share of what is left.
            left = len(phases) - index
            elapsed = time.monotonic() - started
            budget = Budget(
                (arguments.max_inputs - sum(figures.inputs.values())) // left,
                (arguments.seconds - elapsed) / left,
            )
            target = Target(phase, Path(scratch) / phase, keyed=phase == "rest+keys")
            try:
                if phase.startswith("rest"):
                    fuzz_rest(
                        target, figures, budget, deadline=arguments.deadline, rng=arguments.seed
                    )
                else:
                    asyncio.run(fuzz_streams(target, figures, budget, rng=arguments.seed))
                if not target.alive():
                    figures.server_errors[f"{phase}: the server died"] += 1
            finally:
                figures.peak_rss_kib[phase] = target.peak_rss_kib() if target.alive() else 0
                target.stop()
                figures.tracebacks[phase] = target.total_tracebacks()
    figures.seconds = time.monotonic() - started
    figures.print()
    if arguments.json:
        figures.write(arguments.json)
    return 1 if failed(figures) else 0


def failed(figures: Figures) -> bool:
    rest_tracebacks = sum(count for phase, count in figures.tracebacks.items() if "rest" in phase)
    streams = [check.name for check in figures.checks.values() if check.failed]
    return bool(
        figures.server_errors or figures.hangs or figures.undocumented or rest_tracebacks or streams
    )


if __name__ == "__main__":
    raise SystemExit(main())
