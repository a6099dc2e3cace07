"""Processes for `bench/sessions.py`: the threadline server and the fake model as
subprocesses, what /proc says about them, and py-spy recording one of them.

Importable as ``bench.sessions_server`` once the repository root is on ``sys.path``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import ROOT, free_port, wait_for_port

MIB = 1024 * 1024
_TICK = os.sysconf("SC_CLK_TCK")


class Subprocess:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**os.environ, **(env or {})},
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def problems(self) -> int:
        """Lines of its log that report an error or a traceback."""
        text = self.log.read_text(errors="replace")
        return sum(
            1 for line in text.splitlines() if line.startswith(("ERROR", "CRITICAL", "Traceback"))
        )


class ThreadlineServer(Subprocess):
    """``python -m server.cli serve`` on a free port over ``data_dir``."""

    def __init__(self, data_dir: Path, env: dict[str, str], timeout: float = 60.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "server.cli", "serve",
                "--port", str(self.port), "--data-dir", str(data_dir)]  # fmt: skip
        super().__init__(argv, data_dir.parent / f"{data_dir.name}.log", env)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not come up:\n{self.log.read_text()}")
            time.sleep(0.05)


class FakeModel(Subprocess):
    """`bench/sessions_model.py` on a free port."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        script = ROOT / "bench" / "sessions_model.py"
        super().__init__([sys.executable, str(script), "--port", str(self.port)], log)
        wait_for_port(self.port)

    def stats(self) -> dict[str, dict[str, float]]:
        answer: dict[str, dict[str, float]] = httpx.get(
            f"http://127.0.0.1:{self.port}/stats", timeout=10
        ).json()
        return answer


# -- /proc -----------------------------------------------------------------------------


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
        cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(value) for value in cpu[:8]]
        idle = ticks[3] + ticks[4]  # idle + iowait
        return cls(
            own=(utime + stime) / _TICK,
            main=(main_utime + main_stime) / _TICK,
            children=(cutime + cstime) / _TICK,
            machine_busy=(sum(ticks) - idle) / _TICK,
            machine_total=sum(ticks) / _TICK,
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


def path_without_shims() -> str:
    """``PATH`` without pyenv's shim directories (a shim is a bash script that runs
    ``pyenv exec``: ~50 ms per ``python3`` instead of ~10)."""
    kept = [part for part in os.environ.get("PATH", "").split(":") if "/shims" not in part]
    return ":".join(kept)


def memory(pid: int) -> tuple[float, float, int]:
    """(RSS MiB, peak RSS MiB, threads) of a process."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM", "Threads"):
            values[name] = int(rest.split()[0])
    return values["VmRSS"] * 1024 / MIB, values["VmHWM"] * 1024 / MIB, values["Threads"]


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


# -- py-spy ----------------------------------------------------------------------------


class Profiler:
    """py-spy recording a process until stopped: raw collapsed stacks of whichever thread
    holds the GIL (``--gil``; without it, py-spy's idle detection counts threads waiting
    in select, waitpid or a queue as busy here)."""

    def __init__(self, output: Path | None, rate: int = 200) -> None:
        self.output = output
        self._rate = rate
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, pid: int) -> None:
        if self.output is None:
            return
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [_py_spy(), "record", "--pid", str(pid), "--rate", str(self._rate), "--nonblocking",
             "--gil", "--threads", "--format", "raw", "--output", str(self.output)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGINT)
            self._process.wait(60)
            self._process = None


def _py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else "py-spy"


Buckets = list[tuple[str, tuple[str, ...]]]
"""(label, substrings): a sample belongs to the first bucket one of whose substrings
occurs in one of its frames (innermost frame first)."""


def summarise(path: Path, buckets: Buckets, top: int = 12) -> dict[str, object]:
    """Where the samples of a raw py-spy recording went: per thread, per bucket (each
    sample counted once, in the first bucket one of its frames matches), the functions
    most often on top of the stack, and the functions most often anywhere in it (below
    the trunk every sample shares: the `TRUNK` functions are left out)."""
    threads: Counter[str] = Counter()
    labelled: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        samples = int(number)
        frames = stack.split(";")
        total += samples
        threads[_thread_name(frames[0])] += samples
        leaves[frames[-1]] += samples
        labelled[_bucket(frames, buckets)] += samples
        for function in {_function(frame) for frame in frames[1:]}:
            if function.partition(" (")[0] not in TRUNK:
                inclusive[function] += samples
    share = {label: count / total for label, count in labelled.most_common()} if total else {}
    return {
        "samples": total,
        "threads": {name: count / total for name, count in threads.most_common()},
        "buckets": share,
        "top_self": [(frame, count / total) for frame, count in leaves.most_common(top)],
        "top_inclusive": [
            (function, count / total) for function, count in inclusive.most_common(top)
        ],
    }


TRUNK = frozenset(
    {
        "_run_module_as_main", "_run_code", "<module>", "main", "serve", "Server.run",
        "asyncio_run", "Runner.run", "BaseEventLoop.run_until_complete",
        "BaseEventLoop.run_forever", "BaseEventLoop._run_once", "Handle._run",
        "Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run",
    }
)  # fmt: skip
"""Functions every sample of a thread passes through: the server's start and the event
loop running a callback, or a thread starting."""


def _function(frame: str) -> str:
    """``name (path/file.py:123)`` -> ``name (path/file.py)``: all lines of a function."""
    name, _, where = frame.rpartition(" (")
    return f"{name} ({where.rpartition(':')[0]})" if name else frame


def _thread_name(frame: str) -> str:
    """``thread (1234): asyncio_3`` -> ``asyncio``; numbers dropped so pools add up."""
    name = frame.partition("): ")[2] or frame
    return re.sub(r"[-_]?\d+", "", name)


def _bucket(frames: list[str], buckets: Buckets) -> str:
    for frame in reversed(frames):
        for label, needles in buckets:
            if any(needle in frame for needle in needles):
                return label
    return "other"
