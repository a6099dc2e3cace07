"""A minimal, fast OpenAI-compatible chat-completions server for `bench/sessions.py` (b).

Run as its own process: ``python bench/sessions_model.py --port P``. Raw asyncio
HTTP/1.1 (keep-alive, ``Content-Length`` bodies; what the ``openai`` client sends), no
framework and no JSON parsing of requests, so its own cost per request stays flat and
small however long the transcript grows.

Every answer to ``POST /v1/chat/completions`` is a ``think`` tool call, built from
prebuilt bytes with a fresh call id spliced in. The conversation is named by a marker
``tl-bench:<name>:<K>.`` in its first user message (near the start of the body, after
the system prompt, so finding it does not grow with the transcript): once that
conversation has had K ``think`` answers, the next answer is a ``finish`` call.

``GET /stats`` answers, per conversation name: requests, request body bytes (first,
last, largest, total), the seconds this server spent answering (from a request's
last byte to its answer written), and per request the µs from its first byte arriving
to its answer written ("wire": taking in the transcript and answering, what a long
transcript costs on the model's side of the socket).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

MARKER = b"tl-bench:"
PLACEHOLDER = "@@N@@"
THOUGHT = (
    "Looking at the failing test again: the parser returns None for empty input, so the "
    "caller should check for it before indexing."
)


def marker(name: str, steps: int) -> str:
    """The text a conversation's first message carries to be answered ``steps`` times."""
    return f"{MARKER.decode()}{name}:{steps}."


def _completion(tool: str, arguments: dict[str, Any]) -> list[bytes]:
    """A chat completion calling ``tool``, split where the call number goes."""
    document = {
        "id": f"chatcmpl-{PLACEHOLDER}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "bench-instant",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": f"call_{PLACEHOLDER}",
                            "type": "function",
                            "function": {
                                "name": tool,
                                "arguments": orjson.dumps(arguments).decode(),
                            },
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 40, "total_tokens": 1040},
    }
    return orjson.dumps(document).split(PLACEHOLDER.encode())


THINK = _completion("think", {"thought": THOUGHT})
FINISH = _completion("finish", {"message": "Done thinking."})


@dataclass(slots=True)
class Tally:
    requests: int = 0
    first_bytes: int = 0
    last_bytes: int = 0
    max_bytes: int = 0
    total_bytes: int = 0
    busy_s: float = 0.0
    wire_us: list[float] = field(default_factory=list)


class Model:
    def __init__(self) -> None:
        self.tallies: dict[str, Tally] = {}
        self._calls = 0

    def answer(self, method: bytes, path: bytes, body: bytes, arrived: float) -> bytes:
        if method == b"GET" and path == b"/stats":
            return _response(200, orjson.dumps({k: asdict(v) for k, v in self.tallies.items()}))
        if method != b"POST" or not path.endswith(b"/chat/completions"):
            return _response(404, b'{"error":{"message":"not found"}}')
        started = time.perf_counter()
        name, steps = _conversation(body)
        tally = self.tallies.setdefault(name, Tally(first_bytes=len(body)))
        self._calls += 1
        number = str(self._calls).encode()
        parts = FINISH if tally.requests >= steps else THINK
        tally.requests += 1
        tally.last_bytes = len(body)
        tally.max_bytes = max(tally.max_bytes, len(body))
        tally.total_bytes += len(body)
        response = _response(200, number.join(parts))
        done = time.perf_counter()
        tally.busy_s += done - started
        tally.wire_us.append((done - arrived) * 1e6)
        return response


def _conversation(body: bytes) -> tuple[str, int]:
    """The name and step count of the marker in ``body`` (("", 0): finish at once)."""
    start = body.find(MARKER)
    if start < 0:
        return "", 0
    start += len(MARKER)
    end = body.find(b".", start)
    name, _, steps = body[start:end].decode(errors="replace").rpartition(":")
    return name, int(steps) if steps.isdigit() else 0


def _response(status: int, body: bytes) -> bytes:
    reason = b"OK" if status == 200 else b"Not Found"
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    return head % (status, reason, len(body)) + body


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: requests in, answers out, in order."""

    def __init__(self, model: Model) -> None:
        self._model = model
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._head: tuple[bytes, bytes] | None = None
        self._length = 0
        self._arrived = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self._head is None and not self._buffer:
            self._arrived = time.perf_counter()
        self._buffer += data
        while self._transport is not None:
            if self._head is None and not self._read_head():
                return
            if len(self._buffer) < self._length:
                return
            body = bytes(self._buffer[: self._length])
            del self._buffer[: self._length]
            assert self._head is not None
            method, path = self._head
            self._head = None
            self._transport.write(self._model.answer(method, path, body, self._arrived))
            self._arrived = time.perf_counter()

    def _read_head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = bytes(self._buffer[:end]).split(b"\r\n")
        del self._buffer[: end + 4]
        method, path, _ = lines[0].split(b" ", 2)
        self._length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                self._length = int(value)
        self._head = (method, path)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


async def serve(port: int) -> None:
    model = Model()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(model), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
