"""Rate limits per caller: token buckets for requests.

A caller is identified by `identity`: their API key (by digest) when keys are required,
else their client address. `Buckets` is what the limits are counted in: `TokenBuckets`,
this process's own (the default), or `server.redis_buckets`' buckets in Redis, shared
by every server process (``--redis``). `RateLimit` is the ASGI middleware that applies
them to HTTP requests. (Streams are capped by count instead:
`server.streaming.registry.StreamSessions`.)

Refusals are `TooManyRequests` (429) with ``Retry-After``: the seconds until the caller's
next token.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from server.auth import digest, key_from_headers
from server.errors import TooManyRequests, send_error

MAX_IDENTITIES = 10_000
"""Buckets kept at most; beyond it full (idle) buckets go first, then the least recent."""


def identity(
    key: str | None, client_host: str | None, *, keys_required: bool, vouched: bool
) -> str:
    """Who a limit counts against: the key when keys are required and the server has
    seen it valid (``vouched``), else the client address. An unknown key never gets a
    bucket of its own: a client inventing a key per request is limited by its address."""
    if keys_required and key and vouched:
        return "key:" + digest(key).hex()[:32]
    return "addr:" + (client_host or "unknown")


class Buckets(Protocol):
    """One token bucket per identity, refilling at ``rate`` tokens a second up to
    ``burst``."""

    rate: float
    burst: int

    async def take(self, who: str) -> float:
        """Take a token from ``who``'s bucket: 0.0 when taken, else the seconds until
        one will be there (and nothing is taken)."""
        ...


def refusal(buckets: Buckets, wait: float) -> TooManyRequests:
    """The 429 for a caller who must wait ``wait`` seconds for their next token."""
    return TooManyRequests(
        f"too many requests: at most {buckets.rate:g} a second (bursts of {buckets.burst})",
        retry_after=wait,
    )


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """`Buckets` in this process's memory: each process counts its own callers."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_identities: int = MAX_IDENTITIES,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be more than 0 and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max = max_identities
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    async def take(self, who: str, tokens: float = 1.0) -> float:
        """Take ``tokens`` from ``who``'s bucket: 0.0 when taken, else the seconds until
        they will be there (and nothing is taken)."""
        now = self._clock()
        bucket = self._buckets.pop(who, None)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        self._buckets[who] = bucket  # most recent last
        self._trim(now)
        if bucket.tokens >= tokens:
            bucket.tokens -= tokens
            return 0.0
        return (tokens - bucket.tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)

    def _trim(self, now: float) -> None:
        if len(self._buckets) <= self._max:
            return
        full = [
            who
            for who, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.updated) * self.rate >= self.burst
        ]
        for who in full:  # a full bucket is the same as no bucket
            del self._buckets[who]
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)


KeysRequired = Callable[[], Awaitable[bool]]


class RateLimit:
    """ASGI middleware: every HTTP request outside ``exempt`` path prefixes takes a token
    from its caller's bucket, or is answered 429 with ``Retry-After``."""

    def __init__(
        self,
        app: ASGIApp,
        buckets: Buckets,
        keys_required: KeysRequired,
        vouched: Callable[[str | None], bool],
        *,
        exempt: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.buckets = buckets
        self.keys_required = keys_required
        self.vouched = vouched
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        key = request_key(scope)
        who = identity(
            key,
            (scope.get("client") or (None, None))[0],
            keys_required=await self.keys_required(),
            vouched=self.vouched(key),
        )
        wait = await self.buckets.take(who)
        if wait > 0:
            await send_error(send, refusal(self.buckets, wait))
            return
        await self.app(scope, receive, send)


def request_key(scope: Scope) -> str | None:
    """The API key a request carries: a header, or ``session_api_key`` in the query."""
    headers: Mapping[str, str] = {
        name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
    }
    if key := key_from_headers(headers):
        return key
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("session_api_key")
    return values[0] if values else None
