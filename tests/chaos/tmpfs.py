"""A small tmpfs for a data directory, so the disk can fill on purpose: mounted at the
start, grown with ``mount -o remount,size=...`` to give space back, and always
unmounted at the end (lazily if something still holds it)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path


class TmpfsUnavailable(RuntimeError):
    pass


class Tmpfs:
    def __init__(self, path: Path) -> None:
        self.path = path

    def resize(self, megabytes: int) -> None:
        _mount("-o", f"remount,size={megabytes}m", "tmpfs", str(self.path))

    def fill(self, leave_bytes: int = 0) -> int:
        """Take every free byte but ``leave_bytes`` with a filler file; returns its size."""
        free = shutil.disk_usage(self.path).free
        size = max(0, free - leave_bytes)
        filler = self.path / "filler"
        with filler.open("wb") as file, contextlib.suppress(OSError):
            chunk = b"\0" * (1 << 20)
            written = 0
            while written < size:
                written += file.write(chunk[: min(len(chunk), size - written)])
        return filler.stat().st_size

    def empty(self) -> None:
        """Remove the filler."""
        (self.path / "filler").unlink(missing_ok=True)

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.path).free


def _mount(*arguments: str) -> None:
    done = subprocess.run(["mount", *arguments], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise TmpfsUnavailable(f"mount {' '.join(arguments)}: {done.stderr.strip()}")


@contextlib.contextmanager
def tmpfs(path: Path, megabytes: int) -> Iterator[Tmpfs]:
    """Mount a ``megabytes`` MiB tmpfs at ``path`` (root only: `TmpfsUnavailable`)."""
    if os.geteuid() != 0:
        raise TmpfsUnavailable("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path))
    try:
        yield Tmpfs(path)
    finally:
        done = subprocess.run(["umount", str(path)], capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
