"""Which runtime a conversation gets, from the settings."""

from __future__ import annotations

from pathlib import Path

from runtime import CommandLimits, LocalRuntime, Runtime
from server.settings import Settings


def command_limits(settings: Settings) -> CommandLimits:
    return CommandLimits(
        timeout=settings.command_timeout,
        no_change_timeout=settings.no_change_timeout,
        output_limit=settings.output_limit,
    )


def workspace_of(settings: Settings, conversation_id: str) -> Path:
    """A conversation's workspace directory: ``alice/report`` (a user's id space, see
    `server.auth.scoped_id`) becomes ``alice~report``; neither part may contain ``~``."""
    return settings.workspaces / conversation_id.replace("/", "~")


def make_runtime(settings: Settings, conversation_id: str) -> Runtime:
    workspace = workspace_of(settings, conversation_id)
    if settings.runtime == "docker":
        from runtime.docker import DockerRuntime

        return DockerRuntime(
            workspace, image=settings.docker_image, limits=command_limits(settings)
        )
    return LocalRuntime(workspace, command_limits(settings))
