"""Clients that subscribe and then never read a byte, on every transport:

* ``sio``: Socket.IO over its WebSocket transport; ``ws``: the plain WebSocket. Both are
  `bench.fanout_client.Receiver` (sans-I/O websockets), which stops reading its socket
  the moment the subscription is confirmed;
* ``sio-polling``: Socket.IO over HTTP long-polling: the handshake and the namespace
  connect, then no poll ever again (the server holds what it would send);
* ``sse``: a raw HTTP request for the event stream, whose answer is never read.

The kernel's socket buffers fill, then whatever the server keeps for them is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx

from bench.fanout_client import Receiver

SLOW_TRANSPORTS = ("sio", "sio-polling", "ws", "sse")


class _Ignored:
    """Where a `Receiver` puts events it happens to parse before it stops reading."""

    def see(self, document: dict[str, Any], now: float) -> None:
        pass


class NeverReads(Receiver):
    def _ready(self) -> None:
        super()._ready()
        if self._transport is not None:
            self._transport.pause_reading()

    def _event(self, document: Any, now: float) -> None:
        pass


class SlowClient:
    def __init__(self, close: Any) -> None:
        self._close = close

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            result = self._close()
            if asyncio.iscoroutine(result):
                await result


async def _websocket(port: int, path: str, socketio: bool) -> SlowClient:
    loop = asyncio.get_running_loop()
    _, receiver = await loop.create_connection(
        lambda: NeverReads(f"ws://127.0.0.1:{port}{path}", _Ignored(), socketio),  # type: ignore[arg-type]
        "127.0.0.1",
        port,
    )
    await asyncio.wait_for(asyncio.shield(receiver.ready), 10)
    return SlowClient(receiver.close)


async def _polling(url: str, conversation_id: str, after: int) -> SlowClient:
    client = httpx.AsyncClient(base_url=url, timeout=10)
    query = f"EIO=4&transport=polling&conversation_id={conversation_id}&latest_event_id={after}"
    opened = await client.get(f"/socket.io/?{query}&t={time.time()}")
    text = opened.text
    if opened.status_code != 200 or not text.startswith("0"):
        await client.aclose()
        raise ConnectionError(f"polling handshake answered {opened.status_code}: {text[:80]}")
    sid = httpx.Response(200, content=text[1:]).json()["sid"]
    joined = await client.post(f"/socket.io/?EIO=4&transport=polling&sid={sid}", content="40")
    if joined.status_code != 200:
        await client.aclose()
        raise ConnectionError(f"polling namespace connect answered {joined.status_code}")
    return SlowClient(client.aclose)


async def _sse(port: int, conversation_id: str, after: int) -> SlowClient:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /api/conversations/{conversation_id}/events/stream HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
        f"Last-Event-ID: {after}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        writer.close()
        raise ConnectionError(f"SSE answered {head[:40]!r}")
    return SlowClient(writer.close)  # the StreamReader stops reading once 64 KiB wait


async def open_slow(
    transport: str, url: str, port: int, conversation_id: str, after: int
) -> SlowClient:
    """A client of ``transport`` subscribed after id ``after`` that never reads."""
    query = f"conversation_id={conversation_id}&latest_event_id={after}"
    if transport == "sio":
        return await _websocket(port, f"/socket.io/?EIO=4&transport=websocket&{query}", True)
    if transport == "ws":
        path = f"/api/conversations/{conversation_id}/events?latest_event_id={after}"
        return await _websocket(port, path, socketio=False)
    if transport == "sio-polling":
        return await _polling(url, conversation_id, after)
    if transport == "sse":
        return await _sse(port, conversation_id, after)
    raise ValueError(f"unknown slow transport {transport!r}")
