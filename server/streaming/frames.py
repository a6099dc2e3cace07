"""Live events written to WebSocket connections as ready-made frames, encoded once.

Profiling 1,000 subscribers of one conversation showed most of the server's time going
to the path each delivery took *per subscriber*: a task woken per event, the event
decoded and re-encoded, then ASGI ``send`` through Starlette's wrappers, uvicorn and the
websockets protocol, which frames it again; over Socket.IO, python-engineio's writer
task per client on top (``wait_for`` creates a task per packet). A bare
``websockets.broadcast`` does none of that.

So a caught-up subscriber's next event skips all of it: its frame bytes are built once
per event and per format (`FrameCache`; the plain WebSocket sends the stored JSON, the
Socket.IO stream ``42["oh_event",<json>]``) and written straight to each connection's
transport (`FrameWriter`), from the log writer's publish. Nothing of the guarantees
changes:

- **order**: a subscription hands an event over this way only while its reader waits
  with nothing in hand (`storage.Subscription.direct`; for Socket.IO, only while
  Engine.IO's writer also waits on an empty queue), so nothing sent before can be
  overtaken;
- **bounds**: a frame is written only while the transport's buffer is under its
  high-water mark (asyncio's 64 KiB): a client that stops reading stops being written
  to, its events go to its byte-counted subscription buffer and from there, if it
  overflows, back to the log;
- **isolation**: the write never blocks; a declined frame costs the others nothing.

`DirectFramesProtocol` is uvicorn's WebSocket protocol (websockets, sans-I/O) with the
connection's `FrameWriter` in the ASGI scope's extensions (``threadline.frames``);
`server.serving.ThreadlineServer` installs it. Under another server the extension is
absent and every event takes the ASGI path. `tests/server/test_stream_frames.py` fails
if uvicorn's protocol stops exposing what the writer reads.
"""

from __future__ import annotations

import struct
import weakref
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from server.protocol import release_transport

EXTENSION = "threadline.frames"
CACHE_ENTRIES = 256
CACHE_BYTES = 4 << 20


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked (server-to-client) WebSocket text frame (RFC 6455)."""
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


def socketio_event_frame(data: bytes) -> bytes:
    """The frame of an Engine.IO MESSAGE carrying the Socket.IO EVENT ``oh_event``."""
    return text_frame(b'42["oh_event",' + data + b"]")


class FrameCache:
    """The frames of the events being published, by the identity of their bytes: every
    subscriber of a conversation is offered the same `StoredEvent` objects, so the
    first one encodes and the others share. Bounded in entries and bytes."""

    def __init__(self, encode: Any) -> None:
        self._encode = encode
        self._frames: dict[int, tuple[bytes, bytes]] = {}
        self._bytes = 0

    def frame(self, data: bytes) -> bytes:
        found = self._frames.get(id(data))
        if found is not None and found[0] is data:  # held here, so its id is not reused
            return found[1]
        frame = self._encode(data)
        self._frames[id(data)] = (data, frame)
        self._bytes += len(data) + len(frame)
        while len(self._frames) > CACHE_ENTRIES or self._bytes > CACHE_BYTES:
            oldest = next(iter(self._frames))
            old_data, old_frame = self._frames.pop(oldest)
            self._bytes -= len(old_data) + len(old_frame)
        return frame

    def clear(self) -> None:
        """Forget every frame (`server.memory`: after a storm, its last frames would
        stay scattered over the storm's heap until enough new events pushed them out)."""
        self._frames = {}
        self._bytes = 0


class FrameWriter:
    """Writes whole frames to one WebSocket connection's transport, never blocking.

    It knows its protocol by a weak reference: the protocol's scope holds the writer, so
    a strong one would be a cycle keeping every ended connection (protocol, transport,
    socket, parser, buffers) until a full collection, the mid-storm pauses
    `server.memory` is about (`tests/server/test_connection_garbage.py`)."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = weakref.ref(protocol)

    @property
    def ready(self) -> bool:
        """Open, accepted, not closing, and its transport's buffer under the mark."""
        return _writable(self._protocol())

    def write(self, frame: bytes) -> bool:
        """Write ``frame`` now if the connection is `ready`; False (nothing written)
        otherwise."""
        protocol = self._protocol()
        if protocol is None or not _writable(protocol):
            return False
        protocol.transport.write(frame)
        return True


def _writable(protocol: WebSocketsSansIOProtocol | None) -> bool:
    return (
        protocol is not None
        and protocol.handshake_complete
        and protocol.initial_response is None
        and not protocol.close_sent
        and not protocol.disconnected
        and protocol.writable.is_set()
        and not protocol.transport.is_closing()
    )


class DirectFramesProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, offering the app its `FrameWriter` (see above)."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][EXTENSION] = FrameWriter(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        release_transport(self.transport)


def frame_writer(scope: Any) -> FrameWriter | None:
    """The connection's `FrameWriter`, when the server offers one."""
    writer = (scope.get("extensions") or {}).get(EXTENSION)
    return writer if isinstance(writer, FrameWriter) else None
