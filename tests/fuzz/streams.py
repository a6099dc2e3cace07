"""Streams: named probes for the failures issue 9 found on Socket.IO, Engine.IO, the
plain WebSocket and SSE, then hypothesis-drawn frames on each. A random input showing a
known symptom is filed under that symptom's check; anything else is a new check."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import orjson
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.fuzz.budget import Budget, Exhausted
from tests.fuzz.figures import Figures
from tests.fuzz.target import Target
from tests.fuzz.transports import (
    NO_CLOSE_FRAME,
    engineio_socket,
    plain_socket,
    polling_query,
    polling_session,
)

OVERFLOW = str(2**63)
STREAM_CHECKS = (
    "websocket.binary_frame",
    "websocket.huge_action",
    "websocket.latest_event_id_overflow",
    "sse.latest_event_id_overflow",
    "socketio.latest_event_id_overflow",
    "engineio.empty_packet",
    "engineio.malformed_packets",
    "engineio.polling_post_over_1mb",
    "engineio.polling_bad_packet_unanswered",
    "socketio.user_action_without_data",
    "websocket.random_frames",
    "websocket.other_conversation",
    "socketio.other_conversation",
    "socketio.user_action_tracebacks",
    "engineio.random_packets",
    "engineio.polling_post_over_body_cap",
)


async def fuzz_streams(target: Target, figures: Figures, budget: Budget, *, rng: int) -> None:
    for name in STREAM_CHECKS:
        figures.check(name)
    phase = "streams"
    target.new_tracebacks()
    async with httpx.AsyncClient(base_url=target.url, headers=target.headers, timeout=10) as http:
        probes = Probes(target, figures, http)
        try:
            for probe in probes.all():
                budget.spend()
                figures.inputs[phase] += 1
                await probe()
            share = budget.share(3)
            await probes.random_websocket_frames(budget, share, rng)
            await probes.random_engineio_frames(budget, share, rng + 1)
            await probes.random_polling_posts(budget, share, rng + 2)
        except Exhausted:
            pass


def draw(strategy: st.SearchStrategy[Any], count: int, rng: int) -> list[Any]:
    """``count`` examples of ``strategy``, reproducibly (fixed seed)."""
    drawn: list[Any] = []

    @seed(rng)
    @settings(
        max_examples=max(1, count),
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(example: Any) -> None:
        drawn.append(example)

    collect()
    return drawn[:count]


def _json() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text()
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )


ACTIONS = st.sampled_from(["message", "think", "change_agent_state", "finish", "nope", ""])
RANDOM_ACTION = st.builds(
    lambda action, args: {"action": action, "args": args},
    ACTIONS,
    st.dictionaries(st.sampled_from(["content", "thought", "agent_state", "x"]), _json()),
)


class Probes:
    def __init__(self, target: Target, figures: Figures, http: httpx.AsyncClient) -> None:
        self.target = target
        self.figures = figures
        self.http = http

    def all(self) -> list[Any]:
        return [
            self.websocket_binary_frame,
            self.websocket_huge_action,
            self.websocket_latest_event_id_overflow,
            self.sse_latest_event_id_overflow,
            self.socketio_latest_event_id_overflow,
            self.engineio_empty_packet,
            self.engineio_malformed_packets,
            self.engineio_polling_posts_over_limits,
            self.engineio_polling_bad_packet,
            self.socketio_user_action_without_data,
            self.other_conversations,
        ]

    async def conversation(self) -> str:
        response = await self.http.post("/api/conversations", json={})
        response.raise_for_status()
        return str(response.json()["conversation_id"])

    async def count(self, conversation_id: str) -> int:
        response = await self.http.get(f"/api/conversations/{conversation_id}/events/count")
        return int(response.json()["count"])

    # -- the plain WebSocket -------------------------------------------------------

    async def websocket_binary_frame(self) -> None:
        check = self.figures.check(
            "websocket.binary_frame",
            "WS /api/conversations/{id}/events; send the binary frame b'\\x00\\x01'",
        )
        socket = await plain_socket(self.target, await self.conversation())
        await socket.send(b"\x00\x01")
        await asyncio.sleep(0.3)
        state = await socket.state(3)
        if state in (NO_CLOSE_FRAME, "hang", "closed 1011"):
            check.fail(f"binary frame: {state}")
        await socket.close()

    async def websocket_huge_action(self) -> None:
        check = self.figures.check(
            "websocket.huge_action",
            'WS /api/conversations/{id}/events; send {"action":"message","args":{"content":'
            '"x"*15MiB}} as one text frame',
        )
        conversation_id = await self.conversation()
        before = await self.count(conversation_id)
        socket = await plain_socket(self.target, conversation_id)
        content = "x" * (15 * 1024 * 1024)
        await socket.send(
            orjson.dumps({"action": "message", "args": {"content": content}}).decode()
        )
        refused = await socket.wait_for(lambda m: b'"error"' in _bytes(m)[:200], 10)
        await socket.close()
        if await self.count(conversation_id) > before:
            check.fail("a 15 MiB action over the WebSocket was accepted and stored")
        elif refused is None and socket.closed is None:
            check.fail("a 15 MiB action: neither refused nor stored within 10 s")

    async def websocket_latest_event_id_overflow(self) -> None:
        check = self.figures.check(
            "websocket.latest_event_id_overflow",
            f"WS /api/conversations/{{id}}/events?latest_event_id={OVERFLOW}",
        )
        socket = await plain_socket(self.target, await self.conversation(), OVERFLOW)
        refused = await socket.wait_for(lambda m: b"latest_event_id" in _bytes(m), 3)
        if refused is None:
            check.fail(f"latest_event_id={OVERFLOW} accepted, then silent")
        await socket.close()

    async def sse_latest_event_id_overflow(self) -> None:
        check = self.figures.check(
            "sse.latest_event_id_overflow",
            f"GET /api/conversations/{{id}}/events/stream?latest_event_id={OVERFLOW}",
        )
        path = f"/api/conversations/{await self.conversation()}/events/stream"
        async with self.http.stream("GET", path, params={"latest_event_id": OVERFLOW}) as answer:
            if answer.status_code != 400:
                check.fail(f"latest_event_id={OVERFLOW}: {answer.status_code}, then silent")

    # -- Socket.IO and Engine.IO ---------------------------------------------------

    async def socketio_latest_event_id_overflow(self) -> None:
        check = self.figures.check(
            "socketio.latest_event_id_overflow",
            f"Socket.IO connect with latest_event_id={OVERFLOW} (Engine.IO websocket, '40')",
        )
        socket, answer = await engineio_socket(self.target, await self.conversation(), OVERFLOW)
        if not answer.startswith("44"):
            check.fail(f"latest_event_id={OVERFLOW} accepted ({answer[:60]!r}), then silent")
        await socket.close()

    async def engineio_empty_packet(self) -> None:
        check = self.figures.check(
            "engineio.empty_packet",
            "Engine.IO websocket, connected ('40'); send an empty text frame ''",
        )
        socket, _ = await engineio_socket(self.target, await self.conversation())
        await socket.send("")
        await asyncio.sleep(0.3)
        state = await socket.state(3)
        if state in (NO_CLOSE_FRAME, "hang", "closed 1011"):
            check.fail(f"empty Engine.IO packet: {state}")
        await socket.close()

    async def engineio_malformed_packets(self) -> None:
        check = self.figures.check(
            "engineio.malformed_packets",
            "Engine.IO websocket, connected ('40'); send '9' (or '4x', '42[', '42{}'): "
            "tracebacks in the server log; or 'jl': the connection drops without a close frame",
        )
        for frame in ("9", "4x", "42[", '42{"a":1}', "4", "jl"):
            self.target.new_tracebacks()
            socket, _ = await engineio_socket(self.target, await self.conversation())
            await socket.send(frame)
            state = await socket.state(2)
            await socket.close()
            await asyncio.sleep(0.1)
            if tracebacks := self.target.new_tracebacks():
                check.fail(f"packet {frame!r}: {tracebacks} tracebacks logged")
            if state in (NO_CLOSE_FRAME, "hang", "closed 1011"):
                check.fail(f"packet {frame!r}: {state}")

    async def engineio_polling_posts_over_limits(self) -> None:
        over_1mb = self.figures.check(
            "engineio.polling_post_over_1mb",
            "Engine.IO long-polling session; POST a body of 1,010,000 bytes (over Engine.IO's "
            "default 1,000,000, within threadline's bounds): it must be answered",
        )
        over_cap = self.figures.check(
            "engineio.polling_post_over_body_cap",
            "Engine.IO long-polling session; POST a body of 2 MiB",
        )
        for check, size in ((over_1mb, 1_010_000), (over_cap, 2 * 1024 * 1024)):
            conversation_id = await self.conversation()
            sid = await polling_session(self.http, self.target, conversation_id)
            query = {**polling_query(self.target, conversation_id), "sid": sid}
            try:
                answer = await self.http.post(
                    "/socket.io/", params=query, content=b"4" + b"x" * (size - 1), timeout=5
                )
            except httpx.TimeoutException:
                check.fail(f"a long-polling POST of {size} bytes: no answer within 5 s")
                continue
            except httpx.TransportError as exc:
                check.fail(f"a long-polling POST of {size} bytes: {exc!r}")
                continue
            within_bounds = size <= self.target.max_message_bytes
            if answer.status_code >= 500 or (not within_bounds and answer.status_code != 413):
                check.fail(f"a long-polling POST of {size} bytes: {answer.status_code}")

    async def engineio_polling_bad_packet(self) -> None:
        check = self.figures.check(
            "engineio.polling_bad_packet_unanswered",
            "Engine.IO long-polling session; POST the body '2' (a client PING, which "
            "Engine.IO 4 servers refuse) and wait 5 s for any answer",
        )
        conversation_id = await self.conversation()
        sid = await polling_session(self.http, self.target, conversation_id)
        query = {**polling_query(self.target, conversation_id), "sid": sid}
        try:
            answer = await self.http.post("/socket.io/", params=query, content=b"2", timeout=5)
        except httpx.TimeoutException:
            check.fail("a long-polling POST of a refused packet ('2'): no answer within 5 s")
            return
        if answer.status_code >= 500:
            check.fail(f"a long-polling POST of a refused packet ('2'): {answer.status_code}")

    async def socketio_user_action_without_data(self) -> None:
        check = self.figures.check(
            "socketio.user_action_without_data",
            "Socket.IO connected; send '421[\"oh_user_action\"]' and wait for the ack '431...'",
        )
        socket, _ = await engineio_socket(self.target, await self.conversation())
        await socket.send('421["oh_user_action"]')
        ack = await socket.wait_for(lambda m: isinstance(m, str) and m.startswith("431"), 3)
        if ack is None:
            check.fail("oh_user_action with no data: never acknowledged")
        await socket.close()

    async def other_conversations(self) -> None:
        """Actions sent on one conversation's stream never land in another's."""
        mine, other = await self.conversation(), await self.conversation()
        before = await self.count(other)
        sneaky = [
            {"action": "message", "args": {"content": "x"}, "conversation_id": other},
            {"action": "message", "args": {"content": "x", "conversation_id": other}},
            {"action": "message", "args": {"content": "x"}, "id": 0, "cause": 0, "sid": other},
        ]
        for transport in ("websocket", "socketio"):
            check = self.figures.check(
                f"{transport}.other_conversation",
                f"{transport}: an action naming another conversation's id",
            )
            if transport == "websocket":
                socket = await plain_socket(self.target, mine)
                for action in sneaky:
                    await socket.send(orjson.dumps(action).decode())
            else:
                socket, _ = await engineio_socket(self.target, mine)
                for number, action in enumerate(sneaky):
                    packet = orjson.dumps(["oh_user_action", action]).decode()
                    await socket.send(f"42{number}{packet}")
            await socket.state(3)
            await socket.close()
            if (after := await self.count(other)) != before:
                check.fail(f"{after - before} events landed in the other conversation")

    # -- random frames -------------------------------------------------------------

    async def random_websocket_frames(self, budget: Budget, count: int, rng: int) -> None:
        frames = draw(
            st.one_of(
                RANDOM_ACTION.map(json.dumps),
                _json().map(json.dumps),
                st.text(max_size=200),
                st.binary(max_size=200),
                st.integers(40, 400).map(
                    lambda depth: (
                        '{"action":"message","args":{"d":' + "[" * depth + "]" * depth + "}}"
                    )
                ),
                st.integers(1, 3).map(lambda mib: "{" + " " * (mib * 1024 * 1024)),
            ),
            count,
            rng,
        )
        random_check = self.figures.check("websocket.random_frames", "(see the frame named)")
        binary_check = self.figures.check("websocket.binary_frame")
        conversation_id = await self.conversation()
        socket = await plain_socket(self.target, conversation_id)
        for frame in frames:
            budget.spend()
            self.figures.inputs["websocket frames"] += 1
            await socket.send(frame)
            state = await socket.state(5)
            if state == "open":
                continue
            check = binary_check if isinstance(frame, bytes) else random_check
            if state in (NO_CLOSE_FRAME, "hang", "closed 1011"):
                check.fail(f"{_short(frame)}: {state}")
            await socket.close()
            socket = await plain_socket(self.target, conversation_id)
        await socket.close()

    async def random_engineio_frames(self, budget: Budget, count: int, rng: int) -> None:
        frames = draw(
            st.one_of(
                st.text(max_size=100),
                st.text(max_size=100).map(lambda text: "4" + text),
                _json().map(lambda value: "42" + json.dumps(value)),
                st.tuples(st.integers(0, 10**6), _json()).map(
                    lambda pair: f"42{pair[0]}" + json.dumps(["oh_user_action", pair[1]])
                ),
                RANDOM_ACTION.map(lambda action: "421" + json.dumps(["oh_user_action", action])),
                st.binary(max_size=100),
                st.just(""),
            ),
            count,
            rng,
        )
        conversation_id = await self.conversation()
        socket, _ = await engineio_socket(self.target, conversation_id)
        for frame in frames:
            budget.spend()
            self.figures.inputs["engine.io frames"] += 1
            await socket.send(frame)
            state = await socket.state(5)
            await asyncio.sleep(0.02)
            self._file_tracebacks(frame)
            if state == "open":
                continue
            if state in (NO_CLOSE_FRAME, "hang", "closed 1011"):
                self.figures.check(_engineio_check(frame)).fail(f"{_short(frame)}: {state}")
            await socket.close()
            socket, _ = await engineio_socket(self.target, conversation_id)
        await socket.close()

    async def random_polling_posts(self, budget: Budget, count: int, rng: int) -> None:
        bodies = draw(
            st.lists(st.text(max_size=60), min_size=1, max_size=5).map("\x1e".join)
            | st.binary(max_size=300),
            count,
            rng,
        )
        conversation_id = await self.conversation()
        sid = await polling_session(self.http, self.target, conversation_id)
        for body in bodies:
            budget.spend()
            self.figures.inputs["engine.io polling"] += 1
            query = {**polling_query(self.target, conversation_id), "sid": sid}
            content = body.encode() if isinstance(body, str) else body
            try:
                answer = await self.http.post(
                    "/socket.io/", params=query, content=content, timeout=5
                )
            except httpx.TimeoutException:
                name = _engineio_check(body)
                if name != "engineio.random_packets":
                    name = "engineio.polling_bad_packet_unanswered"
                self.figures.check(name).fail(f"polling POST {_short(body)}: no answer in 5 s")
                sid = await polling_session(self.http, self.target, conversation_id)
                continue
            self._file_tracebacks(body)
            if answer.status_code >= 500:
                self.figures.check(_engineio_check(body)).fail(
                    f"polling POST {_short(body)}: {answer.status_code}"
                )
            if answer.status_code != 200:  # the session is gone: open another
                sid = await polling_session(self.http, self.target, conversation_id)

    def _file_tracebacks(self, frame: str | bytes) -> None:
        if tracebacks := self.target.new_tracebacks():
            name = _engineio_check(frame)
            if name == "engineio.random_packets":
                name = "socketio.user_action_tracebacks"  # a well-formed event: our handler
            self.figures.check(name).fail(f"{_short(frame)}: {tracebacks} tracebacks")


def _engineio_check(frame: str | bytes) -> str:
    """The check a failure after this Engine.IO frame belongs to: the empty packet, a
    malformed packet (the known symptoms), or a well-formed Socket.IO event."""
    if not frame:
        return "engineio.empty_packet"
    if isinstance(frame, str) and frame.startswith("42") and _is_event(frame):
        return "engineio.random_packets"
    return "engineio.malformed_packets"


def _is_event(frame: str) -> bool:
    body = frame[2:].lstrip("0123456789")
    try:  # as strictly as the server's codec: no Infinity, no integers past 64 bits
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(document, list) and bool(document) and isinstance(document[0], str)


def _bytes(message: str | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.encode()


def _short(frame: str | bytes) -> str:
    text = repr(frame)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(frame)} long)"
