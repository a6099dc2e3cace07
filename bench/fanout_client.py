"""The client side of the fan-out benchmark: worker processes, each holding many
subscriber connections on one asyncio loop, driven by the orchestrator through a pipe.

Connections are cheap on purpose, so that the client's share of the two CPUs stays
small and the same for every server: each is an `asyncio.Protocol` around the sans-I/O
`websockets.ClientProtocol` (no task and no future per message). Over it:

* ``ws``: threadline's plain WebSocket (each text message one event) and the bare
  broadcast server (same framing);
* ``sio``: the Engine.IO v4 / Socket.IO v5 text protocol spoken directly over the
  WebSocket transport (open ``0``, namespace connect ``40``, ping ``2`` / pong ``3``,
  events ``42["oh_event", {...}]``), which is what a browser's socket.io-client sends;
* ``sio-lib``: python-socketio's own ``AsyncClient`` (WebSocket transport; it needs
  aiohttp), slower per message, for checking the protocol with the reference client.

Each event's ``id`` is checked against the one expected next on that connection (gaps,
duplicates, reordering, missing) and its append -> receive latency is taken from the
wall-clock stamp at the head of its thought.

Commands: ``connect`` (transport, port, conversation, latest id, count), ``expect``
(first, last, timeouts: answered once with ``armed``, then with the tally),
``close``, ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from multiprocessing.connection import Connection
from typing import Any

import orjson
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from bench.fanout_probe import sent_at

CONNECT_CONCURRENCY = 32


class Tally:
    """What one worker's connections saw during one case."""

    def __init__(self) -> None:
        self.first = 0
        self.last = -1
        self.latencies_ms = array("d")
        self.received = 0
        self.last_received_at = 0.0
        self.done_connections = 0
        self.all_done = asyncio.Event()
        self.connections = 0

    def arm(self, first: int, last: int, connections: int) -> None:
        self.first, self.last, self.connections = first, last, connections
        self.latencies_ms = array("d")
        self.received = 0
        self.last_received_at = 0.0
        self.done_connections = 0
        self.all_done = asyncio.Event()
        if connections == 0 or last < first:
            self.all_done.set()

    def connection_done(self) -> None:
        self.done_connections += 1
        if self.done_connections >= self.connections:
            self.all_done.set()


class Order:
    """The ids one connection received, checked against exactly-once-in-order."""

    __slots__ = ("duplicates", "expected", "gaps", "holes", "received", "reordered", "tally")

    def __init__(self, tally: Tally, after_id: int) -> None:
        self.tally = tally
        self.expected = after_id + 1
        self.holes: set[int] = set()
        self.received = self.gaps = self.duplicates = self.reordered = 0

    def reset(self) -> None:
        self.received = self.gaps = self.duplicates = self.reordered = 0

    def see(self, document: dict[str, Any], now: float) -> None:
        tally = self.tally
        event_id = document["id"]
        if event_id == self.expected:
            self.expected += 1
        elif event_id > self.expected:
            self.gaps += event_id - self.expected
            self.holes.update(range(self.expected, event_id))
            self.expected = event_id + 1
        elif event_id in self.holes:
            self.holes.discard(event_id)
            self.reordered += 1
        else:
            self.duplicates += 1
            return
        self.received += 1
        tally.received += 1
        tally.last_received_at = now
        tally.latencies_ms.append((now - sent_at(document["args"]["thought"])) * 1000)
        if event_id == tally.last:
            tally.connection_done()

    def missing(self) -> int:
        return max(0, self.tally.last + 1 - self.expected) + len(self.holes)


class Receiver(asyncio.Protocol):
    """One subscriber connection over the sans-I/O websockets client."""

    def __init__(self, uri: str, sequence: Order, socketio: bool) -> None:
        self.sequence = sequence
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._socketio = socketio
        self._protocol = ClientProtocol(parse_uri(uri), max_size=None)
        self._transport: asyncio.Transport | None = None
        self._fragments: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._protocol.send_request(self._protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self._protocol.receive_data(data)
        for event in self._protocol.events_received():
            if isinstance(event, Frame):
                self._frame(event, now)
            elif isinstance(event, Response):
                if event.status_code != 101:
                    self._fail(f"handshake answered {event.status_code}")
                elif not self._socketio:
                    self._ready()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"connection lost: {exc}")

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            with contextlib.suppress(Exception):
                self._protocol.send_close(1000)
                self._flush()
            self._transport.close()

    def _frame(self, frame: Frame, now: float) -> None:
        if frame.opcode in (Opcode.TEXT, Opcode.CONT):
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                message = b"".join(self._fragments)
                self._fragments.clear()
                if self._socketio:
                    self._socketio_packet(message, now)
                else:
                    self._event(orjson.loads(message), now)

    def _event(self, document: Any, now: float) -> None:
        if isinstance(document, dict) and "id" in document:
            self.sequence.see(document, now)
        else:
            self._fail(f"not an event: {document!r}"[:200])

    def _socketio_packet(self, message: bytes, now: float) -> None:
        if message.startswith(b"42"):
            name, document = orjson.loads(message[2:])[:2]
            if name == "oh_event":
                self._event(document, now)
        elif message == b"2":
            self._protocol.send_text(b"3")
        elif message.startswith(b"0"):
            self._protocol.send_text(b"40")  # join the default namespace
        elif message.startswith(b"40"):
            self._ready()
        elif message.startswith(b"44"):
            self._fail(f"refused: {message[2:].decode(errors='replace')}")

    def _ready(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))

    def _flush(self) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        for data in self._protocol.data_to_send():
            if data:
                self._transport.write(data)
            elif self._transport.can_write_eof():
                self._transport.write_eof()


