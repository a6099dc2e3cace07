"""What threadline needs of python-engineio beyond its public calls, in one place.

- **Byte-bounded send queues.** Engine.IO keeps one unbounded send queue per client; a
  client that never reads (or long-polls rarely) would grow it without limit. Its
  sockets get their queue from the server's ``create_queue()``, so the server class here
  returns a `ByteQueue` that counts the bytes it holds. An `Outbox` waits for room
  before queueing, and its fast path declines when the queue is full, so a stalled
  client costs the server at most its bound; the subscription behind it then reads from
  the log when the client catches up.
- **Frame checks.** A WebSocket frame Engine.IO cannot parse (empty, binary, an unknown
  packet type) makes it drop the connection without a close frame; a long-polling POST
  it refuses makes it close the session and then wait, without answering, for a poll
  that never comes. `FrameGuard` refuses such input first: WebSocket frames with a
  proper close (1002 malformed, 1003 binary), POSTs with 400 (a packet a client may not
  send) or 413 (over the message bound), and the session lives on.
- **No garbage cycle per connection.** Engine.IO's WebSocket wrapper raises ``OSError``
  when the client disconnects; its handler catches it while holding the task that
  raised it, so the exception, its traceback and the handler's frame form a cycle that
  keeps the whole connection (protocol, buffers, queue) alive until a full collection.
  `ClosingWebSocket` answers a disconnect once the socket runs its main loop the way
  Engine.IO's handler reads as "closed by the client" (``None``). And every request's
  ``receive`` is kept by a class Engine.IO defines per request (a class is always in a
  cycle), so Engine.IO gets a `ReleasedReceive` that lets go of the connection when the
  request is over. Ended connections are then freed when they end, not by the
  collector's next full pass (a reconnect storm left thousands for it).
- **Quiet logs.** Errors a client can provoke are logged once per burst, on one line,
  never with a traceback per packet (`BurstFilter`).

`tests/server/test_engineio_adapter.py` fails if python-engineio stops creating socket
queues through ``create_queue()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Any
from urllib.parse import parse_qs

import engineio
import engineio.async_drivers.asgi
import engineio.packet
import orjson
import socketio
from engineio.async_socket import AsyncSocket
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.streaming.frames import FrameCache, FrameWriter, frame_writer, socketio_event_frame

ENGINEIO_PACKET_TYPES = frozenset("0123456")
CLIENT_POLLING_TYPES = frozenset("13456")
"""What a client may POST: close, pong, message, upgrade, noop (Engine.IO 4: no ping)."""
RECORD_SEPARATOR = "\x1e"
SOCKETIO_CLIENT_TYPES = frozenset("0123")
"""Socket.IO packets a client may send: connect, disconnect, event, ack."""
EVENT_FRAMES = FrameCache(socketio_event_frame)
"""The ``oh_event`` frames of the events being published, shared by every client."""


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
        self._readers_waiting = 0

    def has_room(self) -> bool:
        return self.bytes < self.bound

    @property
    def drained(self) -> bool:
        """Empty, and a reader (Engine.IO's writer) waits for the next packet: whatever
        it took before is sent, so a frame written past the queue overtakes nothing."""
        return self._readers_waiting > 0 and self.empty()

    async def get(self) -> Any:
        self._readers_waiting += 1
        try:
            return await super().get()
        finally:
            self._readers_waiting -= 1

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


class ClosingWebSocket(engineio.async_drivers.asgi.WebSocket):
    """Engine.IO's ASGI WebSocket, but a disconnect in the socket's main loop reads as
    ``None`` (closed by the client) instead of an ``OSError`` (see the module doc). While
    a long-polling socket upgrades, a disconnect still raises, as the upgrade expects."""

    def __init__(self, handler: Any, server: Any) -> None:
        super().__init__(handler, server)
        self._socket = getattr(handler, "__self__", None)

    async def wait(self) -> Any:
        try:
            return await super().wait()
        except OSError:
            if self._socket is not None and self._socket.upgraded:
                return None
            raise


class _BoundedEngineIO(engineio.AsyncServer):
    def __init__(self, *args: Any, send_buffer_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.send_buffer_bytes = send_buffer_bytes
        # The drivers' table is shared by every server of the process: replace, not edit.
        drivers: dict[str, Any] = self._async  # type: ignore[has-type]
        self._async = {**drivers, "websocket": ClosingWebSocket}
        self._ping_timers: dict[str, asyncio.Task[Any]] = {}

    def create_queue(self, *args: Any, **kwargs: Any) -> asyncio.Queue[Any]:
        return ByteQueue(self.send_buffer_bytes)

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> Any:
        task = super().start_background_task(target, *args, **kwargs)
        socket = getattr(target, "__self__", None)
        if isinstance(socket, AsyncSocket):  # its ping timer (`schedule_ping`)
            self._ping_timers[socket.sid] = task
            task.add_done_callback(functools.partial(self._ping_timer_done, socket.sid))
        return task

    def _ping_timer_done(self, sid: str, task: asyncio.Task[Any]) -> None:
        if self._ping_timers.get(sid) is task:
            del self._ping_timers[sid]

    async def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "disconnect" and args:
            # The socket's ping timer sleeps a ping interval holding the whole socket
            # (queue, packets, session): an ended connection goes now, not 15 s later.
            timer = self._ping_timers.pop(args[0], None)
            if timer is not None and timer is not asyncio.current_task():
                timer.cancel()
        return await super()._trigger_event(event, *args, **kwargs)

    async def _service_task(self) -> None:
        """Engine.IO's watch over its clients (close those whose pings stopped, forget
        the closed), walking them by id: Engine.IO's own walk holds a copy of every
        socket for a whole ping timeout, which kept each ended connection of a storm
        alive for up to 20 s more."""
        stop = self.create_event()
        self.service_task_event = stop
        while not stop.is_set():
            sids = list(self.sockets)
            interval = self.ping_timeout / max(1, len(sids))
            for sid in sids or [None]:
                try:
                    await self._watch(sid)
                except asyncio.CancelledError:
                    return
                except Exception:
                    self.logger.exception("service task exception")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval if sids else self.ping_timeout)
                if stop.is_set():
                    return

    async def _watch(self, sid: str | None) -> None:
        socket = self.sockets.get(sid) if sid is not None else None
        if socket is None:
            return
        if socket.closed:
            self.sockets.pop(sid, None)
        elif not socket.closing:
            await socket.check_ping_timeout()


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
    """One client's way out: Socket.IO packets onto its Engine.IO queue, within bounds;
    or, once it is on a WebSocket and Engine.IO has nothing pending for it, an event's
    ready-made frame straight to the connection (`server.streaming.frames`)."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        sid: str,
        writer: FrameWriter | None = None,
        upgrades: dict[str, FrameWriter] | None = None,
    ) -> None:
        self._sio = sio
        self._eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
        socket = sio.eio.sockets.get(self._eio_sid)
        self._socket = socket
        queue = getattr(socket, "queue", None)
        self._queue = queue if isinstance(queue, ByteQueue) else None
        self._writer = writer
        self._upgrades = upgrades if upgrades is not None else {}

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

    def offer_event(self, data: bytes) -> bool:
        """`offer` of the ``oh_event`` packet of a stored event's bytes: written as a
        shared frame when the connection allows it (see the class), else queued."""
        socket, queue = self._socket, self._queue
        if socket is None or queue is None or socket.closing or socket.closed:
            return False
        writer = self._writer or self._upgrades.get(self._eio_sid)
        if writer is None or not (socket.upgraded and queue.drained):
            return self.offer('2["oh_event",' + data.decode() + "]")
        if writer.write(EVENT_FRAMES.frame(data)):
            return True
        return self.offer('2["oh_event",' + data.decode() + "]")


