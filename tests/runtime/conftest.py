"""Fixtures shared by the runtime suites."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def git(cwd: Path, *arguments: str) -> None:
    subprocess.run(["git", *arguments], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def bare_repository(tmp_path: Path) -> Path:
    """A local bare repository (no network): main, and a feature branch whose
    .openhands/setup.sh leaves a marker file."""
    source = tmp_path / "source"
    source.mkdir()
    git(source, "init", "--quiet", "--initial-branch=main")
    git(source, "config", "user.email", "test@example.invalid")
    git(source, "config", "user.name", "test")
    (source / "README.md").write_text("hello\n")
    git(source, "add", ".")
    git(source, "commit", "--quiet", "-m", "first")
    git(source, "checkout", "--quiet", "-b", "feature")
    (source / ".openhands").mkdir()
    (source / ".openhands" / "setup.sh").write_text("echo 'setup ran' > setup-ran.txt\n")
    git(source, "add", ".")
    git(source, "commit", "--quiet", "-m", "setup script")
    git(source, "checkout", "--quiet", "main")
    bare = tmp_path / "repository.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(source), str(bare))
    return bare
