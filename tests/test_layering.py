"""Dependencies point one way: server -> {storage, runtime} -> events."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"events", "storage", "runtime", "server"}
ALLOWED = {
    "events": set(),
    "storage": {"events"},
    "runtime": {"events"},
    "server": {"events", "storage", "runtime"},
}


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
        str(path.relative_to(ROOT)): sorted(imported - ALLOWED[package] - {package})
        for path in (ROOT / package).rglob("*.py")
        if (imported := _imported_packages(path)) - ALLOWED[package] - {package}
    }
    assert offenders == {}
