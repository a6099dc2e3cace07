"""How deeply a client's JSON may nest.

Everything a client sends is parsed before any model sees it, and parts of it (event
``args`` and ``extras``, ``mcp_config``) are kept as free-form JSON. Nesting is bounded
because every later step walks it recursively: pydantic's serializer and orjson's encoder
give up past a few hundred levels, which would turn a client's document into a server
error at the moment it is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_JSON_DEPTH = 64
"""Containers (objects and arrays) nested in one another, the outermost counting as 1."""


def too_deep(document: Any, limit: int = MAX_JSON_DEPTH) -> list[str | int] | None:
    """The path to the first container nested deeper than ``limit``, or None."""
    return _walk(document, 0, limit)


def depth_field(path: list[str | int], parts: int = 2) -> str:
    """A short dotted name for where a too-deep path goes: its first ``parts`` keys."""
    return ".".join(str(part) for part in path[:parts])


def _walk(value: Any, depth: int, limit: int) -> list[str | int] | None:
    if isinstance(value, Mapping):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    if depth + 1 > limit:
        return []
    for key, child in items:
        below = _walk(child, depth + 1, limit)
        if below is not None:
            return [key, *below]
    return None
