"""Session-wide test setup.

Sandboxed commands run as unprivileged users of their own when the tests run as root
(they do in CI), and such a user must be able to walk down to its workspace. pytest
makes every temporary directory (and its shared ``pytest-of-<user>`` root, which any
other session on the machine tightens again) reachable by its owner only, so this
session's temporary directories live in a base of its own, and `tests.reachable.reachable` opens the
directories above a workspace for traversal (``o+x``, never listing).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if config.option.basetemp is None:
        config.option.basetemp = tempfile.mkdtemp(prefix="threadline-tests-")
        config.stash[_OWN_BASETEMP] = Path(config.option.basetemp)


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(_OWN_BASETEMP, None)
    if own is not None:
        shutil.rmtree(own, ignore_errors=True)


_OWN_BASETEMP = pytest.StashKey[Path]()
