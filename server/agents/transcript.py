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
        self._body += _CLOSE
        try:
            return bytes(self._body)
        finally:
            del self._body[-len(_CLOSE) :]

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
