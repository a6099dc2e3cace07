"""The chat transcript the LLM agent sends, kept as JSON bytes.

Every turn re-sends the whole chat. Building the request from Python objects each time
(the openai client validates and transforms every message of every call) made a step
cost grow with the conversation: 0.7 s per call after 2,000 steps. Here each message is
encoded once, when it joins, and appended to a body kept ready to send: a request costs
one copy of that body, and a message's digest and the request's running hash are
computed once, not on every call.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import orjson

_OPEN = b',"messages":['
_CLOSE = b"]}"


class Transcript:
    def __init__(self, *, model: str, tools: list[Any]) -> None:
        self._head = (
            orjson.dumps({"model": model, "tools": tools, "tool_choice": "auto"})[:-1] + _OPEN
        )
        self._body = bytearray(self._head)
        self._starts: list[int] = []
        """Where each message begins in ``_body``."""
        self._digests: list[str] = []
        self._hash: Any = hashlib.sha256(self._head)
        """Of ``_body`` as it is; None after a `replace` (recomputed when asked)."""

    @property
    def head(self) -> bytes:
        """The request's fixed part (model and tools): two transcripts with the same head
        and messages make the same requests."""
        return self._head

    def add(self, message: dict[str, Any]) -> None:
        self._append(orjson.dumps(message))

    def replace(self, index: int, message: dict[str, Any]) -> None:
        """Message ``index`` becomes ``message``; the messages after it are re-laid (a
        replaced message is near the end: a tool's answer logged after its call)."""
        kept = [self._message(i) for i in range(index + 1, len(self._starts))]
        del self._body[self._starts[index] - (1 if index else 0) :]
        del self._starts[index:]
        del self._digests[index:]
        self._hash = None
        for encoded in (orjson.dumps(message), *kept):
            self._append(encoded)

    def copy(self) -> Transcript:
        twin = Transcript.__new__(Transcript)
        twin._head = self._head
        twin._body = bytearray(self._body)
        twin._starts = list(self._starts)
        twin._digests = list(self._digests)
        twin._hash = self._hash.copy() if self._hash is not None else None
        return twin

    def __len__(self) -> int:
        return len(self._starts)

    @property
    def size(self) -> int:
        """Bytes the transcript holds."""
        return len(self._body)

    def request_body(self) -> bytes:
        """``{"model": ..., "tools": ..., "tool_choice": "auto", "messages": [...]}``."""
        return bytes(self.request())

    def request(self) -> RequestBody:
        """`request_body` as it is now, read from the transcript when sent (valid until
        the next message joins)."""
        return RequestBody(self._body)

    def request_digest(self) -> str:
        """`events.digest` of `request_body`, without hashing the whole body again."""
        if self._hash is None:
            self._hash = hashlib.sha256(self._body)
        whole = self._hash.copy()
        whole.update(_CLOSE)
        return f"sha256:{whole.hexdigest()}"

    def digests(self) -> list[str]:
        """A short digest of each message's bytes, in order (what a re-run compares)."""
        return list(self._digests)

    def messages(self) -> list[Any]:
        """The messages decoded (for tests and debugging)."""
        return [orjson.loads(self._message(i)) for i in range(len(self._starts))]

    def message(self, index: int) -> Any:
        return orjson.loads(self._message(index))

    def _message(self, index: int) -> bytes:
        end = self._starts[index + 1] - 1 if index + 1 < len(self._starts) else len(self._body)
        return bytes(self._body[self._starts[index] : end])

    def _append(self, encoded: bytes) -> None:
        piece = b"," + encoded if self._starts else encoded
        self._starts.append(len(self._body) + len(piece) - len(encoded))
        self._body += piece
        if self._hash is not None:
            self._hash.update(piece)
        self._digests.append(hashlib.sha256(encoded).hexdigest()[:16])


class RequestBody:
    """A request's bytes, read from the transcript's buffer in pieces as they are sent:
    copying the whole body into one new object on every call cost more than the rest of
    a step after ~5,000 steps (py-spy: 17 % of the server's samples at 10,000).

    An async iterable (sent with an explicit Content-Length); each iteration, as a retry
    starts one, begins at the start. ``read``/``seek``/``tell`` make it a seekable file
    to the openai client, which then replays it on a retry."""

    PIECE = 256 * 1024

    def __init__(self, buffer: bytearray) -> None:
        self._buffer = buffer
        self._length = len(buffer)
        self._position = 0

    def __len__(self) -> int:
        return self._length + len(_CLOSE)

    def __bytes__(self) -> bytes:
        return bytes(self._buffer[: self._length]) + _CLOSE

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, self._length, self.PIECE):
            with memoryview(self._buffer) as view:  # never held across a yield: the
                piece = view[start : min(start + self.PIECE, self._length)].tobytes()
            yield piece  # buffer must stay free to grow if the sender gives up
        yield _CLOSE

    def read(self, size: int = -1) -> bytes:
        whole = bytes(self)
        end = len(whole) if size < 0 else self._position + size
        piece, self._position = whole[self._position : end], min(end, len(whole))
        return piece

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: len(self)}[whence]
        self._position = max(0, base + offset)
        return self._position
