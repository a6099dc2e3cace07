"""The runtime conformance suite against `DockerRuntime`, on a real Docker engine with
the locally built busybox image (scripts/services builds it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runtime import CommandLimits, Runtime
from runtime.docker import DockerRuntime
from tests.runtime.conformance import Make, RuntimeConformance

IMAGE = "threadline-sandbox:test"


def _engine_ready() -> None:
    probe = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, text=True)
    if probe.returncode != 0:
        raise RuntimeError(
            f"the Docker engine or the image {IMAGE} is missing; scripts/services sets them up:\n"
            + probe.stderr
        )


class TestDockerRuntime(RuntimeConformance):
    @pytest.fixture
    def make(self) -> Make:
        _engine_ready()

        def build(workspace: Path, limits: CommandLimits) -> Runtime:
            return DockerRuntime(workspace, image=IMAGE, limits=limits)

        return build

    def processes_of(self, marker: str) -> list[str]:
        """Container processes show in the host's process table too."""
        return super().processes_of(marker)
