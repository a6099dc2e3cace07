"""``threadline export`` / ``threadline import`` against a running server."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from server.transfer import Progress
from tests.events.test_recorded import FIXTURES, fixture_documents
from tests.server.running import REPOSITORY, RunningServer
from tests.server.test_auth import make_key
from tests.server.test_trajectory import assert_equivalent


def threadline(
    server: RunningServer, *arguments: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *arguments, "--url", server.url],
        cwd=REPOSITORY,
        input=stdin,
        capture_output=True,
        timeout=60,
    )


def test_import_then_export_through_files(server: RunningServer, tmp_path: Path) -> None:
    path = next(p for p in FIXTURES if p.name == "openhands_0_48_condense.json")
    recorded = fixture_documents(path)
    imported = threadline(server, "import", str(path), "--title", "from the CLI")
    assert imported.returncode == 0, imported.stderr
    conversation_id = imported.stdout.decode().strip()
    assert f"imported {len(recorded)} events" in imported.stderr.decode()

    everything = tmp_path / "all.jsonl"
    exported = threadline(
        server, "export", conversation_id, "-o", str(everything), "--include-hidden"
    )
    assert exported.returncode == 0, exported.stderr
    assert_equivalent(
        recorded, [orjson.loads(line) for line in everything.read_bytes().splitlines()]
    )
    assert not list(tmp_path.glob("*.part"))

    shown = tmp_path / "shown.json"
    assert threadline(server, "export", conversation_id, "-o", str(shown)).returncode == 0
    trajectory = orjson.loads(shown.read_bytes())["trajectory"]
    assert len(trajectory) == len(recorded) - 2  # the two hidden events are left out

    again = threadline(server, "import", "-", stdin=everything.read_bytes())
    assert again.returncode == 0, again.stderr
    to_stdout = threadline(
        server, "export", again.stdout.decode().strip(), "--format", "jsonl", "--include-hidden"
    )
    copies = [orjson.loads(line) for line in to_stdout.stdout.splitlines()]
    assert [event["original_id"] for event in copies] == [event["id"] for event in recorded]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("export", "no-such-conversation"), "404: conversation 'no-such-conversation' not found"),
        (("import", "/no/such/file.json"), "cannot read /no/such/file.json"),
    ],
)
def test_failures_say_what_happened(
    server: RunningServer, arguments: tuple[str, ...], message: str
) -> None:
    result = threadline(server, *arguments)
    assert result.returncode == 1
    assert message in result.stderr.decode()


def test_a_bad_recording_names_the_event(server: RunningServer, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('[{"action": "null"}, {"args": {}}]')
    result = threadline(server, "import", str(broken))
    assert result.returncode == 1
    assert "(trajectory[1].action)" in result.stderr.decode()


def test_no_server_is_a_clear_error(tmp_path: Path) -> None:
    nobody = RunningServer(tmp_path / "none")
    result = threadline(nobody, "export", "x")
    assert result.returncode == 1
    assert "cannot reach" in result.stderr.decode()


def test_an_api_key_is_passed_on(fresh_server: RunningServer, tmp_path: Path) -> None:
    key = make_key(fresh_server, "alice")
    fresh_server.start()
    path = next(p for p in FIXTURES if p.name == "openhands_0_21_gui.json")
    refused = threadline(fresh_server, "import", str(path))
    assert refused.returncode == 1
    assert "401" in refused.stderr.decode()
    accepted = threadline(fresh_server, "import", str(path), "--api-key", key)
    assert accepted.returncode == 0, accepted.stderr


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_draws_on_a_terminal_only() -> None:
    terminal = Terminal()
    bar = Progress("exporting", 200, "events", terminal)
    bar.advance(50)
    assert "[#######" in terminal.getvalue()
    assert " 25% 50/200 events" in terminal.getvalue()
    bar.finish("exported 200 events")
    assert terminal.getvalue().endswith("\r\x1b[Kexported 200 events\n")
    piped = io.StringIO()
    quiet = Progress("exporting", 200, "events", piped)
    quiet.advance(200)
    quiet.finish("exported 200 events")
    assert piped.getvalue() == "exported 200 events\n"
