"""Rate limit buckets in Redis (server/redis_buckets.py), against a real redis-server of
this module's own: shared, atomic, refilled on Redis's clock, hashed and expiring keys,
the script reloaded after SCRIPT FLUSH, and failing open (Redis stopped, or paused so it
answers nothing) to the process's own buckets."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from server.ratelimit import TokenBuckets, identity
from server.redis_buckets import (
    BUCKET_SCRIPT,
    TIMEOUT,
    FailOpen,
    RedisBuckets,
    bucket_key,
    connect,
)
from tests.server.redis_server import RedisServer

SCRIPT_SHA = hashlib.sha1(BUCKET_SCRIPT.encode()).hexdigest()  # what EVALSHA names


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:8]}:"


async def test_a_bucket_allows_its_burst_then_paces_at_its_rate(client: Redis, prefix: str) -> None:
    buckets = RedisBuckets(client, rate=5.0, burst=3, prefix=prefix)
    assert [await buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await buckets.take("a")
    assert 0 < wait <= 0.2  # a token every 0.2 s; a refusal takes nothing
    assert await buckets.take("b") == 0.0  # every identity has its own bucket
    await asyncio.sleep(wait + 0.02)
    assert await buckets.take("a") == 0.0  # refilled by the time elapsed
    assert await buckets.take("a") > 0


async def test_processes_share_a_bucket_and_takes_are_atomic(
    redis_server: RedisServer, prefix: str
) -> None:
    """Two clients stand for two processes: 60 concurrent takes from a bucket of 10
    (refilling once in 100 s) let exactly 10 through."""
    first, second = connect(redis_server.url), connect(redis_server.url)
    try:
        shared = [RedisBuckets(c, rate=0.01, burst=10, prefix=prefix) for c in (first, second)]
        waits = await asyncio.gather(*(shared[n % 2].take("caller") for n in range(60)))
        assert waits.count(0.0) == 10
        assert min(wait for wait in waits if wait > 0) > 90
        other = RedisBuckets(first, rate=0.01, burst=10, prefix=prefix + "other:")
        assert await other.take("caller") == 0.0  # another prefix, another bucket
    finally:
        await first.aclose()
        await second.aclose()


async def test_keys_are_hashed_and_expire_once_full_again(client: Redis, prefix: str) -> None:
    buckets = RedisBuckets(client, rate=2.0, burst=4, prefix=prefix)
    key = "tl_" + "k" * 40
    who = identity(key, "10.1.2.3", keys_required=True, vouched=True)
    await buckets.take(who)
    await buckets.take(identity(None, "10.1.2.3", keys_required=False, vouched=False))
    stored = [name.decode() async for name in client.scan_iter(match=prefix + "*")]
    assert sorted(stored) == sorted([bucket_key(who, prefix), bucket_key("addr:10.1.2.3", prefix)])
    for name in stored:
        assert "10.1.2.3" not in name
        assert key not in name
        assert who.removeprefix("key:") not in name  # not even the key's digest
        values = b" ".join(v for pair in (await client.hgetall(name)).items() for v in pair)
        assert b"10.1.2.3" not in values
        assert b"tl_" not in values
        # Full again after burst / rate = 2 s: kept no more than a second longer.
        assert 0 < await client.pttl(name) <= 3000


async def test_the_script_is_loaded_again_after_script_flush(client: Redis, prefix: str) -> None:
    buckets = RedisBuckets(client, rate=0.01, burst=2, prefix=prefix)
    await client.script_flush()
    await buckets.load()
    assert (await client.script_exists(SCRIPT_SHA))[0]
    assert await buckets.take("a") == 0.0
    await client.script_flush()
    assert not (await client.script_exists(SCRIPT_SHA))[0]
    assert await buckets.take("a") == 0.0  # NOSCRIPT, loaded, run: the same bucket
    assert await buckets.take("a") > 0
    assert (await client.script_exists(SCRIPT_SHA))[0]


async def test_redis_stopped_or_paused_fails_open_to_the_process_buckets(
    tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    redis_server = RedisServer(tmp_path_factory.mktemp("redis-down")).start()
    failures: list[int] = []
    limits = FailOpen(
        RedisBuckets(connect(redis_server.url), rate=0.01, burst=3),
        TokenBuckets(rate=0.01, burst=2),
        failed=lambda: failures.append(1),
        where=redis_server.url,
    )
    try:
        assert await limits.check()
        assert [await limits.take("a") for _ in range(4)][-1] > 0  # Redis's bucket of 3

        redis_server.stop()
        with caplog.at_level(logging.WARNING, logger="server.redis_buckets"):
            waits = [await limits.take("a") for _ in range(3)]
        assert waits[:2] == [0.0, 0.0]  # the process's own bucket of 2, then refusals
        assert waits[2] > 0
        assert len(failures) == 3
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # once a minute at most
        assert f"redis at {redis_server.url} does not answer" in warnings[0]
        assert not await limits.check()

        redis_server.start()  # the same port, empty: the shared bucket is full again
        assert await limits.check()
        assert [await limits.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
        assert len(failures) == 3

        redis_server.pause()  # accepts connections, answers nothing
        started = time.monotonic()
        assert await limits.take("b") == 0.0
        assert time.monotonic() - started < TIMEOUT + 0.8  # not a hang
        assert len(failures) == 4
    finally:
        await limits.aclose()
        redis_server.stop()
