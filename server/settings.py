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
from urllib.parse import urlsplit, urlunsplit

ENV_PREFIX = "THREADLINE_"


@dataclass(frozen=True, kw_only=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 3000
    data_dir: Path = Path("data")
    """SQLite files and conversation workspaces live here."""
    database: str | None = None
    """Where the log and the stores live: a ``postgresql://`` URL, or none for SQLite in
    the data directory."""
    workers: int = 1
    """Server processes on one listening socket (more than 1 needs ``database``)."""
    cluster_lease: float = 10.0
    """Seconds a server process sharing a database holds its runs without renewing: the
    time another process waits before it takes a dead one's runs over."""
    redis: str | None = None
    """A ``redis://`` URL shared by every server process: there the REST rate limits are
    counted for all of them together (none: each process counts its own)."""
    agent: str = "demo"
    """The agent a conversation runs when its creator names none."""
    command_timeout: float = 120.0
    """Seconds a command may run before its process group is killed."""
    output_limit: int = 30_000
    """Bytes of command output (and of a file in an observation) kept per action."""
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
    max_queued: int = 1000
    """Conversations (and tasks) that may wait in the queue; beyond: 503 + Retry-After."""
    hard_timeout: float | None = None
    """Seconds one run of a conversation may take in all (none: no limit)."""
    no_change_timeout: float | None = 30.0
    """Seconds without new output after which a command returns what it has printed."""
    sandbox_start_timeout: float = 120.0
    """Seconds a sandbox may take to start."""
    runtime: str = "local"
    """Where actions run: local (processes in a workspace) or docker (a container each)."""
    docker_image: str = "threadline-sandbox:latest"
    """The image Docker sandboxes start from (``threadline sandbox build`` makes it)."""
    docker_memory_mb: int = 2048
    """MiB of memory (swap included) one Docker sandbox may use."""
    docker_pids_limit: int = 512
    """Processes one Docker sandbox may run at once."""
    docker_cpus: float = 1.0
    """CPUs' worth of time one Docker sandbox may use."""
    max_file_size: int = 5 * 1024 * 1024
    """Bytes of the largest file a file action reads or writes."""
    repository_roots: tuple[str, ...] = field(default_factory=tuple)
    """Directories under which local repositories (paths, file:// URLs) may be cloned."""
    sandbox_uid_base: int = 1_000_000
    """First uid of the local sandbox users (when the server runs as root)."""
    sandbox_users_dir: Path = Path("/var/lib/threadline/sandbox-users")
    """Where sandbox uids are claimed; one per machine."""
    allow_local_runtime_with_keys: bool = False
    """Accept the local runtime while API keys (several users) are on."""
    llm_base_url: str | None = None
    """OpenAI-compatible endpoint for the llm agent, e.g. http://127.0.0.1:8000/v1."""
    llm_model: str = "gpt-4o-mini"
    llm_api_key: str = ""
    llm_input_cost: float = 0.0
    """Currency per million prompt tokens (feeds the budget flag)."""
    llm_output_cost: float = 0.0
    """Currency per million completion tokens."""
    llm_currency: str = "USD"
    """The currency of the LLM prices, budgets and costs (shown beside every amount)."""
    heartbeat_interval: float = 15.0
    """Seconds between keep-alives on idle streams (SSE comments, WebSocket pings)."""
    subscriber_buffer: int = 1024
    """Live events buffered per subscriber before it falls back to reading the log."""
    stream_buffer_bytes: int = 1 << 20
    """Bytes buffered per stream (live events, and Socket.IO's send queue) before a
    subscriber that falls behind reads from the log again."""
    max_message_bytes: int = 1 << 20
    """Largest message a stream client may send (WebSocket, Socket.IO)."""
    max_streams: int = 10_000
    """Streams open at once, all users together."""
    max_streams_per_user: int = 100
    """Streams one API key's user may hold open at once."""
    import_max_bytes: int = 64 * 1024 * 1024
    """The largest recording an import accepts: the body of ``POST
    /api/conversations/import``, and of ``POST /api/conversations`` (``replay_json``)."""
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    """Origins allowed for browser clients on other hosts (Socket.IO and REST)."""
    allowed_hosts: tuple[str, ...] = field(default_factory=tuple)
    """Host names the server answers to besides IP addresses and localhost (DNS rebinding)."""
    log_level: str = "info"
    """uvicorn's and threadline's log level: critical, error, warning, info or debug."""
    log_format: str = "text"
    """text (one line per record) or json (one JSON object per line, with conversation ids)."""
    max_body_bytes: int = 1024 * 1024
    """Bytes a request body may have (JSON requests; refused with 413 as it streams in)."""
    header_timeout: float = 10.0
    """Seconds a connection may take to send a request's headers before it is closed."""
    rate_limit: float | None = 50.0
    """REST requests per second per API key (per client address without one); none: off."""
    rate_limit_burst: int = 200
    """REST requests a key may make at once before `rate_limit` paces it."""
    webhook_allow_hosts: tuple[str, ...] = field(default_factory=tuple)
    """Webhook hosts allowed despite a private, loopback or link-local address: names,
    addresses or CIDR blocks (everything else must resolve to global addresses)."""
    webhook_timeout: float = 10.0
    """Seconds one webhook attempt may take."""
    webhook_max_attempts: int = 6
    """Attempts to deliver one event before it is given up (recorded as failed)."""
    webhook_retry_base: float = 1.0
    """Seconds before the first retry; each next one waits twice as long."""
    webhook_concurrency: int = 32
    """Webhook attempts in flight at once, all webhooks together."""
    schedule_min_interval: float = 60.0
    """Fewest seconds between two runs of a schedule (its cron may not fire faster)."""

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
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.workers > 1 and not self.database:
            raise ValueError(
                "workers above 1 need database (PostgreSQL): a SQLite file has one process"
            )
        if self.cluster_lease < 0.5:
            raise ValueError("cluster_lease must be at least 0.5 seconds")
        if self.max_queued < 0:
            raise ValueError("max_queued must be 0 or more")
        if self.max_running < 1 or (self.max_running_per_user or 1) < 1:
            raise ValueError("max_running and max_running_per_user must be at least 1")
        if self.sandbox_uid_base < 1000:
            raise ValueError("sandbox_uid_base must be 1000 or more")
        if min(self.docker_memory_mb, self.docker_pids_limit, self.max_file_size) < 1:
            raise ValueError(
                "docker_memory_mb, docker_pids_limit and max_file_size must be positive"
            )
        if self.docker_cpus <= 0:
            raise ValueError("docker_cpus must be positive")
        if self.max_body_bytes < 1024 or self.import_max_bytes < self.max_body_bytes:
            raise ValueError(
                "max_body_bytes must be at least 1024 and import_max_bytes at least as large"
            )
        if self.log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise ValueError(
                f"log_level must be critical, error, warning, info or debug, not {self.log_level!r}"
            )
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log_format must be text or json, not {self.log_format!r}")
        if not (self.llm_currency.isalpha() and 1 <= len(self.llm_currency) <= 8):
            raise ValueError(f"llm_currency must be a currency code, not {self.llm_currency!r}")
        if self.header_timeout <= 0:
            raise ValueError("header_timeout must be more than 0 seconds")
        if (
            min(self.webhook_max_attempts, self.webhook_concurrency) < 1
            or min(self.webhook_timeout, self.webhook_retry_base) <= 0
        ):
            raise ValueError(
                "webhook_max_attempts and webhook_concurrency must be at least 1, "
                "webhook_timeout and webhook_retry_base more than 0"
            )
        if (self.rate_limit is not None and self.rate_limit <= 0) or self.rate_limit_burst < 1:
            raise ValueError("rate_limit must be more than 0 (or none), rate_limit_burst 1 or more")
        if self.redis is not None:
            _check_redis_url(self.redis)

    @classmethod
    def documented(cls) -> list[tuple[str, str, str]]:
        """(variable, default, description) for every setting, for ``--help`` and docs;
        defaults as one would write them in the variable (``(none)`` for none)."""
        return [
            (ENV_PREFIX + item.name.upper(), _shown(item), _DESCRIPTIONS.get(item.name, ""))
            for item in dataclasses.fields(cls)
        ]

    @classmethod
    def parse(cls, name: str, raw: str) -> Any:
        """The value of setting ``name`` written as ``raw`` (as in its variable). Raises
        `ValueError` naming the setting."""
        item = next(item for item in dataclasses.fields(cls) if item.name == name)
        return _parse(ENV_PREFIX + name.upper(), raw, item.type)


def _shown(item: dataclasses.Field[Any]) -> str:
    default = item.default
    if default is dataclasses.MISSING or default is None or default == ():
        return "(none)"
    if isinstance(default, bool):
        return "1" if default else "0"
    return str(default)


_DESCRIPTIONS = {
    "host": "interface to listen on",
    "port": "TCP port to listen on",
    "data_dir": "directory for the event log and workspaces",
    "database": "postgresql://user:password@host/database (none: SQLite in the data directory)",
    "workers": "server processes sharing the port (above 1 needs --database)",
    "cluster_lease": "seconds before a dead server process's runs are taken over (PostgreSQL)",
    "redis": "redis://[:password@]host:port/db where every server process counts rate limits "
    "together (none: each its own)",
    "agent": "default agent for new conversations",
    "command_timeout": "seconds before a command's process group is killed",
    "output_limit": "bytes of command output (or of a file) an observation keeps",
    "demo_pace": "seconds the demo agent pauses between steps",
    "max_iterations": "default iteration limit of a conversation",
    "max_running": "conversations running at once, all users together",
    "max_running_per_user": "conversations one user may run at once",
    "at_cap": "at a cap: queue, evict_oldest or reject",
    "idle_close_delay": "seconds a run may wait for a person before it is stopped",
    "max_queued": "conversations that may wait in the queue (503 beyond)",
    "hard_timeout": "seconds one run may take in all",
    "no_change_timeout": "seconds without output before a command returns what it has",
    "sandbox_start_timeout": "seconds a sandbox may take to start",
    "runtime": "where actions run: local or docker",
    "docker_image": "image of docker sandboxes",
    "docker_memory_mb": "MiB of memory a docker sandbox may use",
    "docker_pids_limit": "processes a docker sandbox may run",
    "docker_cpus": "CPUs a docker sandbox may use",
    "max_file_size": "bytes of the largest file a file action handles",
    "repository_roots": "comma-separated directories local repositories may come from",
    "sandbox_uid_base": "first uid of local sandbox users (server as root)",
    "sandbox_users_dir": "where sandbox uids are claimed (one per machine)",
    "allow_local_runtime_with_keys": "1 to accept the local runtime with API keys on",
    "llm_base_url": "OpenAI-compatible endpoint for the llm agent",
    "llm_model": "model name for the llm agent",
    "llm_api_key": "API key for the llm endpoint",
    "llm_input_cost": "currency per million prompt tokens",
    "llm_output_cost": "currency per million completion tokens",
    "llm_currency": "currency of LLM prices, budgets and costs (an ISO 4217 code)",
    "heartbeat_interval": "seconds between keep-alives on idle streams",
    "subscriber_buffer": "live events buffered per subscriber",
    "stream_buffer_bytes": "bytes buffered per stream before it reads from the log again",
    "max_message_bytes": "largest message a stream client may send",
    "max_streams": "streams open at once, all users together",
    "max_streams_per_user": "streams one user (API key holder) may hold open",
    "import_max_bytes": "largest recording an import accepts, in bytes",
    "cors_origins": "comma-separated origins allowed for cross-site browsers",
    "allowed_hosts": "comma-separated host names the server answers to (*.example.com, *)",
    "log_level": "log level: critical, error, warning, info or debug",
    "log_format": "text, or json: one JSON object per line with conversation ids",
    "max_body_bytes": "bytes a request body may have (413 beyond)",
    "header_timeout": "seconds a connection may take to send its request headers",
    "rate_limit": "REST requests per second per API key or client address",
    "rate_limit_burst": "REST requests a key may make at once",
    "webhook_allow_hosts": "comma-separated webhook hosts / addresses / CIDRs allowed "
    "despite private or loopback addresses",
    "webhook_timeout": "seconds one webhook attempt may take",
    "webhook_max_attempts": "attempts to deliver one event to a webhook",
    "webhook_retry_base": "seconds before a webhook's first retry (doubling after)",
    "webhook_concurrency": "webhook attempts in flight at once",
    "schedule_min_interval": "fewest seconds between two runs of one schedule",
}


def _check_redis_url(url: str) -> None:
    """Raises `ValueError` unless ``url`` is redis://host[:port][/db], rediss://... (TLS)
    or unix:///path/to/socket."""
    parts = urlsplit(url)
    try:
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError:
        valid = False
    else:
        if parts.scheme in ("redis", "rediss"):
            database = parts.path.removeprefix("/")
            valid = bool(parts.hostname) and (database == "" or database.isdigit())
        else:
            valid = parts.scheme == "unix" and parts.path.startswith("/")
    if not valid:
        raise ValueError(
            "redis must be a URL like redis://127.0.0.1:6379/0 "
            f"(or rediss://..., unix:///path/to/socket), not {redacted(url)!r}"
        )


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***@" if parts.username else ":***@"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=user + host))


def _boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)


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
        if kind == "bool":
            return _boolean(raw)
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {kind}") from None
    return raw
