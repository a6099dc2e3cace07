"""uvicorn's HTTP/1.1 protocol (h11) with a deadline for request heads and a lingering
close for refused bodies.

- **Header deadline.** uvicorn bounds the *size* of a request head (h11's
  incomplete-event limit, 16 KiB) but not the *time* it may take: its only timer,
  ``timeout_keep_alive``, runs between responses. A client that sends half a request
  line, or a byte a minute, would hold its connection forever. Here a request head must
  be complete within ``header_timeout`` seconds, counted from the connection (its first
  request) or from the first byte of the next request on a kept-alive connection;
  otherwise the server answers 408 and closes.
- **Lingering close.** When the server answers before reading a request's whole body
  (413 from `server.bodies.BodyLimit`) and closes, closing a socket with unread input
  makes the kernel send a reset, which can destroy the answer before the client reads
  it. Instead the server shuts its sending side, then reads and drops whatever still
  arrives for at most `LINGER_SECONDS` (none of it is kept), then closes (sooner when
  the client closes its side).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

LINGER_SECONDS = 2.0
_TIMEOUT_TEXT = b"the request headers did not arrive in time"
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_TIMEOUT_TEXT), _TIMEOUT_TEXT)
)


def http_protocol(header_timeout: float) -> type[H11Protocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``."""

    class Protocol(ThreadlineHTTPProtocol):
        timeout = header_timeout

    return Protocol


class ThreadlineHTTPProtocol(H11Protocol):
    timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_LingeringTransport(transport, self))  # type: ignore[arg-type]
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._linger is not None:
            return  # the rest of a refused body: dropped
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm()  # part of a request head is here (or nothing yet): keep the clock
        else:
            self._disarm()  # a whole head arrived: the request is the app's now

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        if isinstance(self.transport, _LingeringTransport):
            self.transport = self.transport.real  # the WebSocket protocol gets the real one
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)
        release_transport(self.transport)

    def linger(self, transport: asyncio.Transport) -> None:
        """Close gracefully although the client is still sending (see the module doc)."""
        if self._linger is not None:
            return
        self._linger = self.loop.call_later(LINGER_SECONDS, transport.close)
        transport.resume_reading()
        transport.write_eof()

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.timeout, self._expire)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _expire(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.write(REQUEST_TIMEOUT)
            self.transport.close()


def release_transport(transport: Any) -> None:
    """Break the cycle asyncio's socket transport (Python 3.11) forms with itself: it keeps
    its read callback as one of its own bound methods, so an ended transport, its socket
    and its buffer wait for a full collection. Call once the connection is lost (nothing
    reads after that)."""
    real = getattr(transport, "real", transport)  # under a `_LingeringTransport`
    if getattr(real, "_read_ready_cb", None) is not None:
        real._read_ready_cb = _read_nothing


def _read_nothing() -> None:
    pass


class _LingeringTransport:
    """The connection's transport as uvicorn sees it: ``close()`` lingers while the
    client is still sending a request body; everything else is the real transport.

    It knows its protocol by a weak reference: the protocol holds it, and a cycle would
    keep every ended connection (its parser, buffers, request cycle) in memory until the
    collector's next full pass."""

    def __init__(self, transport: asyncio.Transport, protocol: ThreadlineHTTPProtocol) -> None:
        self.real = transport
        self._protocol = weakref.ref(protocol)

    def close(self) -> None:
        protocol = self._protocol()
        body_unread = protocol is not None and protocol.conn.their_state is h11.SEND_BODY
        if (
            protocol is not None
            and body_unread
            and not self.real.is_closing()
            and self.real.can_write_eof()
        ):
            protocol.linger(self.real)
        else:
            self.real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)
