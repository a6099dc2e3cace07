"""What a fuzz run found, as figures: printed at the end and written as JSON."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Check:
    """One named stream check: a deterministic probe, plus any random input that showed
    the same symptom."""

    name: str
    failed: bool = False
    details: list[str] = field(default_factory=list)
    reproduction: str = ""

    def fail(self, detail: str) -> None:
        self.failed = True
        if len(self.details) < 5:
            self.details.append(detail)


@dataclass
class Figures:
    inputs: Counter[str] = field(default_factory=Counter)
    """Inputs tried, by phase."""
    server_errors: Counter[str] = field(default_factory=Counter)
    """5xx answers, by route ("METHOD /template")."""
    hangs: Counter[str] = field(default_factory=Counter)
    """Requests with no answer within the deadline, by route."""
    undocumented: Counter[str] = field(default_factory=Counter)
    """Statuses the OpenAPI document does not list for the operation."""
    tracebacks: Counter[str] = field(default_factory=Counter)
    """Tracebacks in the server's log, by phase (each phase has a server of its own)."""
    peak_rss_kib: dict[str, int] = field(default_factory=dict)
    """VmHWM of each server at the end of the run."""
    checks: dict[str, Check] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    """A few reproductions of REST failures."""
    seconds: float = 0.0

    def check(self, name: str, reproduction: str = "") -> Check:
        found = self.checks.setdefault(name, Check(name))
        found.reproduction = found.reproduction or reproduction
        return found

    def sample(self, line: str) -> None:
        if len(self.samples) < 20:
            self.samples.append(line)

    def write(self, path: Path) -> None:
        document = {
            name: dict(value) if isinstance(value, Counter) else value
            for name, value in vars(self).items()
        }
        document["checks"] = {name: asdict(check) for name, check in self.checks.items()}
        path.write_text(json.dumps(document, indent=2, sort_keys=True))

    def print(self) -> None:
        print(f"fuzz: {sum(self.inputs.values())} inputs in {self.seconds:.1f} s")
        for phase, count in sorted(self.inputs.items()):
            print(f"  {phase:28} {count:6} inputs")
        for phase, count in sorted(self.tracebacks.items()):
            print(f"tracebacks in the {phase} server's log: {count}")
        print(f"server errors (5xx): {sum(self.server_errors.values())}")
        for route, count in self.server_errors.most_common():
            print(f"  {count:5}  {route}")
        print(f"hangs: {sum(self.hangs.values())}")
        for route, count in self.hangs.most_common():
            print(f"  {count:5}  {route}")
        print(f"undocumented statuses: {sum(self.undocumented.values())}")
        for line, count in self.undocumented.most_common():
            print(f"  {count:5}  {line}")
        for server, kib in sorted(self.peak_rss_kib.items()):
            print(f"peak RSS {server}: {kib / 1024:.0f} MiB")
        print("stream checks:")
        for check in sorted(self.checks.values(), key=lambda c: c.name):
            print(f"  {'FAIL' if check.failed else 'ok  '}  {check.name}")
            for detail in check.details:
                print(f"          {detail}")
            if check.failed and check.reproduction:
                print(f"          reproduce: {check.reproduction}")
        for line in self.samples:
            print(f"  sample: {line}")
