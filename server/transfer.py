"""``threadline export`` and ``threadline import``: whole conversations out of and into a
running server, over its HTTP API (through the client library, client/).

They talk to the server rather than open the data directory: a running server holds the
directory's lock and is the only writer of its log, a recording must pass the same
validation and ownership rules as any import, and the same commands then work against a
server on another machine (``--url``, ``--api-key``, or ``THREADLINE_URL`` /
``THREADLINE_API_KEY``). Progress goes to stderr as a bar when stderr is a terminal.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from client import Imported, Threadline

CHUNK = 256 * 1024
LINE_SUFFIXES = (".jsonl", ".ndjson")


class TransferError(Exception):
    """What went wrong on this side (a file), in words for the person at the terminal."""


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
    client: Threadline,
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
    total = client.count(conversation_id, exclude_hidden=not include_hidden)
    progress = Progress("exporting", total, "events", sys.stderr)
    chunks = client.export(conversation_id, include_hidden=include_hidden)
    first = next(chunks, b"")  # the server's refusal, if any, before a file is made
    with _destination(output) as sink:
        written = _copy(itertools.chain([first], chunks), sink, lines, progress)
    where = "stdout" if output == "-" else output
    progress.finish(f"exported {written:,} events of {conversation_id} to {where}")
    return written


def import_recording(
    client: Threadline, source: str, *, title: str | None, conversation_id: str | None
) -> Imported:
    """Send the recording in ``source`` ("-": stdin) to ``POST /api/conversations/import``;
    returns the new conversation's id and its number of events."""
    lines = source.endswith(LINE_SUFFIXES)
    options: dict[str, Any] = {"lines": lines, "title": title, "conversation_id": conversation_id}
    if source == "-":
        body = sys.stdin.buffer.read()
        progress = Progress("uploading", len(body), "bytes", sys.stderr)
        progress.advance(len(body))
        answer = client.import_recording(body, **options)
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise TransferError(f"cannot read {source}: {exc.strerror}") from None
        progress = Progress("uploading", size, "bytes", sys.stderr)
        with path.open("rb") as file:
            answer = client.import_recording(_chunks(file, progress), size=size, **options)
    progress.finish(f"imported {answer.events:,} events from {source} as {answer.conversation_id}")
    return answer


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
