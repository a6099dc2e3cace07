"""Workspaces a sandbox user can walk down to (see tests/conftest.py)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def reachable(path: Path) -> Path:
    """Let other users traverse (not list) ``path`` and the directories above it that
    lie in the temporary directory. Returns ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    top = Path(tempfile.gettempdir()).resolve()
    for directory in [path.resolve(), *path.resolve().parents]:
        if directory == top or not directory.is_relative_to(top):
            break
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(directory, stat.S_IMODE(mode) | 0o011)
    return path
