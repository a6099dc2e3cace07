"""HTTP/1.1 by hand, for what an HTTP client library will not do: a body that keeps
coming after the answer, a request head that never ends, a server's memory figures."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Answer:
    status: int | None
    """None when the server closed without answering."""
    headers: dict[str, str]
    body: bytes
    sent: int
    """Body bytes the client had written when the answer (or the close) came."""


async def upload(
    port: int,
    path: str,
    *,
    total: int,
    chunked: bool,
    send: bool = True,
    chunk: int = 256 * 1024,
    method: str = "POST",
    time_limit: float = 30.0,
) -> Answer:
    """Send ``total`` bytes of body (declared with Content-Length, or chunked) while
    reading the answer; stop sending as soon as the answer arrives. With ``send=False``
    only the head goes out, as a client waiting for ``100 Continue`` would do."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = b"transfer-encoding: chunked" if chunked else b"content-length: %d" % total
    writer.write(
        b"%s %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n%s\r\n\r\n"
        % (method.encode(), path.encode(), framing)
    )
    sent = 0
    payload = b"x" * chunk

    async def send_body() -> None:
        nonlocal sent
        if not send:
            return
        with contextlib.suppress(ConnectionError):
            while sent < total:
                size = min(chunk, total - sent)
                piece = payload[:size]
                writer.write(b"%x\r\n%s\r\n" % (size, piece) if chunked else piece)
                await writer.drain()
                sent += size
                await asyncio.sleep(0)  # let the answer be read as it comes
            if chunked:
                writer.write(b"0\r\n\r\n")
                await writer.drain()

    sender = asyncio.create_task(send_body())
    try:
        async with asyncio.timeout(time_limit):
            answer = await read_answer(reader)
        answer.sent = sent
        return answer
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return Answer(None, {}, b"", 0)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = b""
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(status, headers, body, 0)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server has closed its side (EOF or reset), whatever it sent first."""
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass
    return True


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` (resident now) and ``VmHWM`` (the peak) of a process, in KiB."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            figures[name] = int(value.split()[0])
    return figures
