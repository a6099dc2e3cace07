"""What threadline needs of python-engineio beyond its public calls, in one place.

- **Byte-bounded send queues.** Engine.IO keeps one unbounded send queue per client; a
  client that never reads (or long-polls rarely) would grow it without limit. Its
  sockets get their queue from the server's ``create_queue()``, so the server class here
  returns a `ByteQueue` that counts the bytes it holds. An `Outbox` waits for room
  before queueing, and its fast path declines when the queue is full, so a stalled
  client costs the server at most its bound; the subscription behind it then reads from
  the log when the client catches up.
- **Frame checks.** A WebSocket frame Engine.IO cannot parse (empty, binary, an unknown
  packet type) makes it drop the connection without a close frame. `FrameGuard` refuses
  such frames first and closes properly (1002 malformed, 1003 binary).
- **Quiet logs.** Errors a client can provoke are logged once per burst, on one line,
  never with a traceback per packet (`BurstFilter`).

`tests/server/test_engineio_adapter.py` fails if python-engineio stops creating socket
queues through ``create_queue()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import engineio
import engineio.packet
import socketio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ENGINEIO_PACKET_TYPES = frozenset("0123456")


def _size(item: object) -> int:
    data = getattr(item, "data", None)
    return len(data) if isinstance(data, str | bytes) else 64


class ByteQueue(asyncio.Queue[Any]):
    """An `asyncio.Queue` of Engine.IO packets that knows how many bytes it holds."""

    def __init__(self, bound: int) -> None:
        super().__init__()
        self.bound = bound
        self.bytes = 0
        self._room = asyncio.Event()
        self._room.set()

    def has_room(self) -> bool:
        return self.bytes < self.bound

    async def room(self) -> None:
        """Return once the queue holds less than its bound."""
        await self._room.wait()

    def _put(self, item: Any) -> None:
        super()._put(item)
        self.bytes += _size(item)
        if self.bytes >= self.bound:
            self._room.clear()

    def _get(self) -> Any:
        item = super()._get()
        self.bytes -= _size(item)
        if self.bytes < self.bound:
            self._room.set()
        return item


class _BoundedEngineIO(engineio.AsyncServer):
    def __init__(self, *args: Any, send_buffer_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.send_buffer_bytes = send_buffer_bytes

    def create_queue(self, *args: Any, **kwargs: Any) -> asyncio.Queue[Any]:
        return ByteQueue(self.send_buffer_bytes)


class BoundedSocketIO(socketio.AsyncServer):
    """python-socketio's server over an Engine.IO server with `ByteQueue`s."""

    def __init__(self, *, send_buffer_bytes: int, **kwargs: Any) -> None:
        self._send_buffer_bytes = send_buffer_bytes
        super().__init__(**kwargs)

    def _engineio_server_class(self) -> type:
        bound = self._send_buffer_bytes

        class Server(_BoundedEngineIO):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, send_buffer_bytes=bound, **kwargs)

        return Server


class Outbox:
    """One client's way out: Socket.IO packets onto its Engine.IO queue, within bounds."""

    def __init__(self, sio: socketio.AsyncServer, sid: str) -> None:
        self._sio = sio
        self._eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
        socket = sio.eio.sockets.get(self._eio_sid)
        self._socket = socket
        queue = getattr(socket, "queue", None)
        self._queue = queue if isinstance(queue, ByteQueue) else None

    async def send(self, text: str) -> None:
        """Queue one packet once there is room (python-engineio's own ``send``)."""
        if self._queue is not None:
            await self._queue.room()
        await self._sio.eio.send(self._eio_sid, text)

    def offer(self, text: str) -> bool:
        """Queue one packet now if there is room; False (nothing queued) otherwise.
        Never blocks: it runs inside the log writer's publish."""
        socket, queue = self._socket, self._queue
        if socket is None or queue is None or socket.closing or socket.closed:
            return False
        if not queue.has_room():
            return False
        queue.put_nowait(engineio.packet.Packet(engineio.packet.MESSAGE, text))
        return True


class FrameGuard:
    """Closes an Engine.IO WebSocket properly on a frame Engine.IO cannot parse."""

    def __init__(self, app: ASGIApp, path: str = "/socket.io") -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" or not scope["path"].startswith(self.path):
            await self.app(scope, receive, send)
            return
        closed = False

        async def guarded_send(message: Message) -> None:
            if not closed:
                await send(message)

        async def guarded_receive() -> Message:
            nonlocal closed
            message = await receive()
            if message["type"] != "websocket.receive" or closed:
                return message
            refusal = _refusal(message)
            if refusal is None:
                return message
            code, reason = refusal
            closed = True
            await send({"type": "websocket.close", "code": code, "reason": reason})
            return {"type": "websocket.disconnect", "code": code}

        await self.app(scope, guarded_receive, guarded_send)


def _refusal(message: Message) -> tuple[int, str] | None:
    if message.get("bytes") is not None:
        return 1003, "binary frames are not part of this protocol"
    text = message.get("text") or ""
    if not text or text[0] not in ENGINEIO_PACKET_TYPES:
        return 1002, "malformed Engine.IO packet"
    return None


class BurstFilter(logging.Filter):
    """Lets one record per message through every ``window`` seconds, without its
    traceback (the exception's type and text are kept on the line)."""

    def __init__(self, window: float = 10.0) -> None:
        super().__init__()
        self._window = window
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        key = str(record.msg)
        if now - self._last.get(key, float("-inf")) < self._window:
            return False
        self._last[key] = now
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.msg} ({type(error).__name__}: {error})"
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_logger(name: str) -> logging.Logger:
    """A logger for a library's client-provoked errors: warnings and up, one per burst."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.WARNING)
    if not any(isinstance(item, BurstFilter) for item in logger.filters):
        logger.addFilter(BurstFilter())
    return logger
