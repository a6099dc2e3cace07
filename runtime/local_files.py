"""`LocalFiles`: the local runtime's `FileStore`, walking the workspace with directory
descriptors (`runtime.beneath`) so a symlink swapped in mid-action leads nowhere.

The server may be root while the sandbox is not: a file it writes is given to the
sandbox user, and an existing file it would overwrite must already belong to that user
and be a regular file (a hard link to someone else's file, a FIFO, a device: refused).
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from pathlib import Path

from runtime.beneath import parent_of
from runtime.files import FileTooLarge
from runtime.users import SandboxUser

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WRITE = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class LocalFiles:
    def __init__(self, workspace: Path, user: SandboxUser | None) -> None:
        self.workspace = workspace
        self.user = user if user is not None and user.switched else None

    async def read(self, path: str, limit: int) -> bytes:
        return await asyncio.to_thread(self._read, path, limit)

    async def write(self, path: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, path, data)

    def _read(self, path: str, limit: int) -> bytes:
        with parent_of(self.workspace, path) as (directory, name):
            descriptor = _open(name, _READ, directory, path)
        with os.fdopen(descriptor, "rb") as file:
            info = os.fstat(descriptor)
            _regular(info, path)
            if info.st_size > limit:
                raise FileTooLarge(f"the file is larger than {limit} bytes ({info.st_size})")
            data = file.read(limit + 1)
        if len(data) > limit:
            raise FileTooLarge(f"the file is larger than {limit} bytes")
        return data

    def _write(self, path: str, data: bytes) -> None:
        owner = (self.user.uid, self.user.gid) if self.user is not None else None
        with parent_of(self.workspace, path, create=True, owner=owner) as (directory, name):
            try:
                descriptor = _open(name, _WRITE | os.O_CREAT | os.O_EXCL, directory, path)
                created = True
            except FileExistsError:
                descriptor = _open(name, _WRITE, directory, path)
                created = False
        with os.fdopen(descriptor, "wb") as file:
            info = os.fstat(descriptor)
            _regular(info, path)
            if self.user is not None:
                if created:
                    os.fchown(descriptor, self.user.uid, self.user.gid)
                elif info.st_uid != self.user.uid:  # e.g. a hard link to someone else's file
                    raise PermissionError(
                        errno.EACCES, "the file does not belong to the sandbox user", path
                    )
            os.ftruncate(descriptor, 0)
            file.write(data)


def _open(name: str, flags: int, directory: int, path: str, mode: int = 0o600) -> int:
    try:
        return os.open(name, flags, mode, dir_fd=directory)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # swapped for a symlink since the walk looked
            raise OSError(errno.ELOOP, "the path changed while being opened", path) from None
        raise


def _regular(info: os.stat_result, path: str) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory", path)
    if not stat.S_ISREG(info.st_mode):
        raise OSError(errno.EINVAL, "not a regular file", path)
