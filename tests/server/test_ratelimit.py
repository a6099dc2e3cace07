"""Rate limits (issue 9, "Rate limits per key with 429 and Retry-After"): the token
buckets of server/ratelimit.py, then a real server."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from server.ratelimit import TokenBuckets, identity, refusal
from tests.server.openapi_check import undocumented
from tests.server.running import RunningServer
from tests.server.test_openapi import create_key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_bucket_allows_its_burst_then_paces_at_its_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [await buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert await buckets.take("a") == pytest.approx(0.5)  # one token comes every 0.5 s
    clock.now += 0.25
    assert await buckets.take("a") == pytest.approx(0.25)  # a refusal takes nothing
    clock.now += 0.25
    assert await buckets.take("a") == 0.0
    assert await buckets.take("b") == 0.0  # every identity has its own bucket
    clock.now += 60
    assert [await buckets.take("a") for _ in range(4)][-1] > 0  # refills to burst, no further


async def test_a_refusal_is_429_with_retry_after_in_whole_seconds() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=0.1, burst=1, clock=clock)
    assert await buckets.take("a") == 0.0
    refused = refusal(buckets, await buckets.take("a"))
    assert refused.status == 429
    assert refused.headers() == {"Retry-After": "10"}
    assert refusal(buckets, 0.01).headers() == {"Retry-After": "1"}


async def test_buckets_are_bounded_in_number() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1.0, burst=2, clock=clock, max_identities=100)
    await buckets.take("drained", 2)
    for number in range(1000):
        await buckets.take(f"caller-{number}")
        clock.now += 0.001
    assert len(buckets) <= 100
    # Idle (full) buckets went first; a recently drained one is kept only while recent,
    # and a forgotten bucket is a full one: nobody gains more than a burst.
    assert await buckets.take("new") == 0.0


def test_identity_is_a_key_only_when_keys_are_required_and_it_was_seen_valid() -> None:
    assert identity("tl_a", "127.0.0.1", keys_required=True, vouched=True).startswith("key:")
    assert identity("tl_a", "127.0.0.1", keys_required=True, vouched=True) != identity(
        "tl_b", "127.0.0.1", keys_required=True, vouched=True
    )
    assert "tl_a" not in identity("tl_a", "127.0.0.1", keys_required=True, vouched=True)
    assert identity("tl_a", "10.0.0.1", keys_required=False, vouched=True) == "addr:10.0.0.1"
    assert identity(None, "10.0.0.1", keys_required=True, vouched=False) == "addr:10.0.0.1"
    assert identity("tl_x", "10.0.0.1", keys_required=True, vouched=False) == "addr:10.0.0.1"


async def test_random_keys_do_not_each_get_a_bucket(fresh_server: RunningServer) -> None:
    """Keys are counted apart only once the server has seen them valid: a client sending
    a fresh invented key with every request is limited by its address."""
    create_key(str(fresh_server.data_dir), "alice")
    fresh_server.env.update({"THREADLINE_RATE_LIMIT": "1", "THREADLINE_RATE_LIMIT_BURST": "20"})
    fresh_server.start()
    async with httpx.AsyncClient(base_url=fresh_server.url) as client:
        statuses = [
            (
                await client.get(
                    "/api/conversations", headers={"X-Session-API-Key": f"tl_invented{n}"}
                )
            ).status_code
            for n in range(40)
        ]
    assert statuses.count(401) <= 21
    assert 429 in statuses


async def test_a_burst_past_the_limit_gets_429_then_succeeds_after_waiting(
    fresh_server: RunningServer,
) -> None:
    fresh_server.env.update({"THREADLINE_RATE_LIMIT": "2", "THREADLINE_RATE_LIMIT_BURST": "5"})
    fresh_server.start()
    async with httpx.AsyncClient(base_url=fresh_server.url) as client:
        answers = [await client.get("/api/conversations") for _ in range(5)]
        assert [answer.status_code for answer in answers] == [200] * 5
        refused = await client.get("/api/conversations")
        assert refused.status_code == 429
        assert refused.json()["error"] == "too_many_requests"
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= 2
        # Liveness is never refused.
        assert (await client.get("/api/health")).status_code == 200
        await asyncio.sleep(retry_after)
        assert (await client.get("/api/conversations")).status_code == 200
        spec = (await client.get("/openapi.json")).json()
        assert undocumented(spec, refused) is None


async def test_with_keys_each_key_has_its_own_bucket(fresh_server: RunningServer) -> None:
    alice = create_key(str(fresh_server.data_dir), "alice")
    bob = create_key(str(fresh_server.data_dir), "bob")
    fresh_server.env.update({"THREADLINE_RATE_LIMIT": "0.2", "THREADLINE_RATE_LIMIT_BURST": "3"})
    fresh_server.start()
    async with httpx.AsyncClient(base_url=fresh_server.url) as client:
        # A key's first request counts against the address: only a key the server has
        # seen valid gets a bucket of its own (random keys must not each get one).
        for _ in range(4):
            response = await client.get("/api/conversations", headers={"X-Session-API-Key": alice})
            assert response.status_code == 200
        response = await client.get(
            "/api/conversations", headers={"Authorization": f"Bearer {alice}"}
        )
        assert response.status_code == 429
        response = await client.get("/api/conversations", headers={"X-Session-API-Key": bob})
        assert response.status_code == 200
