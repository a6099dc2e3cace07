"""Workspaces a sandbox user can walk down to (see tests/conftest.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def reachable(path: Path) -> Path:
    """Let other users traverse (not list) ``path`` and the directories above it, up to
    the first one that already allows it. Returns ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if mode & stat.S_IXOTH:
            break
        os.chmod(directory, stat.S_IMODE(mode) | 0o011)
    return path
