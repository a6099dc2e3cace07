"""`watch`: one conversation's events, resumed across drops, each once and in order.

A connection is an async generator that yields ``None`` once it is open, then events;
it ends (or raises `Dropped`) when the connection goes away, and raises a typed
`ApiError` when the server refuses for good (unknown conversation, bad key). `watch`
reconnects with ``latest_event_id`` = the last id it yielded, so the server resumes right
after it; it drops an id it has yielded already, and reconnects when one skips ahead.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Literal
from urllib.parse import quote, urlencode

import orjson

from client.errors import ApiError, ClientError, ServerUnreachable, api_error
from client.models import Event

Transport = Literal["websocket", "socketio"]
Connection = AsyncGenerator[Event | None, None]

FIRST_DELAY = 0.1
MAX_DELAY = 2.0
RETRIED = (429, 503)
"""Refusals that pass: too many streams at once, the server shutting down."""


class Dropped(ClientError):
    """The connection went away; a new one resumes."""


async def watch(
    url: str,
    conversation_id: str,
    *,
    after: int = -1,
    api_key: str | None = None,
    transport: Transport = "websocket",
    give_up_after: float | None = None,
) -> AsyncIterator[Event]:
    connect: Callable[[str, str, int, str | None], Connection] = (
        websocket_connection if transport == "websocket" else socketio_connection
    )
    last = after
    delay = FIRST_DELAY
    down_since: float | None = None
    while True:
        failure: Exception | None = None
        try:
            async with contextlib.aclosing(connect(url, conversation_id, last, api_key)) as stream:
                async for event in stream:
                    down_since, delay = None, FIRST_DELAY
                    if event is None:
                        continue  # open
                    event_id = int(event["id"])
                    if event_id <= last:
                        continue  # had it
                    if event_id != last + 1:
                        break  # a gap: resume from what we have
                    last = event_id
                    yield event
        except ApiError as exc:
            if exc.status not in RETRIED:
                raise
            failure = exc
        except (Dropped, ServerUnreachable) as exc:
            failure = exc
        now = time.monotonic()
        down_since = down_since or now
        if give_up_after is not None and now - down_since >= give_up_after:
            raise ServerUnreachable(
                f"no connection to {url} for {give_up_after:g} s"
                + (f": {failure}" if failure else "")
            )
        await asyncio.sleep(delay * (0.75 + random.random() / 2))
        delay = min(delay * 2, MAX_DELAY)


async def websocket_connection(
    url: str, conversation_id: str, after: int, api_key: str | None
) -> Connection:
    """The plain WebSocket at ``/api/conversations/{id}/events``."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake

    scheme, rest = url.split("://", 1)
    address = (
        f"{'wss' if scheme == 'https' else 'ws'}://{rest}/api/conversations/"
        f"{quote(conversation_id, safe='')}/events?latest_event_id={after}"
    )
    headers = {"X-Session-API-Key": api_key} if api_key else None
    refusal: object = None
    try:
        async with connect(
            address, additional_headers=headers, max_size=None, compression=None, open_timeout=10
        ) as socket:
            yield None
            try:
                async for message in socket:
                    data = orjson.loads(message)
                    if isinstance(data, dict) and isinstance(data.get("id"), int):
                        yield data
                    else:
                        refusal = data  # the server says why, then closes
            except ConnectionClosed:
                pass
            code = socket.close_code or 1006
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise ServerUnreachable(f"cannot reach {url}: {exc}") from None
    if 4400 <= code < 4600:
        raise api_error(code - 4000, refusal)
    raise Dropped(f"the connection closed ({code})")


async def socketio_connection(
    url: str, conversation_id: str, after: int, api_key: str | None
) -> Connection:
    """OpenHands' Socket.IO endpoint: ``oh_event`` out. python-socketio runs each
    handler in a task of its own, so events may arrive out of order: they are held until
    the ones before them came."""
    try:
        import socketio
    except ImportError:  # pragma: no cover - depends on the installation
        raise ClientError(
            "Socket.IO needs python-socketio and aiohttp: pip install 'threadline[socketio]'"
        ) from None

    inbox: asyncio.Queue[Event | None] = asyncio.Queue()  # None: disconnected
    refusals: list[object] = []
    sio = socketio.AsyncClient(reconnection=False)
    sio.on("oh_event", inbox.put_nowait)
    sio.on("oh_stream_closed", refusals.append)
    sio.on("disconnect", lambda *_: inbox.put_nowait(None))
    sio.on("connect_error", refusals.append)
    query: dict[str, str | int] = {"conversation_id": conversation_id, "latest_event_id": after}
    if api_key:
        query["session_api_key"] = api_key
    try:
        await sio.connect(f"{url}?{urlencode(query)}", transports=["websocket"], wait_timeout=10)
    except socketio.exceptions.ConnectionError as exc:
        if refusals:
            raise _socketio_refusal(refusals[0]) from None
        raise ServerUnreachable(f"cannot reach {url}: {exc}") from None
    try:
        yield None
        held: dict[int, Event] = {}
        expected = after + 1
        while True:
            event = await inbox.get()
            if event is None:
                break
            held[int(event["id"])] = event
            while expected in held:
                yield held.pop(expected)
                expected += 1
    finally:
        await sio.disconnect()
    if refusals:
        raise _socketio_refusal(refusals[0])
    raise Dropped("the Socket.IO connection closed")


_STATUS_OF_CODE = {
    "not_found": 404,
    "unauthorized": 401,
    "forbidden": 403,
    "too_many_requests": 429,
    "unavailable": 503,
}


def _socketio_refusal(data: object) -> ApiError:
    body: dict[str, Any] = data if isinstance(data, dict) else {"message": str(data)}
    inner: dict[str, Any] = body["data"] if isinstance(body.get("data"), dict) else body
    code = str(inner.get("error") or "bad_request")
    return api_error(
        _STATUS_OF_CODE.get(code, 400), {"error": code, "message": body.get("message")}
    )