class LibraryClient:
    """The reference client: python-socketio's AsyncClient over its WebSocket transport."""

    def __init__(self, url: str, sequence: Order) -> None:
        import socketio  # an optional extra: aiohttp must be installed for it

        self.sequence = sequence
        self._url = url
        self._client = socketio.AsyncClient(reconnection=False)
        self._client.on("oh_event", self._on_event)

    async def start(self) -> None:
        await self._client.connect(self._url, transports=["websocket"], socketio_path="socket.io")

    def close(self) -> None:
        asyncio.get_running_loop().create_task(self._client.disconnect())

    async def _on_event(self, document: dict[str, Any]) -> None:
        self.sequence.see(document, time.time())


Client = Receiver | LibraryClient


class Worker:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._tally = Tally()
        self._clients: list[Client] = []

    async def run(self) -> None:
        while True:
            command: dict[str, Any] = await asyncio.to_thread(self._conn.recv)
            match command["op"]:
                case "connect":
                    self._conn.send(await self._connect(command))
                case "expect":
                    self._conn.send({"armed": True})
                    self._conn.send(await self._expect(command))
                case "close":
                    self._close()
                    self._conn.send({"closed": True})
                case "stop":
                    self._close()
                    return

    async def _connect(self, command: dict[str, Any]) -> dict[str, Any]:
        transport, port, count = command["transport"], command["port"], command["count"]
        query = f"latest_event_id={command['latest']}"
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
        errors: list[str] = []
        started = time.perf_counter()

        async def one() -> None:
            sequence = Order(self._tally, command["latest"])
            async with limit:
                try:
                    client = await _open(
                        transport, port, command["conversation_id"], query, sequence
                    )
                except (OSError, ConnectionError, TimeoutError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    return
            self._clients.append(client)

        await asyncio.gather(*(one() for _ in range(count)))
        return {
            "connected": len(self._clients),
            "errors": errors[:5],
            "seconds": time.perf_counter() - started,
        }

    async def _expect(self, command: dict[str, Any]) -> dict[str, Any]:
        tally = self._tally
        first, last = command["first"], command["last"]
        tally.arm(first, last, len(self._clients))
        for client in self._clients:
            client.sequence.reset()
        armed_at = time.time()
        deadline = time.monotonic() + command["timeout"]
        while not tally.all_done.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tally.all_done.wait(), 0.5)
            quiet_since = max(tally.last_received_at, armed_at + command["start_grace"])
            if time.time() - quiet_since > command["idle_timeout"]:
                break  # nothing arrives any more
        sequences = [client.sequence for client in self._clients]
        return {
            "connections": len(sequences),
            "complete": sum(s.received == last - first + 1 and not s.missing() for s in sequences),
            "received": tally.received,
            "gaps": sum(s.gaps for s in sequences),
            "duplicates": sum(s.duplicates for s in sequences),
            "reordered": sum(s.reordered for s in sequences),
            "missing": sum(s.missing() for s in sequences),
            "last_received_at": tally.last_received_at,
            "latencies_ms": tally.latencies_ms.tobytes(),
        }

    def _close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()


async def _open(
    transport: str, port: int, conversation_id: str, query: str, sequence: Order
) -> Client:
    loop = asyncio.get_running_loop()
    if transport == "sio-lib":
        library = LibraryClient(
            f"http://127.0.0.1:{port}?conversation_id={conversation_id}&{query}", sequence
        )
        await asyncio.wait_for(library.start(), 30)
        return library
    if transport == "sio":
        path = f"/socket.io/?EIO=4&transport=websocket&conversation_id={conversation_id}&{query}"
    elif conversation_id == "bare":
        path = "/"
    else:
        path = f"/api/conversations/{conversation_id}/events?{query}"
    uri = f"ws://127.0.0.1:{port}{path}"
    _, receiver = await loop.create_connection(
        lambda: Receiver(uri, sequence, socketio=transport == "sio"), "127.0.0.1", port
    )
    try:
        await asyncio.wait_for(asyncio.shield(receiver.ready), 30)
    except BaseException:
        receiver.close()
        raise
    return receiver


def main(conn: Connection) -> None:
    """The process entry point (a `multiprocessing` target)."""
    asyncio.run(Worker(conn).run())
