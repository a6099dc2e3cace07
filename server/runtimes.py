"""Which runtime a conversation gets, from the settings; and the sandbox policy the
server applies around it: who may use the local runtime, what a repository may be,
how the data directory is laid out, how a conversation's sandbox is destroyed."""

from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path

from runtime import CommandLimits, LocalRuntime, Runtime
from runtime.repository import clone_source
from runtime.users import UserPool, can_switch_users
from server.errors import BadRequest, Forbidden
from server.settings import Settings

LOCAL_WITH_KEYS = "THREADLINE_ALLOW_LOCAL_RUNTIME_WITH_KEYS"


def command_limits(settings: Settings) -> CommandLimits:
    return CommandLimits(
        timeout=settings.command_timeout,
        no_change_timeout=settings.no_change_timeout,
        output_limit=settings.output_limit,
        max_file_size=settings.max_file_size,
    )


def workspace_of(settings: Settings, conversation_id: str) -> Path:
    """A conversation's workspace directory: ``alice/report`` (a user's id space, see
    `server.auth.scoped_id`) becomes ``alice~report``; neither part may contain ``~``."""
    return settings.workspaces / conversation_id.replace("/", "~")


def repository_roots(settings: Settings) -> tuple[Path, ...]:
    return tuple(Path(root) for root in settings.repository_roots)


def user_pool(settings: Settings) -> UserPool | None:
    """Sandbox users of their own, when the server can switch to them (it is root)."""
    if not can_switch_users():
        return None
    return UserPool(settings.sandbox_users_dir, settings.sandbox_uid_base)


def make_runtime(settings: Settings, conversation_id: str) -> Runtime:
    workspace = workspace_of(settings, conversation_id)
    roots, users = repository_roots(settings), user_pool(settings)
    if settings.runtime == "docker":
        from runtime.docker import ContainerResources, DockerRuntime

        return DockerRuntime(
            workspace,
            image=settings.docker_image,
            limits=command_limits(settings),
            repository_roots=roots,
            users=users,
            resources=ContainerResources(
                memory=settings.docker_memory_mb * 1024 * 1024,
                pids=settings.docker_pids_limit,
                cpus=settings.docker_cpus,
            ),
        )
    return LocalRuntime(workspace, command_limits(settings), repository_roots=roots, users=users)


def clone_url(repository: str | None, git_provider: str | None) -> str | None:
    """What the runtime clones: an ``owner/repo`` shorthand becomes its provider's
    https URL; anything else is passed on (and validated again by the runtime)."""
    if repository is None:
        return None
    try:
        source = clone_source(repository, git_provider=git_provider, roots=())
    except ValueError:
        return repository  # a local path (checked against the roots at start) or refused
    return source.url if source.protocol == "https" else repository


async def destroy_sandbox(settings: Settings, conversation_id: str) -> None:
    """Everything of a conversation's sandbox: processes, container, workspace."""
    if runtime_missing(settings) is not None:
        # No container can have been made by this installation; the workspace goes.
        await LocalRuntime(
            workspace_of(settings, conversation_id), command_limits(settings)
        ).destroy()
        return
    await make_runtime(settings, conversation_id).destroy()


def local_runtime_refusal(settings: Settings, keys_required: bool) -> str | None:
    """Why a conversation may not start on this server, or None. With API keys on,
    users may be hostile to each other and to the operator; local commands share the
    host with them all, so the operator must accept that explicitly."""
    if settings.runtime != "local" or not keys_required:
        return None
    if settings.allow_local_runtime_with_keys:
        return None
    return (
        "API keys are on, so several users share this server, and its runtime is local: "
        "commands run on the server's own host. Use THREADLINE_RUNTIME=docker, or set "
        f"{LOCAL_WITH_KEYS}=1 to accept it."
    )


DOCKER_EXTRA = (
    "THREADLINE_RUNTIME=docker needs the docker extra, which is not installed: "
    "pip install 'threadline[docker]' (then `threadline sandbox build` makes the image)"
)


def runtime_missing(settings: Settings) -> str | None:
    """What this installation lacks for the configured runtime, or None."""
    if settings.runtime == "docker" and importlib.util.find_spec("aiodocker") is None:
        return DOCKER_EXTRA
    return None


async def runtime_problem(settings: Settings) -> str | None:
    """Why a sandbox could not start now, or None (for readiness)."""
    missing = runtime_missing(settings)
    if missing is not None:
        return missing
    if settings.runtime == "docker":
        from runtime.docker import image_problem

        return await image_problem(settings.docker_image)
    try:
        settings.workspaces.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot make the workspaces directory {settings.workspaces}: {exc.strerror}"
    if not os.access(settings.workspaces, os.W_OK | os.X_OK):
        return f"the workspaces directory {settings.workspaces} is not writable"
    return None


def check_new_conversation(
    settings: Settings, *, keys_required: bool, repository: str | None, git_provider: str | None
) -> None:
    """What only the server's settings can decide about a new conversation. Raises
    `Forbidden` (the local runtime refused) or `BadRequest` naming the field (or the
    runtime this installation lacks)."""
    missing = runtime_missing(settings)
    if missing is not None:
        raise BadRequest(missing, code="runtime_unavailable", field="runtime")
    refusal = local_runtime_refusal(settings, keys_required)
    if refusal is not None:
        raise Forbidden(refusal, code="local_runtime_refused")
    if repository is not None:
        try:
            clone_source(repository, git_provider=git_provider, roots=repository_roots(settings))
        except ValueError as exc:
            raise BadRequest(f"repository: {exc}", field="repository") from None


def prepare_data_dir(settings: Settings) -> list[str]:
    """Lay out the data directory for sandbox users (when the server is root): the
    event log unreadable to them (0700), the directories above each workspace
    searchable but not listable (0711). Returns warnings for the operator."""
    if not can_switch_users():
        return [
            "the server is not root, so it cannot switch users: local commands run as "
            f"uid {os.getuid()} with a scrubbed environment, and can read whatever that "
            "user can (other workspaces, the data directory)"
        ]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.storage_dir.mkdir(mode=0o700, exist_ok=True)
    settings.storage_dir.chmod(0o700)
    settings.workspaces.mkdir(mode=0o711, exist_ok=True)
    for directory in (settings.data_dir, settings.workspaces):
        directory.chmod(0o711)
    warnings = []
    for directory in settings.workspaces.resolve().parents:
        if not directory.stat().st_mode & stat.S_IXOTH:
            warnings.append(
                f"{directory} is not searchable by others: sandbox users cannot reach their "
                "workspaces below it, and local runs will fail (chmod o+x it, or choose "
                "another data directory)"
            )
            break
    return warnings
