"""A health prober in a process of its own (`bench.processes.Peer`), so what it measures
is the server's answer time, not the harness's own loop: ``GET /api/health`` every
``interval`` seconds (the next one starts ``interval`` after the previous answered)."""

from __future__ import annotations

import time
from multiprocessing.connection import Connection
from typing import Any

import httpx

from bench.processes import Peer


def _probe(url: str, interval: float, conn: Connection) -> None:
    latencies: list[float] = []
    failures = 0
    with httpx.Client(timeout=30) as client:
        while not conn.poll(0):
            started = time.perf_counter()
            try:
                ok = client.get(f"{url}/api/health").status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                failures += 1
            time.sleep(max(0.0, interval - (time.perf_counter() - started)) if ok else interval)
    conn.recv()
    conn.send({"latencies": latencies, "failures": failures})


class HealthProber:
    def __init__(self, url: str, interval: float = 0.05) -> None:
        self._peer = Peer(_probe, url, interval)

    def finish(self) -> dict[str, Any]:
        """Stop probing; ``{"latencies": [s, ...], "failures": n}``."""
        try:
            return self._peer.ask({"op": "stop"}, timeout=60)
        finally:
            self._peer.join(5)
