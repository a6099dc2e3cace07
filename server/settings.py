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
    heartbeat_interval: float = 15.0
    """Seconds between keep-alives on idle streams (SSE comments, WebSocket pings)."""
    subscriber_buffer: int = 1024
    """Live events buffered per subscriber before it falls back to reading the log."""
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    """Origins allowed for browser clients on other hosts (Socket.IO and REST)."""
    log_level: str = "info"

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
        return cls(**values)

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
    "max_iterations": "default agent steps per run",
    "heartbeat_interval": "seconds between keep-alives on idle streams",
    "subscriber_buffer": "live events buffered per subscriber",
    "cors_origins": "comma-separated origins allowed for cross-site browsers",
    "log_level": "uvicorn log level",
}


def _parse(name: str, raw: str, annotation: Any) -> Any:
    kind = str(annotation)
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
