"""Every knob of every scenario, with the full defaults (`Options()`) and the short ones
the test suite runs (`Options.short()`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

SCENARIOS = ("kill", "sigterm", "storm", "disk", "slow")


@dataclass(frozen=True, kw_only=True)
class Options:
    seed: int = 1
    seconds: float = 240.0
    """Upper bound on one scenario's load phase (rounds stop early when it is reached)."""

    # kill -9 rounds
    kill_rounds: int = 20
    kill_writers: int = 24
    kill_agent_conversations: int = 4
    kill_plain_conversations: int = 2
    kill_subscribers: int = 1
    """Subscribers per transport per conversation."""
    kill_interval: tuple[float, float] = (0.5, 3.0)
    """A kill lands this many seconds (uniformly random) after the load resumed."""
    demo_pace: float = 0.05
    aim_every: int = 2
    """Every n-th kill is aimed at a run's end (`tests.chaos.aim`); 0: all random."""
    aim_seconds: float = 10.0
    """How long an aimed kill looks for its moment before it falls back to a random one."""

    # SIGTERM rounds
    sigterm_rounds: int = 5
    sigterm_conversations: int = 5
    sigterm_max_running: int = 2
    sigterm_pace: float = 0.3
    grace: float = 15.0
    """Seconds the server may take to exit after SIGTERM."""

    # reconnect storm
    subscribers: int = 1000
    storm_conversations: int = 4
    storm_rate: float = 50.0
    storm_seconds: float = 40.0
    reconnects: tuple[int, int] = (5, 10)
    storm_workers: int = 2

    # disk full
    disk_mb: int = 24
    disk_grown_mb: int = 256
    disk_full_seconds: float = 6.0
    """How long the disk stays full: longer than ``disk_pace``, so every run wakes in it."""
    disk_pace: float = 3.0
    disk_wait: float = 20.0
    """Seconds after space returns for runs to end and messages to be taken up."""
    disk_record_bytes: int = 1_000_000
    """Instructions carried by each agent conversation (see `tests.chaos.diskfull`)."""
    disk_writers: int = 8
    disk_padding: int = 16_384
    disk_agent_conversations: int = 3

    # slow consumers
    slow_clients: int = 5
    """Clients per transport that connect and never read."""
    slow_transports: tuple[str, ...] = ("sio", "sio-polling", "ws", "sse")
    """In this order because memory one phase frees is reused by the next and hides its
    growth: the Socket.IO phases (which free nothing today) come first."""
    slow_mb: int = 100
    """Megabytes of events that flow past the slow clients per transport phase."""
    slow_large_bytes: int = 200_000
    slow_rss_bound_mb: float = 64.0
    """Growth of the server's RSS (MiB) allowed while the slow clients hang on."""
    settle: float = 10.0
    """Seconds to wait before reading the RSS "after"."""

    @classmethod
    def short(cls, **overrides: object) -> Options:
        """The test suite's version: every scenario in seconds, not minutes."""
        values: dict[str, object] = {
            "seconds": 30.0,
            "kill_rounds": 2,
            "kill_writers": 8,
            "kill_agent_conversations": 2,
            "kill_plain_conversations": 1,
            "kill_interval": (0.5, 1.5),
            "aim_every": 1,
            "sigterm_rounds": 2,
            "sigterm_conversations": 4,
            "subscribers": 100,
            "storm_conversations": 2,
            "storm_rate": 30.0,
            "storm_seconds": 6.0,
            "reconnects": (3, 5),
            "disk_mb": 16,
            "disk_grown_mb": 128,
            "disk_full_seconds": 3.0,
            "disk_pace": 2.0,
            "disk_wait": 8.0,
            "disk_writers": 4,
            "disk_agent_conversations": 2,
            "slow_clients": 3,
            "slow_mb": 24,
            "slow_rss_bound_mb": 80.0,
            "settle": 1.0,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> Options:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
