"""What a scenario found: its figures (counts, latencies, memory) and its checks, each
passed or failed with the evidence, and the table the script prints."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.common import count, latency, ms, render

Figure = float | int | str


@dataclass(frozen=True, slots=True)
class Check:
    """One guarantee the scenario tested: ``name`` is stable (the short test refers to it),
    ``detail`` is the evidence, most telling first."""

    name: str
    passed: bool
    detail: str


@dataclass
class Outcome:
    scenario: str
    figures: dict[str, Figure] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def check(self, name: str, passed: bool, detail: str = "") -> Check:
        """Record a check; a name checked again (e.g. once per round) keeps its first
        failure, so one bad round is never hidden by a good one."""
        for index, earlier in enumerate(self.checks):
            if earlier.name == name:
                if earlier.passed and not passed:
                    self.checks[index] = Check(name, passed, detail)
                return self.checks[index]
        found = Check(name, passed, detail)
        self.checks.append(found)
        return found

    def get(self, name: str) -> Check:
        for found in self.checks:
            if found.name == name:
                return found
        raise KeyError(f"scenario {self.scenario} made no check {name!r}")

    def add(self, **figures: Figure) -> None:
        self.figures.update(figures)

    def latencies(self, prefix: str, samples_s: list[float]) -> None:
        """p50 / p99 / max of samples in seconds, kept in milliseconds."""
        self.figures.update(latency(prefix, [s * 1000 for s in samples_s]))

    @property
    def passed(self) -> bool:
        return all(found.passed for found in self.checks)


STANDARD = (
    ("rounds", "rounds"),
    ("events_checked", "events checked (log)"),
    ("deliveries_checked", "deliveries checked (subscribers)"),
    ("lost", "lost (acknowledged, not in the log)"),
    ("duplicated", "duplicated"),
    ("gaps", "gaps"),
    ("reorders", "reorders"),
    ("http_5xx", "5xx answers"),
    ("health.p50", "health p50 ms"),
    ("health.p99", "health p99 ms"),
    ("health.max", "health max ms"),
    ("rss_before_mib", "RSS before MiB"),
    ("rss_peak_mib", "RSS peak MiB"),
    ("rss_after_mib", "RSS after MiB"),
    ("post.p50", "POST p50 ms"),
    ("post.p99", "POST p99 ms"),
    ("post.max", "POST max ms"),
)


def _value(name: str, value: Figure) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if name.endswith((".p50", ".p99", ".max", "_ms")):
        return ms(float(value))
    if name.endswith(("_mib", "_s")):
        return f"{value:.1f}"
    return count(float(value))


def report(outcome: Outcome) -> str:
    """The scenario's figures (the standard ones first, then its own) and its checks."""
    labels = dict(STANDARD)
    rows = [
        [label, _value(name, outcome.figures[name])]
        for name, label in STANDARD
        if name in outcome.figures
    ]
    rows += [
        [name.replace("_", " "), _value(name, value)]
        for name, value in outcome.figures.items()
        if name not in labels
    ]
    lines = [render(f"== {outcome.scenario}", ["figure", "value"], rows), "  checks"]
    for found in outcome.checks:
        lines.append(f"    {'PASS' if found.passed else 'FAIL'}  {found.name}: {found.detail}")
    lines += [f"  note: {note}" for note in outcome.notes]
    verdict = "PASS" if outcome.passed else "FAIL"
    lines.append(f"  {outcome.scenario}: {verdict}")
    return "\n".join(lines)
