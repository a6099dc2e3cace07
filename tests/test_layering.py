"""Dependencies point one way: server -> {storage, runtime} -> events; the client library
(client/) stands beside them on events/ alone, and only the server's command line (people
driving a server, maybe a remote one) uses it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"events", "storage", "runtime", "server", "client"}
ALLOWED = {
    "events": set(),
    "storage": {"events"},
    "runtime": {"events"},
    "server": {"events", "storage", "runtime"},
    "client": {"events"},
}
CLIENT_USERS = {"server/cli.py", "server/commands.py", "server/transfer.py"}
"""The modules of ``server`` that may import ``client``: the command line."""


def _imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    offenders = {
        name: sorted(imported - allowed)
        for path in (ROOT / package).rglob("*.py")
        if (name := str(path.relative_to(ROOT)))
        and (
            allowed := ALLOWED[package]
            | {package}
            | ({"client"} if name in CLIENT_USERS else set())
        )
        and (imported := _imported_packages(path)) - allowed
    }
    assert offenders == {}