class FrameGuard:
    """Refuses what Engine.IO cannot take gracefully, before it sees it (see above)."""

    def __init__(
        self,
        app: ASGIApp,
        path: str,
        max_message_bytes: int,
        upgrades: dict[str, FrameWriter] | None = None,
    ) -> None:
        self.app = app
        self.path = path
        self.max_message_bytes = max_message_bytes
        self.upgrades: dict[str, FrameWriter] = upgrades if upgrades is not None else {}
        """The frame writers of WebSockets that upgrade a long-polling session, by its
        Engine.IO id (a session opened on a WebSocket finds its own in the scope)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not scope["path"].startswith(self.path):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "http" and scope["method"] == "POST":
            await self._polling_post(scope, receive, send)
        else:
            await self._engineio(scope, receive, send)

    async def _engineio(self, scope: Scope, receive: Receive, send: Send) -> None:
        released = ReleasedReceive(receive, scope["type"])
        try:
            await self.app(scope, released, send)
        finally:
            released.release()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
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

        writer = frame_writer(scope)
        upgraded = parse_qs(scope.get("query_string", b"").decode()).get("sid", [""])[0]
        if writer is not None and upgraded:
            self.upgrades[upgraded] = writer
        try:
            await self._engineio(scope, guarded_receive, guarded_send)
        finally:
            if upgraded and self.upgrades.get(upgraded) is writer:
                del self.upgrades[upgraded]

    async def _polling_post(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_message_bytes:
                await _answer(send, 413, "too_large", "the packets are larger than allowed")
                return
            if not message.get("more_body", False):
                break
        problem = _polling_problem(bytes(body))
        if problem is not None:
            await _answer(send, 400, "invalid_packet", problem)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self._engineio(scope, replay, send)


class ReleasedReceive:
    """An ASGI ``receive`` that stops referring to the connection once `release`d (then
    it only says the client disconnected). See the module doc: Engine.IO keeps the
    ``receive`` it is given in a reference cycle."""

    __slots__ = ("_disconnect", "_receive")

    def __init__(self, receive: Receive, scope_type: str) -> None:
        self._receive: Receive | None = receive
        self._disconnect = (
            "websocket.disconnect" if scope_type == "websocket" else "http.disconnect"
        )

    async def __call__(self) -> Message:
        receive = self._receive
        if receive is None:
            return {"type": self._disconnect}
        return await receive()

    def release(self) -> None:
        self._receive = None


def _polling_problem(body: bytes) -> str | None:
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return "Engine.IO packets are UTF-8 text"
    for packet in text.split(RECORD_SEPARATOR):
        if not packet or packet[0] not in CLIENT_POLLING_TYPES:
            return f"{packet[:20]!r} is not an Engine.IO packet a client may send"
        if (problem := _socketio_problem(packet)) is not None:
            return problem
    return None


def _socketio_problem(packet: str) -> str | None:
    """What is wrong with the Socket.IO packet an Engine.IO MESSAGE carries, if anything
    python-socketio would choke on (it raises in a background task on an event whose
    name is not a string, for one)."""
    if packet[0] != "4":
        return None
    body = packet[1:]
    if not body or body[0] not in SOCKETIO_CLIENT_TYPES:
        return "not a Socket.IO packet this server takes (no binary events)"
    if body[0] != "2":
        return None
    rest = body[1:]
    if rest.startswith("/"):
        _, _, rest = rest.partition(",")
    rest = rest.lstrip("0123456789")  # an acknowledgement id
    try:
        event = orjson.loads(rest)
    except orjson.JSONDecodeError:
        return "a Socket.IO event is a JSON array"
    if not isinstance(event, list) or not event or not isinstance(event[0], str):
        return "a Socket.IO event is a JSON array that starts with the event's name"
    return None


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send(
        {"type": "http.response.body", "body": orjson.dumps({"error": code, "message": message})}
    )


def _refusal(message: Message) -> tuple[int, str] | None:
    if message.get("bytes") is not None:
        return 1003, "binary frames are not part of this protocol"
    text = message.get("text") or ""
    if not text or text[0] not in ENGINEIO_PACKET_TYPES:
        return 1002, "malformed Engine.IO packet"
    if _socketio_problem(text) is not None:
        return 1002, "malformed Socket.IO packet"
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
