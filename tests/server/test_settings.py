"""Settings: defaults, THREADLINE_* variables, flags over both."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.settings import Settings


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port, settings.agent) == ("127.0.0.1", 3000, "demo")
    assert settings.storage_dir == Path("data") / "log"


def test_environment_then_flags() -> None:
    environment = {
        "THREADLINE_PORT": "8080",
        "THREADLINE_DATA_DIR": "/srv/threadline",
        "THREADLINE_COMMAND_TIMEOUT": "2.5",
        "THREADLINE_CORS_ORIGINS": "http://a.example, http://b.example",
    }
    settings = Settings.from_env(environment, port=9000, host=None)
    assert settings.port == 9000
    assert settings.host == "127.0.0.1"
    assert settings.data_dir == Path("/srv/threadline")
    assert settings.command_timeout == 2.5
    assert settings.cors_origins == ("http://a.example", "http://b.example")


def test_a_bad_variable_is_named() -> None:
    with pytest.raises(ValueError, match="THREADLINE_PORT"):
        Settings.from_env({"THREADLINE_PORT": "eighty"})


def test_every_setting_is_documented() -> None:
    rows = Settings.documented()
    assert all(description for _, _, description in rows)
    assert "THREADLINE_HEARTBEAT_INTERVAL" in {name for name, _, _ in rows}


def test_the_readme_documents_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [name for name, _, _ in Settings.documented() if f"`{name}`" not in readme]
    assert missing == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("THREADLINE_AT_CAP", "panic"),
        ("THREADLINE_RUNTIME", "vm"),
        ("THREADLINE_MAX_RUNNING", "0"),
        ("THREADLINE_MAX_BODY_BYTES", "10"),
        ("THREADLINE_IMPORT_MAX_BYTES", "2048"),
        ("THREADLINE_HEADER_TIMEOUT", "0"),
        ("THREADLINE_RATE_LIMIT", "0"),
        ("THREADLINE_RATE_LIMIT_BURST", "0"),
        ("THREADLINE_REDIS", "localhost:6379"),
        ("THREADLINE_REDIS", "http://127.0.0.1:6379"),
        ("THREADLINE_REDIS", "redis://127.0.0.1:6379/zero"),
        ("THREADLINE_REDIS", "redis://:pw@127.0.0.1:99999"),
    ],
)
def test_nonsense_settings_are_refused(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=variable.removeprefix("THREADLINE_").lower()):
        Settings.from_env({variable: value})


def test_redis_urls() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://:pw@cache.internal", "unix:///run/r.sock"):
        assert Settings.from_env({"THREADLINE_REDIS": url}).redis == url
    assert Settings.from_env({"THREADLINE_REDIS": ""}).redis is None
    # Redis without PostgreSQL (processes each on SQLite) is allowed: it shares the limits.
    assert Settings.from_env({"THREADLINE_REDIS": "redis://h"}).database is None
