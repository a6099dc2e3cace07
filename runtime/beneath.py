"""Opening a path beneath a directory so that nothing can lead the open outside it.

Every component is opened relative to the directory descriptor of the one before, with
``O_NOFOLLOW``; a symlink met on the way is read (``readlinkat``) and its target walked
the same way, ``..`` goes back up the descriptors already held (never up the live
tree), and anything that would climb above the root, or an absolute link that does
not point into it, is `PathEscapes`. A process swapping a directory for a symlink
mid-walk can therefore only make the walk fail, never redirect it: the kernel's
``openat2(RESOLVE_BENEATH)``, done in user space with the portable calls.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MAX_SYMLINKS = 40
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PathEscapes(ValueError):
    pass


@contextmanager
def parent_of(
    root: Path,
    path: str,
    *,
    create: bool = False,
    owner: tuple[int, int] | None = None,
) -> Iterator[tuple[int, str]]:
    """(descriptor of the directory holding the last component, its name) for
    ``path`` beneath ``root`` (relative, or absolute with ``root``'s real path as a
    prefix). A symlink as the last component is followed too, while it stays beneath.
    ``create`` makes missing directories (mode 0700, given to ``owner``). Open the name
    with ``O_NOFOLLOW`` in that directory: if it was swapped for a symlink since, the
    open fails. Raises `PathEscapes`, `FileNotFoundError`, `NotADirectoryError`,
    `IsADirectoryError`."""
    anchor = os.path.realpath(root)
    held: list[int] = [os.open(anchor, _DIRECTORY)]
    try:
        pending = _components(anchor, path)
        links = 0
        while pending:
            name = pending.pop(0)
            if name == "..":
                if len(held) == 1:
                    raise PathEscapes(f"{path!r} is outside the workspace")
                os.close(held.pop())
                continue
            if not pending:
                target = _symlink_at(held[-1], name)
                if target is None:
                    yield held[-1], name
                    return
            else:
                try:
                    held.append(_open_directory(held[-1], name, create, owner))
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                target = _symlink_at(held[-1], name)
                if target is None:
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
            links += 1
            if links > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
            if target.startswith("/"):  # an absolute link starts again from the root
                for descriptor in held[1:]:
                    os.close(descriptor)
                del held[1:]
                pending = _components(anchor, target, link=True) + pending
            else:
                pending = _components(anchor, target, relative=True) + pending
        raise IsADirectoryError(errno.EISDIR, "is the workspace directory itself", path)
    finally:
        for descriptor in held:
            os.close(descriptor)


def _open_directory(parent: int, name: str, create: bool, owner: tuple[int, int] | None) -> int:
    try:
        return os.open(name, _DIRECTORY, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise
    with contextlib.suppress(FileExistsError):  # made by someone else meanwhile: fine
        os.mkdir(name, 0o700, dir_fd=parent)
    descriptor = os.open(name, _DIRECTORY, dir_fd=parent)
    if owner is not None:
        os.fchown(descriptor, *owner)
    return descriptor


def _symlink_at(directory: int, name: str) -> str | None:
    """The target of ``name`` if it is a symlink, else None."""
    try:
        info = os.lstat(name, dir_fd=directory)
    except FileNotFoundError:
        return None
    if not stat.S_ISLNK(info.st_mode):
        return None
    try:
        return os.readlink(name, dir_fd=directory)
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # swapped back to something else meanwhile
            raise FileNotFoundError(errno.ENOENT, "changed while being opened", name) from None
        raise


def _components(anchor: str, path: str, *, link: bool = False, relative: bool = False) -> list[str]:
    """``path`` as components beneath ``anchor``; an absolute path must start with it."""
    if "\x00" in path:
        raise PathEscapes("a path must not contain NUL")
    if path.startswith("/") and not relative:
        if path != anchor and not path.startswith(anchor.rstrip("/") + "/"):
            what = "points" if link else "is"
            raise PathEscapes(f"{path!r} {what} outside the workspace")
        path = path[len(anchor) :]
    return [part for part in path.split("/") if part not in ("", ".")]
