"""What the machine says about processes and itself (Linux /proc, and ``ps``): memory and
CPU time of a process, the CPU time of the whole machine, other busy processes; and
reading files into the page cache before a read measurement.

Importable as ``bench.machine`` once the repository root is on ``sys.path``.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import MIB

_TICK = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """Resident set size of a process from /proc (Linux); ``field="VmHWM"`` for its peak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for process {pid}")


def memory(pid: int) -> tuple[float, float, int]:
    """(RSS MiB, peak RSS MiB, threads) of a process."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM", "Threads"):
            values[name] = int(rest.split()[0])
    return values["VmRSS"] * 1024 / MIB, values["VmHWM"] * 1024 / MIB, values["Threads"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (all its threads), from /proc."""
    utime, stime, _, _ = _stat_times(Path(f"/proc/{pid}/stat"))
    return (utime + stime) / _TICK


def machine_busy_seconds() -> float:
    """CPU time all processes of the machine have used (every CPU, from /proc/stat): with
    a benchmark's own CPU time subtracted, what others took from it."""
    busy, _ = _machine_ticks()
    return busy / _TICK


@dataclass(frozen=True, slots=True)
class Usage:
    """CPU seconds of a process (all threads; its main thread, the event loop, alone) and
    of the children it has reaped (the commands it ran, with their own children), and
    the machine's CPU seconds busy / in all, at one moment."""

    own: float
    main: float
    children: float
    machine_busy: float
    machine_total: float

    @classmethod
    def of(cls, pid: int) -> Usage:
        utime, stime, cutime, cstime = _stat_times(Path(f"/proc/{pid}/stat"))
        main_utime, main_stime, _, _ = _stat_times(Path(f"/proc/{pid}/task/{pid}/stat"))
        busy, total = _machine_ticks()
        return cls(
            own=(utime + stime) / _TICK,
            main=(main_utime + main_stime) / _TICK,
            children=(cutime + cstime) / _TICK,
            machine_busy=busy / _TICK,
            machine_total=total / _TICK,
        )

    def __sub__(self, earlier: Usage) -> Usage:
        return Usage(
            self.own - earlier.own,
            self.main - earlier.main,
            self.children - earlier.children,
            self.machine_busy - earlier.machine_busy,
            self.machine_total - earlier.machine_total,
        )

    @property
    def machine_share(self) -> float:
        """Fraction of all the machine's CPUs that was busy (anyone's work)."""
        return self.machine_busy / self.machine_total if self.machine_total else float("nan")


def _stat_times(path: Path) -> tuple[int, int, int, int]:
    """utime, stime, cutime, cstime (clock ticks) of a /proc stat file."""
    fields = path.read_text().rpartition(")")[2].split()
    return int(fields[11]), int(fields[12]), int(fields[13]), int(fields[14])


def _machine_ticks() -> tuple[int, int]:
    """(busy, all) clock ticks of every CPU from /proc/stat: user, nice, system, idle,
    iowait, irq, softirq and steal; busy is all but idle and iowait."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def busy_processes(exclude: set[int]) -> list[str]:
    """Other processes that used CPU recently (for the load note): ``ps`` lines."""
    ps = subprocess.run(
        ["ps", "-eo", "pid,pcpu,etime,args", "--sort=-pcpu", "--no-headers"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    found = []
    for line in ps:
        pid, pcpu, *_ = line.split(None, 3)
        if int(pid) not in exclude and float(pcpu) >= 5.0:
            found.append(line.strip()[:160])
    return found[:8]


def warm(directory: Path) -> float:
    """Read every database file of ``directory`` in full (this VM pages out file cache
    left idle for about a minute); returns the seconds it took."""
    start = time.perf_counter()
    buffer = bytearray(1 << 24)
    for path in sorted(directory.glob("*.db*")):
        with path.open("rb", buffering=0) as file:
            while file.readinto(buffer):
                pass
    return time.perf_counter() - start
