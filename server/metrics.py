"""``GET /metrics``: Prometheus text exposition through prometheus-client.

The registry is the app's own (never the library's global one): counters and histograms
fed as things happen (appends and live deliveries, through the storage's `LogObserver`),
and gauges read from the server's state at each scrape (`_Now`).
"""

from __future__ import annotations

import bisect
from collections import Counter as Tally
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from storage.records import COST_UNIT

if TYPE_CHECKING:
    from starlette.datastructures import State

TRANSPORTS = ("websocket", "socketio", "sse")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The server's metrics; also the storage's `LogObserver`."""

    def __init__(self, state: State) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events_appended = Counter(
            "threadline_events_appended",
            "Events appended to the log (rate() of it: events appended per second)",
            registry=self.registry,
        )
        self.append_latency = Latencies(
            "threadline_append_latency_seconds",
            "From an append asked for to its events durable (group commit included)",
        )
        self.delivery_latency = Latencies(
            "threadline_delivery_latency_seconds",
            "From an event durable to a live subscriber taking it (catch-up reads not counted)",
        )
        self.registry.register(self.append_latency)
        self.registry.register(self.delivery_latency)
        self.catch_up_pages = Counter(
            "threadline_catch_up_pages",
            "Pages of catch-up subscribers took, by source: memory (the recent events every "
            "subscriber shares) or log (a database read)",
            labelnames=["source"],
            registry=self.registry,
        )
        self._from_memory = self.catch_up_pages.labels(source="memory")
        self._from_log = self.catch_up_pages.labels(source="log")
        self.webhook_failures = Counter(
            "threadline_webhook_failures",
            "Webhook deliveries given up: failed after every attempt, or refused at the boundary",
            registry=self.registry,
        )
        self.rate_limit_store_errors = Counter(
            "threadline_rate_limit_store_errors",
            "Rate limit takes Redis failed or was too slow for (counted by this process instead)",
            registry=self.registry,
        )
        self.now = _Now(state)
        self.registry.register(self.now)

    # -- LogObserver -----------------------------------------------------------------

    def appended(self, events: int, seconds: float) -> None:
        self.events_appended.inc(events)
        self.append_latency.observe(seconds)

    def delivered(self, seconds: float) -> None:
        self.delivery_latency.observe(seconds)

    def caught_up(self, *, from_log: bool) -> None:
        (self._from_log if from_log else self._from_memory).inc()

    # -- a scrape --------------------------------------------------------------------

    async def render(self) -> tuple[bytes, str]:
        """The exposition and its content type. Reads what needs the database first."""
        self.now.cost_micros = await self.now.state.storage.total_cost_micros()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Latencies(Collector):
    """A histogram observed once per delivery per subscriber, in the log writer's
    publish: a bisect and two additions (prometheus-client's Histogram takes a lock and
    walks its buckets, 0.7 us, which a thousand subscribers multiply per event)."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name, self.documentation = name, documentation
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last: above every bound
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        cumulative, buckets = 0, []
        for bound, count in zip([*LATENCY_BUCKETS, float("inf")], self.counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily(
            self.name, self.documentation, buckets=buckets, sum_value=self.sum
        )


class _Now(Collector):
    """Gauges of the moment, read from the app's state at each scrape."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.cost_micros = 0

    def describe(self) -> list[Metric]:
        return []  # collected at scrape time only; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        state: Any = self.state
        settings = state.settings
        if not hasattr(state, "service"):  # before startup, after shutdown
            return
        connections = GaugeMetricFamily(
            "threadline_stream_connections", "Live streams open, by transport", labels=["transport"]
        )
        by_transport: Tally[str] = state.streams.by_transport()
        for transport in TRANSPORTS:
            connections.add_metric([transport], by_transport.get(transport, 0))
        yield connections

        sessions = state.service.sessions
        yield GaugeMetricFamily(
            "threadline_conversations_running",
            "Conversations with a run admitted (running, paused, or held at a limit); with a "
            "shared database, in the whole cluster (aggregate with max, not sum)",
            value=len(sessions.running),
        )
        yield GaugeMetricFamily(
            "threadline_queue_depth",
            "Runs waiting in the queue for a slot (with a shared database: the cluster's queue)",
            value=len(sessions.queued),
        )
        sandboxes = GaugeMetricFamily(
            "threadline_sandboxes", "Sandboxes of active runs, by runtime", labels=["runtime"]
        )
        sandboxes.add_metric([settings.runtime], state.service.runs.active_count())
        yield sandboxes

        lags = state.storage.subscriber_lags()
        yield GaugeMetricFamily(
            "threadline_subscribers", "Log subscriptions open (one per stream)", value=len(lags)
        )
        yield GaugeMetricFamily(
            "threadline_subscriber_lag_max_events",
            "Durable events the furthest-behind subscriber has yet to take",
            value=max(lags, default=0),
        )
        yield GaugeMetricFamily(
            "threadline_subscribers_behind",
            "Subscribers with durable events still to take",
            value=sum(1 for lag in lags if lag > 0),
        )
        yield GaugeMetricFamily(
            "threadline_search_index_lag_events",
            "Events appended and not yet searchable",
            value=state.storage.index_lag(),
        )
        cost = GaugeMetricFamily(
            "threadline_llm_cost",
            "LLM cost of the stored conversations, in the currency",
            labels=["currency"],
        )
        cost.add_metric([settings.llm_currency], self.cost_micros / COST_UNIT)
        yield cost
