"""File actions confined to a workspace: read, write, and the editor commands
(view / create / str_replace / insert) OpenHands' agents use."""

from __future__ import annotations

import difflib
from pathlib import Path

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


class PathEscapes(ValueError):
    pass


def confine(workspace: Path, path: str) -> Path:
    """The real path of ``path`` (relative to the workspace, or absolute inside it).
    Raises `PathEscapes` for anything that resolves outside, symlinks included."""
    root = workspace.resolve()
    candidate = (root / path).resolve()
    if candidate != root and not candidate.is_relative_to(root):
        raise PathEscapes(f"{path!r} is outside the workspace")
    return candidate


def error(message: str, error_id: str = "") -> ErrorObservation:
    return ErrorObservation(content=message, extras=ErrorExtras(error_id=error_id))


def read_file(workspace: Path, action: FileReadAction) -> ObservationBase:
    try:
        target = confine(workspace, action.args.path)
        text = target.read_text(errors="replace")
    except PathEscapes as exc:
        return error(str(exc), "PATH_OUTSIDE_WORKSPACE")
    except OSError as exc:
        return error(f"cannot read {action.args.path}: {exc.strerror or exc}", "READ_FAILED")
    lines = text.splitlines(keepends=True)
    start = max(action.args.start, 0)
    end = len(lines) if action.args.end == -1 else action.args.end
    return FileReadObservation(
        content="".join(lines[start:end]), extras=FileReadExtras(path=action.args.path)
    )


def write_file(workspace: Path, action: FileWriteAction) -> ObservationBase:
    try:
        target = confine(workspace, action.args.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(action.args.content)
    except PathEscapes as exc:
        return error(str(exc), "PATH_OUTSIDE_WORKSPACE")
    except OSError as exc:
        return error(f"cannot write {action.args.path}: {exc.strerror or exc}", "WRITE_FAILED")
    return FileWriteObservation(extras=FileWriteExtras(path=action.args.path))


def edit_file(workspace: Path, action: FileEditAction) -> ObservationBase:
    args = action.args
    try:
        target = confine(workspace, args.path)
        existed = target.exists()
        before = target.read_text(errors="replace") if existed else ""
        after, summary = _apply(args.command or "create", before, existed, args)
        if args.command != "view":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(after)
    except PathEscapes as exc:
        return error(str(exc), "PATH_OUTSIDE_WORKSPACE")
    except (OSError, ValueError) as exc:
        return error(f"cannot edit {args.path}: {exc}", "EDIT_FAILED")
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
        content=summary,
        extras=FileEditExtras(
            path=args.path,
            prev_exist=existed,
            old_content=args.old_str,
            new_content=args.new_str if args.command != "create" else args.file_text,
            impl_source="oh_aci",
            diff=diff or None,
        ),
    )


def _apply(command: str, before: str, existed: bool, args: object) -> tuple[str, str]:
    path = args.path  # type: ignore[attr-defined]
    match command:
        case "view":
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
