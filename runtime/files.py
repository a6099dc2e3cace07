"""File actions: read, write, and the editor commands (view / create / str_replace /
insert) OpenHands' agents use, over a `FileStore` that confines them to a workspace.

Files larger than the size limit are refused; what an observation carries of a file is
capped like command output (head and tail kept, a marker saying how much was cut).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Protocol

from events import (
    ErrorObservation,
    FileEditAction,
    FileEditObservation,
    FileReadAction,
    FileReadObservation,
    FileWriteAction,
    FileWriteObservation,
    ObservationBase,
)
from events.observations import ErrorExtras, FileEditExtras, FileReadExtras, FileWriteExtras
from runtime.beneath import PathEscapes
from runtime.commands import CappedOutput
from runtime.protocol import CommandLimits

__all__ = ["FileStore", "FileTooLarge", "PathEscapes", "confine", "edit_file", "error"]


class FileTooLarge(ValueError):
    pass


class FileStore(Protocol):
    """Where a runtime's files are read and written; paths are as the agent gave them."""

    async def read(self, path: str, limit: int) -> bytes:
        """The file's bytes. Raises `PathEscapes`, `FileTooLarge` (over ``limit``
        bytes), `FileNotFoundError`, `IsADirectoryError`, `OSError`."""
        ...

    async def write(self, path: str, data: bytes) -> None:
        """Create or replace the file, making missing directories. Raises as `read`."""
        ...


def confine(workspace: Path, path: str) -> Path:
    """The real path of ``path`` (relative to the workspace, or absolute inside it).
    Raises `PathEscapes` for anything that resolves outside, symlinks included. Only a
    check (for a command's working directory): files are opened through a `FileStore`."""
    root = workspace.resolve()
    candidate = (root / path).resolve()
    if candidate != root and not candidate.is_relative_to(root):
        raise PathEscapes(f"{path!r} is outside the workspace")
    return candidate


def error(message: str, error_id: str = "") -> ErrorObservation:
    return ErrorObservation(content=message, extras=ErrorExtras(error_id=error_id))


def capped(text: str, limit: int) -> str:
    output = CappedOutput(limit)
    output.feed(text.encode())
    return output.take()[0]


async def read_file(
    store: FileStore, action: FileReadAction, limits: CommandLimits
) -> ObservationBase:
    path = action.args.path
    try:
        text = (await store.read(path, limits.max_file_size)).decode(errors="replace")
    except Exception as exc:
        return _failure("read", path, exc)
    lines = text.splitlines(keepends=True)
    start = max(action.args.start, 0)
    end = len(lines) if action.args.end == -1 else action.args.end
    return FileReadObservation(
        content=capped("".join(lines[start:end]), limits.output_limit),
        extras=FileReadExtras(path=path),
    )


async def write_file(
    store: FileStore, action: FileWriteAction, limits: CommandLimits
) -> ObservationBase:
    path = action.args.path
    data = action.args.content.encode()
    try:
        _within(len(data), limits, path)
        await store.write(path, data)
    except Exception as exc:
        return _failure("write", path, exc)
    return FileWriteObservation(extras=FileWriteExtras(path=path))


async def edit_file(
    store: FileStore, action: FileEditAction, limits: CommandLimits
) -> ObservationBase:
    args = action.args
    try:
        try:
            before = (await store.read(args.path, limits.max_file_size)).decode(errors="replace")
            existed = True
        except FileNotFoundError:
            before, existed = "", False
        after, summary = _apply(args.command or "create", before, existed, args)
        if args.command != "view":
            data = after.encode()
            _within(len(data), limits, args.path)
            await store.write(args.path, data)
    except Exception as exc:
        return _failure("edit", args.path, exc)
    diff = "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=args.path,
            tofile=args.path,
            n=0,
        )
    )
    return FileEditObservation(
        content=capped(summary, limits.output_limit),
        extras=FileEditExtras(
            path=args.path,
            prev_exist=existed,
            old_content=args.old_str,
            new_content=args.new_str if args.command != "create" else args.file_text,
            impl_source="oh_aci",
            diff=capped(diff, limits.output_limit) or None,
        ),
    )


def _within(size: int, limits: CommandLimits, path: str) -> None:
    if size > limits.max_file_size:
        raise FileTooLarge(
            f"{path} would be larger than {limits.max_file_size} bytes ({size} bytes)"
        )


def _failure(verb: str, path: str, exc: Exception) -> ErrorObservation:
    match exc:
        case PathEscapes():
            return error(str(exc), "PATH_OUTSIDE_WORKSPACE")
        case FileTooLarge():
            return error(f"cannot {verb} {path}: {exc}", "FILE_TOO_LARGE")
        case OSError():
            return error(f"cannot {verb} {path}: {exc.strerror or exc}", f"{verb.upper()}_FAILED")
        case ValueError():
            return error(f"cannot {verb} {path}: {exc}", f"{verb.upper()}_FAILED")
    raise exc


def _apply(command: str, before: str, existed: bool, args: object) -> tuple[str, str]:
    path = args.path  # type: ignore[attr-defined]
    match command:
        case "view":
            if not existed:
                raise FileNotFoundError(2, "No such file or directory", path)
            numbered = "".join(
                f"{number:6}\t{line}"
                for number, line in enumerate(before.splitlines(keepends=True), 1)
            )
            return before, f"Here's the result of running `cat -n` on {path}:\n{numbered}"
        case "create":
            if existed:
                raise ValueError("file already exists; use str_replace to change it")
            text = args.file_text or args.content or ""  # type: ignore[attr-defined]
            return text, f"File created successfully at: {path}"
        case "str_replace":
            old, new = args.old_str or "", args.new_str or ""  # type: ignore[attr-defined]
            if not existed:
                raise ValueError("file does not exist")
            count = before.count(old) if old else 0
            if count != 1:
                raise ValueError(f"old_str must occur exactly once, found {count} occurrence(s)")
            return before.replace(old, new, 1), f"The file {path} has been edited."
        case "insert":
            line = args.insert_line  # type: ignore[attr-defined]
            lines = before.splitlines(keepends=True)
            if line is None or not 0 <= line <= len(lines):
                raise ValueError(f"insert_line must be between 0 and {len(lines)}")
            new = args.new_str or ""  # type: ignore[attr-defined]
            if new and not new.endswith("\n"):
                new += "\n"
            return "".join([*lines[:line], new, *lines[line:]]), f"The file {path} has been edited."
        case _:
            raise ValueError(f"unknown editor command {command!r}")
