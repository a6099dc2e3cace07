"""``threadline export`` and ``threadline import``: whole conversations out of and into a
running server, over its HTTP API.

They talk to the server rather than open the data directory: a running server holds the
directory's lock and is the only writer of its log, a recording must pass the same
validation and ownership rules as any import, and the same commands then work against a
server on another machine (``--url``, ``--api-key``, or ``THREADLINE_URL`` /
``THREADLINE_API_KEY``). Progress goes to stderr as a bar when stderr is a terminal.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx2

CHUNK = 256 * 1024
LINE_SUFFIXES = (".jsonl", ".ndjson")


class TransferError(Exception):
    """What went wrong, in words for the person at the terminal."""


def default_url() -> str:
    host = os.environ.get("THREADLINE_HOST", "127.0.0.1")
    return os.environ.get("THREADLINE_URL") or (
        f"http://{host}:{os.environ.get('THREADLINE_PORT', '3000')}"
    )


class Progress:
    """A one-line bar on a terminal (redrawn at most ten times a second); elsewhere only
    the closing summary."""

    def __init__(self, label: str, total: int | None, unit: str, stream: IO[str]) -> None:
        self.label, self.total, self.unit, self.stream = label, total, unit, stream
        self.done = 0
        self._drawn = 0.0
        self._live = stream.isatty()

    def advance(self, amount: int) -> None:
        self.done += amount
        now = time.monotonic()
        if self._live and now - self._drawn >= 0.1:
            self._drawn = now
            self.stream.write("\r" + self.line())
            self.stream.flush()

    def line(self) -> str:
        if not self.total:
            return f"{self.label} {self.done:,} {self.unit}"
        share = min(1.0, self.done / self.total)
        bar = "#" * int(share * 30)
        return f"{self.label} [{bar:<30}] {share:4.0%} {self.done:,}/{self.total:,} {self.unit}"

    def finish(self, summary: str) -> None:
        if self._live:
            self.stream.write("\r\x1b[K")
        self.stream.write(summary + "\n")
        self.stream.flush()


def export_conversation(
    client: httpx2.Client,
    conversation_id: str,
    output: str,
    *,
    lines: bool | None = None,
    include_hidden: bool = False,
) -> int:
    """Write the conversation's trajectory to ``output`` ("-": stdout); JSON Lines when
    ``lines`` (by default: when the file is named .jsonl / .ndjson). The file appears
    only once complete. Returns how many events were written."""
    lines = output.endswith(LINE_SUFFIXES) if lines is None else lines
    hidden = {} if include_hidden else {"exclude_hidden": "true"}
    total = _check(client.get(f"/api/conversations/{conversation_id}/events/count", params=hidden))
    progress = Progress("exporting", total.get("count"), "events", sys.stderr)
    params = {"format": "jsonl", "include_hidden": "true" if include_hidden else "false"}
    with (
        _destination(output) as sink,
        client.stream(
            "GET", f"/api/conversations/{conversation_id}/trajectory", params=params
        ) as response,
    ):
        _check(response)
        written = _copy(response.iter_bytes(CHUNK), sink, lines, progress)
    where = "stdout" if output == "-" else output
    progress.finish(f"exported {written:,} events of {conversation_id} to {where}")
    return written


def import_recording(
    client: httpx2.Client, source: str, *, title: str | None, conversation_id: str | None
) -> dict[str, Any]:
    """Send the recording in ``source`` ("-": stdin) to ``POST /api/conversations/import``;
    returns the server's answer (``conversation_id``, ``events``)."""
    params = {
        key: value
        for key, value in (("title", title), ("conversation_id", conversation_id))
        if value
    }
    lines = source.endswith(LINE_SUFFIXES)
    headers = {"Content-Type": "application/x-ndjson" if lines else "application/json"}
    if source == "-":
        body: Any = sys.stdin.buffer.read()
        progress = Progress("uploading", len(body), "bytes", sys.stderr)
        progress.advance(len(body))
        answer = _check(
            client.post("/api/conversations/import", content=body, params=params, headers=headers)
        )
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise TransferError(f"cannot read {source}: {exc.strerror}") from None
        progress = Progress("uploading", size, "bytes", sys.stderr)
        headers["Content-Length"] = str(size)
        with path.open("rb") as file:
            answer = _check(
                client.post(
                    "/api/conversations/import",
                    content=_chunks(file, progress),
                    params=params,
                    headers=headers,
                )
            )
    progress.finish(
        f"imported {answer['events']:,} events from {source} as {answer['conversation_id']}"
    )
    return answer


def client_for(url: str, api_key: str | None) -> httpx2.Client:
    headers = {"X-Session-API-Key": api_key} if api_key else {}
    return httpx2.Client(base_url=url, headers=headers, timeout=httpx2.Timeout(60, read=600))


def _copy(chunks: Iterator[bytes], sink: IO[bytes], lines: bool, progress: Progress) -> int:
    """JSON Lines from the server into ``sink`` as they come (``lines``), or rewritten into
    ``{"trajectory": [...]}``: an event never holds a raw newline, so each one between
    events becomes a comma. Returns the number of events."""
    written = 0
    sink.write(b"" if lines else b'{"trajectory":[')
    separator = b""
    for chunk in chunks:
        count = chunk.count(b"\n")
        if lines:
            sink.write(chunk)
        else:
            ends_event = chunk.endswith(b"\n")
            body = (chunk[:-1] if ends_event else chunk).replace(b"\n", b",")
            sink.write(separator + body)
            separator = b"," if ends_event else b""
        written += count
        progress.advance(count)
    sink.write(b"" if lines else b"]}\n")
    return written


def _chunks(file: IO[bytes], progress: Progress) -> Iterator[bytes]:
    while chunk := file.read(CHUNK):
        progress.advance(len(chunk))
        yield chunk


@contextmanager
def _destination(output: str) -> Iterator[IO[bytes]]:
    if output == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    final = Path(output)
    partial = final.with_name(final.name + ".part")
    try:
        with partial.open("wb") as file:
            yield file
        partial.replace(final)
    finally:
        partial.unlink(missing_ok=True)


def _check(response: httpx2.Response) -> dict[str, Any]:
    """The JSON answer of a successful call, or a `TransferError` with the server's words."""
    if response.is_success:
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return {}
    response.read()
    try:
        body = response.json()
        message = body.get("message") or response.reason_phrase
        field = f" ({body['field']})" if body.get("field") else ""
    except ValueError:
        message, field = response.text[:200] or response.reason_phrase, ""
    raise TransferError(f"the server answered {response.status_code}: {message}{field}")
