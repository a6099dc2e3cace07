"""The clients of `bench/http.py`: requests for random pages of 100 events, over one
plain keep-alive socket (`RawClient`, microseconds of client cost) or from a separate
process holding many keep-alive connections on asyncio streams (`load_main`).
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

from bench.rest_client import read_answer

PAGE = 100


def request_bytes(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def page_paths(conversation_id: str, events: int, seed: int) -> Iterator[str]:
    rng = random.Random(seed)
    while True:
        start = rng.randrange(0, max(1, events - PAGE))
        yield f"/api/conversations/{conversation_id}/events?start_id={start}&limit={PAGE}"


class RawClient:
    """HTTP/1.1 keep-alive GETs on one plain socket (responses carry Content-Length)."""

    def __init__(self, port: int) -> None:
        self._socket = socket.create_connection(("127.0.0.1", port))
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._file = self._socket.makefile("rb")

    def get(self, path: str) -> bytes:
        self._socket.sendall(request_bytes(path))
        status = self._file.readline()
        length = -1
        while (line := self._file.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if not status.startswith(b"HTTP/1.1 200") or length < 0:
            raise RuntimeError(f"unexpected answer: {status!r}")
        return self._file.read(length)

    def close(self) -> None:
        self._file.close()
        self._socket.close()


async def _async_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> None:
    writer.write(request_bytes(path))
    status, _ = await read_answer(reader)
    if not status.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer: {status!r}")


async def _load(
    port: int, conversation_id: str, events: int, connections: int, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    done = 0
    stop_at = time.perf_counter() + seconds

    async def one(index: int) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        paths = page_paths(conversation_id, events, seed=1000 + index)
        while (now := time.perf_counter()) < stop_at:
            await _async_get(reader, writer, next(paths))
            latencies.append((time.perf_counter() - now) * 1000)
            done += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(index) for index in range(connections)))
    return {
        "requests": done,
        "seconds": time.perf_counter() - started,
        "latencies": latencies,
        "cpu": time.process_time(),
    }


def load_main(
    port: int, conversation_id: str, events: int, connections: int, seconds: float, conn: Connection
) -> None:
    """A client process: ``connections`` keep-alive connections for ``seconds``."""
    conn.send(asyncio.run(_load(port, conversation_id, events, connections, seconds)))
