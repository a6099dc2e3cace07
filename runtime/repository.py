"""Repositories and branches: what a conversation may name, and how a checkout is made.

The rule: git never runs on the host in a directory the sandbox has written. The host
only clones (fetches) into a brand-new directory the sandbox has never seen, with git's
own safety options and no checkout; the ``.git`` it made is handed to the sandbox user
and moved into the workspace. Everything after — checking out the branch, reusing an
existing checkout, the setup script — runs inside the sandbox as the sandbox user
(`checkout_command`), so a hook or a ``core.fsmonitor`` the sandbox planted can only
ever run there.

The validators are pure functions raising `ValueError`; the server calls them when a
conversation is created, the runtime again before it clones.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from runtime.errors import RuntimeFailure
from runtime.users import SandboxUser

GIT_TIMEOUT = 300.0
DEFAULT_SETUP_SCRIPT = ".openhands/setup.sh"
MAX_REPOSITORY_LENGTH = 2048
MAX_BRANCH_LENGTH = 255
ROOTS_SETTING = "THREADLINE_REPOSITORY_ROOTS"

PROVIDERS = {
    "github": "https://github.com/{}.git",
    "gitlab": "https://gitlab.com/{}.git",
    "bitbucket": "https://bitbucket.org/{}.git",
}
_SHORTHAND = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)+")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
_SCP = re.compile(r"(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/\s-][^\s]*)")
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


@dataclass(frozen=True, slots=True)
class Source:
    """A validated place to clone from: what git is given, and the one protocol
    it may use for it (``GIT_ALLOW_PROTOCOL``)."""

    url: str
    protocol: str


def check_git_provider(value: str) -> str:
    if value not in PROVIDERS:
        raise ValueError(f"must be one of {', '.join(sorted(PROVIDERS))}")
    return value


def check_repository(value: str, git_provider: str | None = None) -> str:
    """The form of a repository: an ``owner/repo`` shorthand (of ``git_provider``,
    GitHub by default), an https / http / ssh URL, ``user@host:path``, or an absolute
    local path or ``file://`` URL (allowed only under the operator's roots, see
    `clone_source`). Raises `ValueError` saying what is wrong."""
    _source(value, git_provider)
    return value


def check_branch(value: str) -> str:
    """git's rules for a branch name (``git check-ref-format --branch``), never an option."""
    if not value:
        raise ValueError("must not be empty")
    if len(value.encode()) > MAX_BRANCH_LENGTH:
        raise ValueError(f"must be at most {MAX_BRANCH_LENGTH} bytes")
    if value.startswith("-"):
        raise ValueError("must not start with '-'")
    if _REF_FORBIDDEN.search(value):
        raise ValueError("must not contain spaces, control characters or any of ~^:?*[\\")
    if ".." in value or "@{" in value or value == "@":
        raise ValueError("must not contain '..' or '@{', nor be '@'")
    if value.startswith("/") or value.endswith(("/", ".")) or "//" in value:
        raise ValueError("must not start or end with '/', contain '//' or end with '.'")
    for part in value.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            raise ValueError("no part may start with '.' or end with '.lock'")
    return value


def clone_source(
    repository: str, *, git_provider: str | None = None, roots: tuple[Path, ...] = ()
) -> Source:
    """Where to clone ``repository`` from. Local paths must lie (after resolving
    symlinks) under one of ``roots``. Raises `ValueError`."""
    source = _source(repository, git_provider)
    if source.protocol != "file":
        return source
    real = Path(os.path.realpath(source.url))
    if not any(real.is_relative_to(os.path.realpath(root)) for root in roots):
        raise ValueError(f"local repositories must be under a directory listed in {ROOTS_SETTING}")
    return Source(str(real), "file")


