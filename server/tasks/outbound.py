"""Outbound webhook requests: the boundary between the server and addresses users name.

A user's URL must not turn the server into a proxy into its own network. So:

- only ``http`` and ``https`` URLs, without credentials;
- the host is resolved once per attempt and every address it resolves to must be
  global (no private, loopback, link-local, shared, reserved, multicast or unspecified
  address) unless the operator allows the host or the address
  (``THREADLINE_WEBHOOK_ALLOW_HOSTS``: names, addresses, CIDR blocks); the request goes
  to the address checked (pinned: a second resolution cannot rebind it), with the
  name in ``Host`` and in TLS (SNI and certificate checks);
- no proxy from the environment; redirects are followed only to the same scheme, host
  and port, and only 307 / 308 (the POST is kept), at most three;
- a bounded time per attempt and no response body read.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx2

MAX_REDIRECTS = 3
SIGNATURE_HEADER = "X-Threadline-Signature"
EVENT_ID_HEADER = "X-Threadline-Event-Id"
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """The request was not sent (or not followed): the reason says why. Never retried."""


def check_url_form(url: str) -> str:
    """An http(s) URL with a host and no credentials; raises `ValueError` saying why."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http or https URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials")
    try:
        parts.port  # noqa: B018 (a port out of range raises)
    except ValueError:
        raise ValueError("has an invalid port") from None
    return url


@dataclass(frozen=True, slots=True)
class Allowed:
    """What the operator allows despite its address: host names and address blocks."""

    names: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, entries: tuple[str, ...]) -> Allowed:
        names: set[str] = set()
        networks = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.add(entry.lower())
        return cls(frozenset(names), tuple(networks))

    def permits(self, host: str, address: Address) -> bool:
        if address.is_global and not address.is_multicast:
            return True
        if host.lower() in self.names:
            return True
        return any(address in network for network in self.networks)


async def resolve(host: str, port: int, allowed: Allowed) -> Address:
    """The address to connect to; raises `Refused` when one the host resolves to is not
    permitted, or it does not resolve."""
    try:
        literal: Address | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise Refused(f"{host} does not resolve: {exc}") from None
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        mapped = getattr(address, "ipv4_mapped", None) or address
        if not allowed.permits(host, mapped):
            raise Refused(
                f"{host} resolves to {address}, a private, loopback, link-local or reserved "
                "address (THREADLINE_WEBHOOK_ALLOW_HOSTS allows such a host)"
            )
    return addresses[0]


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>``."""
    digest = hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


async def post_signed(
    client: httpx2.AsyncClient,
    url: str,
    body: bytes,
    *,
    secret: str,
    event_id: str,
    attempt: int,
    allowed: Allowed,
) -> int:
    """POST ``body`` to ``url`` within the rules above; returns the HTTP status. Raises
    `Refused`, or `httpx2.HTTPError` for a failure worth retrying."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await resolve(host, port, allowed)
        literal = f"[{address}]" if address.version == 6 else str(address)
        pinned = parts._replace(netloc=f"{literal}:{port}").geturl()
        headers = {
            "Host": parts.netloc.rpartition("@")[2],
            "Content-Type": "application/json",
            "User-Agent": "threadline-webhooks",
            SIGNATURE_HEADER: signature(secret, int(time.time()), body),
            EVENT_ID_HEADER: event_id,
            "X-Threadline-Attempt": str(attempt),
        }
        request = client.build_request(
            "POST", pinned, content=body, headers=headers, extensions={"sni_hostname": host}
        )
        response = await client.send(request, stream=True)
        await response.aclose()  # the receiver's body is not ours to read
        if response.status_code not in (301, 302, 303, 307, 308):
            return response.status_code
        target = urljoin(url, response.headers.get("location", ""))
        moved = urlsplit(target)
        if (moved.scheme, moved.hostname, moved.port) != (parts.scheme, parts.hostname, parts.port):
            raise Refused(f"redirected to another host ({moved.hostname}): not followed")
        if response.status_code not in (307, 308):
            raise Refused(f"a {response.status_code} redirect would drop the POST: not followed")
        url = check_url_form(target)
    raise Refused(f"more than {MAX_REDIRECTS} redirects")


def client(timeout: float) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(timeout, connect=min(timeout, 5.0)),
        follow_redirects=False,
        trust_env=False,  # no proxy from the environment
    )
