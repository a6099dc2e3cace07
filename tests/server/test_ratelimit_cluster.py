"""Rate limits across processes (issue 14, "cluster-wide limits"): two real server
processes, each with its own data directory, share one real redis-server (``--redis``),
so one caller's requests spread over both are counted together; the limit is 1 a second
with bursts of 5 (a slow refill, so that a busy machine cannot blur twice the burst).
Redis stopped: each process counts on its own (fails open)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.server.prometheus import scrape, value
from tests.server.redis_server import RedisServer
from tests.server.running import RunningServer

RATE, BURST = 1, 5
LIMIT = {"THREADLINE_RATE_LIMIT": str(RATE), "THREADLINE_RATE_LIMIT_BURST": str(BURST)}


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[list[RunningServer]]:
    env = {**LIMIT, "THREADLINE_REDIS": redis_server.url}
    servers = [RunningServer(tmp_path_factory.mktemp(f"process{n}"), env=env) for n in (1, 2)]
    with ThreadPoolExecutor(2) as starting:
        list(starting.map(RunningServer.start, servers))
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(autouse=True)
def full_buckets(redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        client.flushall()


async def spread(cluster: list[RunningServer], requests: int) -> list[httpx.Response]:
    """``requests`` requests from one caller, taking turns between the processes."""
    async with httpx.AsyncClient(timeout=10) as client:
        return [
            await client.get(cluster[n % len(cluster)].url + "/api/conversations")
            for n in range(requests)
        ]


def refilled(started: float) -> int:
    """Tokens a bucket may have gained since ``started`` (a monotonic time)."""
    return math.ceil((time.monotonic() - started) * RATE)


def statuses(answers: list[httpx.Response]) -> list[int]:
    return [answer.status_code for answer in answers]


async def test_the_limit_holds_for_the_cluster_not_per_process(
    cluster: list[RunningServer],
) -> None:
    started = time.monotonic()
    answers = await spread(cluster, 12)
    # Each process alone would let 5 through (10 in all); together they let the burst
    # through, and what refilled meanwhile.
    assert statuses(answers)[:BURST] == [200] * BURST
    assert statuses(answers).count(200) <= BURST + refilled(started) < 2 * BURST
    refused = [answer for answer in answers if answer.status_code == 429]
    assert {answer.url.port for answer in refused} == {server.port for server in cluster}
    for answer in refused:
        assert answer.json()["error"] == "too_many_requests"
        assert answer.headers["Retry-After"] == "1"

    await asyncio.sleep(1)  # the Retry-After: a token refilled on Redis's clock
    assert statuses(await spread(cluster[::-1], 1)) == [200]


async def test_the_script_is_loaded_again_after_script_flush(
    cluster: list[RunningServer], redis_server: RedisServer
) -> None:
    assert statuses(await spread(cluster, 2)) == [200] * 2
    with redis_server.client() as client:
        client.script_flush()
    answers = statuses(await spread(cluster, 8))
    assert answers[:3] == [200] * 3
    assert 429 in answers[3:]
    with redis_server.client() as client:
        assert client.info("memory")["number_of_cached_scripts"] == 1
        assert sum(1 for _ in client.scan_iter(match="threadline:rl:*")) == 1


async def test_with_redis_stopped_each_process_counts_on_its_own(
    cluster: list[RunningServer], redis_server: RedisServer
) -> None:
    redis_server.stop()
    try:
        started = time.monotonic()
        answers = statuses(await spread(cluster, 20))
        # Fail-open: every process gives the caller its own burst of 5 (a per-process
        # limit: twice the cluster's), and still refuses past it.
        assert 2 * BURST <= answers.count(200) <= 2 * (BURST + refilled(started)), answers
        assert 429 in answers
        async with httpx.AsyncClient(timeout=10) as client:
            for server in cluster:
                scraped = (await client.get(server.url + "/metrics")).text
                assert value(scrape(scraped), "threadline_rate_limit_store_errors_total") >= 7
                log = server.log.read_text()
                assert f"rate limits: redis at {redis_server.url} does not answer" in log
    finally:
        redis_server.start()  # the same port: the processes reconnect on their own
    answers = statuses(await spread(cluster, 8))
    assert answers[:5] == [200] * 5
    assert 429 in answers[5:]