def _source(value: str, git_provider: str | None) -> Source:
    if git_provider is not None:
        check_git_provider(git_provider)
    if not value or len(value) > MAX_REPOSITORY_LENGTH:
        raise ValueError(f"must be 1 to {MAX_REPOSITORY_LENGTH} characters")
    if _UNSAFE.search(value) or value.startswith("-"):
        raise ValueError("must not contain spaces or control characters, nor start with '-'")
    if _SHORTHAND.fullmatch(value) and ".." not in value.split("/"):
        return Source(
            PROVIDERS[git_provider or "github"].format(value.removesuffix(".git")), "https"
        )
    if value.startswith("/"):
        return Source(_local_path(value), "file")
    if scp := _SCP.fullmatch(value):
        if not _HOST.fullmatch(scp["host"]):
            raise ValueError("has an invalid host")
        return Source(value, "ssh")
    parts = urlsplit(value)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError("file:// URLs name no host")
        return Source(_local_path(unquote(parts.path)), "file")
    if parts.scheme not in ("https", "http", "ssh"):
        raise ValueError(
            "must be owner/repo, an https, http or ssh URL, user@host:path, or a local path"
        )
    if not parts.hostname or not _HOST.fullmatch(parts.hostname) or parts.path in ("", "/"):
        raise ValueError("must name a host and a path")
    return Source(value, parts.scheme)


def _local_path(path: str) -> str:
    if not path.startswith("/") or "\x00" in path:
        raise ValueError("local repositories are given by absolute path")
    return os.path.normpath(path)


# -- the host side: a fresh clone, never a checkout -----------------------------------


def has_checkout(workspace: Path) -> bool:
    """Whether the workspace already holds a ``.git`` (of any kind: it is the sandbox's)."""
    return os.path.lexists(workspace / ".git")


async def clone_into(source: Source, workspace: Path, owner: SandboxUser | None) -> None:
    """Clone ``source`` without a checkout into a brand-new directory beside the
    workspace, give it to ``owner``, and move its ``.git`` into the workspace. Raises
    `RuntimeFailure` naming the step, with the tail of what git printed."""
    staging = Path(await asyncio.to_thread(_staging_directory, workspace.parent))
    try:
        arguments = ["clone", "--quiet", "--no-checkout", "--template="]
        if source.protocol == "file":
            arguments.append("--no-local")  # no hard links into the operator's repository
        await _host_git(staging, source.protocol, *arguments, "--", source.url, "clone")
        await asyncio.to_thread(_hand_over, staging / "clone" / ".git", workspace, owner)
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)


def _staging_directory(parent: Path) -> str:
    return tempfile.mkdtemp(prefix=".clone-", dir=parent)


def _hand_over(git_dir: Path, workspace: Path, owner: SandboxUser | None) -> None:
    """Owner first, while nobody else can see the tree; then one rename into place."""
    if owner is not None and owner.switched:
        for directory, subdirectories, names in os.walk(git_dir):
            for name in [*subdirectories, *names]:
                os.chown(os.path.join(directory, name), owner.uid, owner.gid, follow_symlinks=False)
        os.chown(git_dir, owner.uid, owner.gid, follow_symlinks=False)
    os.rename(git_dir, workspace / ".git")


async def _host_git(cwd: Path, protocol: str, *arguments: str) -> None:
    """git with no configuration but ours: no hooks, no templates, no system or global
    config, one allowed protocol, no prompts."""
    process = await asyncio.create_subprocess_exec(
        "git",
        "-c", "core.hooksPath=/dev/null",
        "-c", "core.fsmonitor=false",
        "-c", "protocol.allow=never",
        "-c", f"protocol.{protocol}.allow=always",
        "-c", "submodule.recurse=false",
        *arguments,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(cwd),
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_ALLOW_PROTOCOL": protocol,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
        },
    )  # fmt: skip
    try:
        async with asyncio.timeout(GIT_TIMEOUT):
            output, _ = await process.communicate()
    except BaseException:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        tail = output.decode(errors="replace").strip()[-500:]
        raise RuntimeFailure(f"git {arguments[0]} failed (exit {process.returncode}): {tail}")


# -- the sandbox side -----------------------------------------------------------------


def checkout_command(branch: str | None) -> str:
    """The shell command, run in the workspace as the sandbox user, that checks out
    ``branch`` (or, without one, whatever HEAD names)."""
    if branch is None:
        return "git checkout --quiet"
    return f"git checkout --quiet {shlex.quote(check_branch(branch))} --"
