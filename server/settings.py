"""Server configuration: one `Settings` object, built by the CLI (flags over
``THREADLINE_*`` environment variables over defaults) and passed down. No import-time
state."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "THREADLINE_"


@dataclass(frozen=True, kw_only=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 3000
    data_dir: Path = Path("data")
    """SQLite files and conversation workspaces live here."""
    agent: str = "demo"
    """The agent a conversation runs when its creator names none."""
    command_timeout: float = 120.0
    """Seconds a command may run before its process group is killed."""
    output_limit: int = 30_000
    """Characters of command output kept per command."""
    demo_pace: float = 0.3
    """Seconds the demo agent pauses between steps, so people can watch it work."""
    max_iterations: int = 100
    """Default agent steps per run when the creator sets no limit."""
    max_running: int = 20
    """Conversations running at once, all users together."""
    max_running_per_user: int | None = None
    """Conversations one user may run at once (none: only the global cap)."""
    at_cap: str = "queue"
    """What a new run meets at a cap: queue (by priority), evict_oldest, or reject (429)."""
    idle_close_delay: float | None = 900.0
    """Seconds a run may wait for a person before it is stopped (none: never)."""
    hard_timeout: float | None = None
    """Seconds one run of a conversation may take in all (none: no limit)."""
    no_change_timeout: float | None = 30.0
    """Seconds without new output after which a command returns what it has printed."""
    sandbox_start_timeout: float = 120.0
    """Seconds a sandbox may take to start."""
    runtime: str = "local"
    """Where actions run: local (processes in a workspace) or docker (a container each)."""
    docker_image: str = "threadline-sandbox:latest"
    """The image Docker sandboxes start from."""
    llm_base_url: str | None = None
    """OpenAI-compatible endpoint for the llm agent, e.g. http://127.0.0.1:8000/v1."""
    llm_model: str = "gpt-4o-mini"
    llm_api_key: str = ""
    llm_input_cost: float = 0.0
    """Currency per million prompt tokens (feeds the budget flag)."""
    llm_output_cost: float = 0.0
    """Currency per million completion tokens."""
    heartbeat_interval: float = 15.0
    """Seconds between keep-alives on idle streams (SSE comments, WebSocket pings)."""
    subscriber_buffer: int = 1024
    """Live events buffered per subscriber before it falls back to reading the log."""
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    """Origins allowed for browser clients on other hosts (Socket.IO and REST)."""
    log_level: str = "info"
    max_body_bytes: int = 1024 * 1024
    """Bytes a request body may have (JSON requests; refused with 413 as it streams in)."""
    max_import_body_bytes: int = 32 * 1024 * 1024
    """Bytes the body of ``POST /api/conversations`` may have: it can carry ``replay_json``."""
    header_timeout: float = 10.0
    """Seconds a connection may take to send a request's headers before it is closed."""
    rate_limit: float | None = 50.0
    """REST requests per second per API key (per client address without one); none: off."""
    rate_limit_burst: int = 200
    """REST requests a key may make at once before `rate_limit` paces it."""

    @property
    def workspaces(self) -> Path:
        return self.data_dir / "workspaces"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "log"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``THREADLINE_<FIELD>`` variables, then ``overrides`` (flags);
        an override of None means "not given". Raises `ValueError` naming the variable."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in dataclasses.fields(cls):
            name = ENV_PREFIX + item.name.upper()
            if name in environ:
                values[item.name] = _parse(name, environ[name], item.type)
        values.update({key: value for key, value in overrides.items() if value is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raises `ValueError` naming the setting that makes no sense."""
        if self.at_cap not in ("queue", "evict_oldest", "reject"):
            raise ValueError(f"at_cap must be queue, evict_oldest or reject, not {self.at_cap!r}")
        if self.runtime not in ("local", "docker"):
            raise ValueError(f"runtime must be local or docker, not {self.runtime!r}")
        if self.max_running < 1 or (self.max_running_per_user or 1) < 1:
            raise ValueError("max_running and max_running_per_user must be at least 1")
        if self.max_body_bytes < 1024 or self.max_import_body_bytes < self.max_body_bytes:
            raise ValueError(
                "max_body_bytes must be at least 1024 and max_import_body_bytes at least as large"
            )
        if self.header_timeout <= 0:
            raise ValueError("header_timeout must be more than 0 seconds")
        if (self.rate_limit is not None and self.rate_limit <= 0) or self.rate_limit_burst < 1:
            raise ValueError("rate_limit must be more than 0 (or none), rate_limit_burst 1 or more")

    @classmethod
    def documented(cls) -> list[tuple[str, str, str]]:
        """(variable, default, description) for every setting, for ``--help`` and docs."""
        rows = []
        for item in dataclasses.fields(cls):
            default = item.default if item.default is not dataclasses.MISSING else ()
            rows.append(
                (ENV_PREFIX + item.name.upper(), str(default), _DESCRIPTIONS.get(item.name, ""))
            )
        return rows


_DESCRIPTIONS = {
    "host": "interface to listen on",
    "port": "TCP port to listen on",
    "data_dir": "directory for the event log and workspaces",
    "agent": "default agent for new conversations",
    "command_timeout": "seconds before a command's process group is killed",
    "output_limit": "characters of command output kept",
    "demo_pace": "seconds the demo agent pauses between steps",
    "max_iterations": "default iteration limit of a conversation",
    "max_running": "conversations running at once, all users together",
    "max_running_per_user": "conversations one user may run at once",
    "at_cap": "at a cap: queue, evict_oldest or reject",
    "idle_close_delay": "seconds a run may wait for a person before it is stopped",
    "hard_timeout": "seconds one run may take in all",
    "no_change_timeout": "seconds without output before a command returns what it has",
    "sandbox_start_timeout": "seconds a sandbox may take to start",
    "runtime": "where actions run: local or docker",
    "docker_image": "image of docker sandboxes",
    "llm_base_url": "OpenAI-compatible endpoint for the llm agent",
    "llm_model": "model name for the llm agent",
    "llm_api_key": "API key for the llm endpoint",
    "llm_input_cost": "currency per million prompt tokens",
    "llm_output_cost": "currency per million completion tokens",
    "heartbeat_interval": "seconds between keep-alives on idle streams",
    "subscriber_buffer": "live events buffered per subscriber",
    "cors_origins": "comma-separated origins allowed for cross-site browsers",
    "log_level": "uvicorn log level",
    "max_body_bytes": "bytes a request body may have (413 beyond)",
    "max_import_body_bytes": "bytes a conversation-creating body (replay_json) may have",
    "header_timeout": "seconds a connection may take to send its request headers",
    "rate_limit": "REST requests per second per API key or client address",
    "rate_limit_burst": "REST requests a key may make at once",
}


def _parse(name: str, raw: str, annotation: Any) -> Any:
    kind = str(annotation)
    if kind.endswith(" | None"):
        if raw.strip().lower() in ("", "none"):
            return None
        kind = kind.removesuffix(" | None")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {kind}") from None
    return raw
