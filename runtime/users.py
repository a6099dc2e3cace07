"""Sandbox users: each workspace's commands run as an unprivileged uid of their own.

When the server runs as root, a workspace claims a uid (and a gid of the same number)
from a range: ``base + sha256(workspace path) mod count``, probing on from there. A
claim is a file named after the uid, holding the workspace's path, in a directory that
must be one per machine (uids are a machine-wide resource: two servers sharing a uid
would let one conversation reach the other's files and processes). A claim whose
workspace no longer exists is free again. No ``/etc/passwd`` entry is needed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import RuntimeFailure

DEFAULT_DIRECTORY = Path("/var/lib/threadline/sandbox-users")
DEFAULT_BASE = 1_000_000
DEFAULT_COUNT = 1_000_000
MAX_PROBES = 10_000


@dataclass(frozen=True, slots=True)
class SandboxUser:
    uid: int
    gid: int

    @property
    def switched(self) -> bool:
        """True when commands run as this user rather than as the server's own."""
        return self.uid != os.geteuid()

    @classmethod
    def current(cls) -> SandboxUser:
        return cls(os.getuid(), os.getgid())


def can_switch_users() -> bool:
    return os.geteuid() == 0


class UserPool:
    """Claims and releases sandbox uids. Only meaningful when the server is root."""

    def __init__(
        self, directory: Path, base: int = DEFAULT_BASE, count: int = DEFAULT_COUNT
    ) -> None:
        if base < 1000 or count < 1:
            raise ValueError("sandbox uids start at 1000 or above, and there is at least one")
        self.directory = directory
        self.base = base
        self.count = count

    @classmethod
    def default(cls) -> UserPool:
        return cls(DEFAULT_DIRECTORY)

    def claim(self, workspace: Path) -> SandboxUser:
        """The uid of ``workspace`` (which must exist): the same one every time while
        the workspace exists. Raises `RuntimeFailure` when every uid is taken."""
        return self.claim_noting_fresh(workspace)[0]

    def claim_noting_fresh(self, workspace: Path) -> tuple[SandboxUser, bool]:
        """`claim`, and whether the uid was unclaimed until now. A claim is written
        before anything runs as its uid and removed only once every process of the uid
        is killed (`Sandbox.destroy`), so nothing can run as an unclaimed one: a crashed
        server's leftovers need killing only under a uid claimed before."""
        key = str(workspace.absolute())
        current = workspace.lstat().st_uid  # the workspace is owned by its user: the record
        with self._locked() as directory:
            if self.owns(current) and _read_claim(directory, current) == key:
                return SandboxUser(current, current), False
            for uid in self._probes(key):
                owner = _read_claim(directory, uid)
                if owner is None or owner == key or not os.path.lexists(owner):
                    if owner != key:
                        _write_claim(directory, uid, key)
                    return SandboxUser(uid, uid), owner is None
        raise RuntimeFailure(
            f"no sandbox user is free in {self.base}..{self.base + self.count - 1}"
        )

    def release(self, workspace: Path, uid: int) -> None:
        """Give up ``uid`` if ``workspace`` holds it (after the workspace is gone)."""
        with self._locked() as directory:
            if _read_claim(directory, uid) == str(workspace.absolute()):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(str(uid), dir_fd=directory)

    def owns(self, uid: int) -> bool:
        """Whether ``uid`` is one of this pool's (and so nobody else's)."""
        return self.base <= uid < self.base + self.count

    def _probes(self, key: str) -> Iterator[int]:
        start = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
        for probe in range(min(self.count, MAX_PROBES)):
            yield self.base + (start + probe) % self.count

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        """The claims directory, open and exclusively locked (across processes)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            fcntl.flock(directory, fcntl.LOCK_EX)
            yield directory
        finally:
            os.close(directory)


def _read_claim(directory: int, uid: int) -> str | None:
    try:
        descriptor = os.open(str(uid), os.O_RDONLY | os.O_NOFOLLOW, dir_fd=directory)
    except FileNotFoundError:
        return None
    with os.fdopen(descriptor, "rb") as claim:
        return claim.read(8192).decode(errors="replace")


def _write_claim(directory: int, uid: int, key: str) -> None:
    temporary = f".{uid}.new"
    descriptor = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600, dir_fd=directory
    )
    with os.fdopen(descriptor, "wb") as claim:
        claim.write(key.encode())
    os.replace(temporary, str(uid), src_dir_fd=directory, dst_dir_fd=directory)
