"""Rate limit buckets in Redis (``--redis``): every server process counts a caller's
requests in the same bucket, so the limit holds for the cluster, not per process.

One Lua script takes a token atomically: it refills the bucket by the time elapsed on
Redis's own clock (``TIME``: the processes' clocks never meet), takes a token or answers
the wait, and lets the key expire once the bucket would be full again (an expired bucket
and a full one are the same). redis-py's `Script` runs it by ``EVALSHA`` and loads it
again when Redis answers ``NOSCRIPT`` (after a restart or ``SCRIPT FLUSH``).

Keys are ``threadline:rl:<hash>``: a hash of the caller's identity, never an API key or
an address as such.

Redis failing is not a reason to refuse service: a rate limit is abuse protection, not an
authorization boundary. `FailOpen` gives Redis `TIMEOUT` seconds; when it fails or is
slow, this process's own buckets answer instead (a cluster of N processes then lets a
caller through at most N times the limit), a counter goes up and a warning is logged at
most once a minute.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from server.ratelimit import TokenBuckets
from server.settings import redacted

logger = logging.getLogger(__name__)

KEY_PREFIX = "threadline:rl:"
TIMEOUT = 0.2
"""Seconds Redis has to answer one take (connecting included) before the process's own
buckets answer instead."""
MAX_CONNECTIONS = 32
"""Connections to Redis per process; a request finding none free within `TIMEOUT` is
counted locally."""
WARNING_INTERVAL = 60.0
"""Seconds between two warnings about Redis failing (each counts the failures since)."""

BUCKET_SCRIPT = """
-- KEYS[1]: the bucket. ARGV: rate (tokens a second), burst, milliseconds to keep it.
-- Returns the seconds to wait for a token, as a string: "0" when one was taken.
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
  'at', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return string.format('%.17g', wait)
"""


def bucket_key(who: str, prefix: str = KEY_PREFIX) -> str:
    """The Redis key of ``who``'s bucket: a hash, so Redis never holds who it is."""
    return prefix + hashlib.sha256(b"threadline rate limit\0" + who.encode()).hexdigest()[:32]


def connect(url: str) -> Redis:
    """A client of the Redis at ``url`` whose every command gives up after `TIMEOUT`
    (no retries: a failure is answered locally, and the next request tries again)."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=TIMEOUT,
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )
    return Redis.from_pool(pool)


class RedisBuckets:
    """`Buckets` in Redis, shared by every process using the same Redis and ``prefix``.
    `take` raises redis-py's errors (`RedisError`, `OSError`) when Redis fails."""

    def __init__(self, client: Redis, rate: float, burst: int, *, prefix: str = KEY_PREFIX) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be more than 0 and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(BUCKET_SCRIPT)
        # An untouched bucket is full again after burst / rate seconds; keep it a second
        # longer, then it may go.
        self._keep_ms = math.ceil(burst / rate * 1000) + 1000

    async def load(self) -> None:
        """Load the script now (`take` also loads it when Redis has lost it)."""
        await self.client.script_load(BUCKET_SCRIPT)

    async def take(self, who: str) -> float:
        wait = await self._script(
            keys=[bucket_key(who, self.prefix)], args=[repr(self.rate), self.burst, self._keep_ms]
        )
        return float(wait)


class FailOpen:
    """`Buckets` that ask ``shared`` (Redis) first, and ``local`` when it fails or takes
    longer than ``timeout``; each such failure calls ``failed`` (a metric)."""

    def __init__(
        self,
        shared: RedisBuckets,
        local: TokenBuckets,
        *,
        failed: Callable[[], object] = lambda: None,
        timeout: float = TIMEOUT,
        where: str = "",
    ) -> None:
        self.rate = shared.rate
        self.burst = shared.burst
        self.shared = shared
        self.local = local
        self.failed = failed
        self.timeout = timeout
        self.where = where
        self._warned_at = -math.inf
        self._unreported = 0

    async def take(self, who: str) -> float:
        try:
            async with asyncio.timeout(self.timeout):
                return await self.shared.take(who)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failure(exc)
            return await self.local.take(who)

    async def check(self) -> bool:
        """Whether Redis answers now, loading the script (at startup: a warning if not)."""
        try:
            async with asyncio.timeout(self.timeout):
                await self.shared.load()
        except (RedisError, OSError, TimeoutError) as exc:
            self._warn(exc, 0)
            return False
        return True

    async def aclose(self) -> None:
        await self.shared.client.aclose()

    def _failure(self, exc: BaseException) -> None:
        self.failed()
        self._unreported += 1
        now = time.monotonic()
        if now - self._warned_at >= WARNING_INTERVAL:
            self._warned_at = now
            self._warn(exc, self._unreported)
            self._unreported = 0

    def _warn(self, exc: BaseException, failures: int) -> None:
        logger.warning(
            "rate limits: redis at %s does not answer (%s); this process counts on its "
            "own until it does%s",
            self.where,
            f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
            f" (requests counted locally since the last warning: {failures})" if failures else "",
        )


def shared_buckets(
    url: str, rate: float, burst: int, *, failed: Callable[[], object] = lambda: None
) -> FailOpen:
    """The server's buckets with ``--redis``: Redis at ``url``, failing open."""
    return FailOpen(
        RedisBuckets(connect(url), rate, burst),
        TokenBuckets(rate, burst),
        failed=failed,
        where=redacted(url),
    )
