"""The runtime conformance suite against `DockerRuntime`, on a real Docker engine with
the sandbox image built from Debian packages (scripts/services builds it), and what
only containers need: git inside, limits that bite."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest
import pytest_asyncio

from runtime import CommandLimits, Runtime
from runtime.docker import DockerRuntime
from runtime.users import UserPool
from tests.reachable import reachable
from tests.runtime.conformance import LIMITS, Make, RuntimeConformance, output, run

IMAGE = os.environ.get("THREADLINE_TEST_SANDBOX_IMAGE", "threadline-sandbox:test")


def _engine_ready() -> None:
    probe = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, text=True)
    if probe.returncode != 0:
        raise RuntimeError(
            f"the Docker engine or the image {IMAGE} is missing; scripts/services sets them up:\n"
            + probe.stderr
        )


def pool() -> UserPool | None:
    return UserPool.default() if os.geteuid() == 0 else None


def docker_runtime(
    workspace: Path, limits: CommandLimits, roots: tuple[Path, ...]
) -> DockerRuntime:
    return DockerRuntime(
        workspace, image=IMAGE, limits=limits, repository_roots=roots, users=pool()
    )


class TestDockerRuntime(RuntimeConformance):
    @pytest.fixture
    def make(self, tmp_path: Path) -> Make:
        _engine_ready()
        reachable(tmp_path)

        def build(workspace: Path, limits: CommandLimits) -> Runtime:
            return docker_runtime(workspace, limits, (tmp_path,))

        return build

    def processes_of(self, marker: str) -> list[str]:
        """Container processes show in the host's process table too."""
        return super().processes_of(marker)


@pytest_asyncio.fixture
async def container(tmp_path: Path) -> AsyncIterator[DockerRuntime]:
    _engine_ready()
    runtime = docker_runtime(reachable(tmp_path) / "workspace", LIMITS, (tmp_path,))
    await runtime.start()
    yield runtime
    await runtime.destroy()


async def test_git_config_written_in_the_sandbox_never_runs_on_the_host(
    tmp_path: Path, bare_repository: Path
) -> None:
    """The sandbox writes a post-checkout hook and core.fsmonitor; the next start checks
    out a branch. Whatever runs them must be the container, never the host."""
    _engine_ready()
    reachable(tmp_path)
    workspace = tmp_path / "workspace"
    marker = tmp_path / "ran-on-the-host"
    fsmonitor_marker = tmp_path / "ran-on-the-host.fsmonitor"
    runtime = docker_runtime(workspace, LIMITS, (tmp_path,))
    await runtime.start(repository=str(bare_repository))
    planted = output(
        await runtime.run(
            run(
                "mkdir -p .git/hooks && "
                f"printf '#!/bin/sh\\ntouch {marker}\\necho hook >> hook-ran\\n' "
                "> .git/hooks/post-checkout && chmod +x .git/hooks/post-checkout && "
                f"printf '[core]\\n\\tfsmonitor = touch {fsmonitor_marker}; echo\\n' >> .git/config"
            )
        )
    )
    assert planted.exit_code == 0, planted.content
    await runtime.close()
    again = docker_runtime(workspace, LIMITS, (tmp_path,))
    try:
        await again.start(repository=str(bare_repository), branch="feature")
        assert not marker.exists()
        assert not fsmonitor_marker.exists()
        head = output(await again.run(run("git rev-parse --abbrev-ref HEAD; cat hook-ran")))
        assert head.content.split() == ["feature", "hook"]  # it ran, in the container
    finally:
        await again.destroy()


async def test_the_container_is_confined(container: DockerRuntime) -> None:
    async with aiodocker.Docker() as docker:
        info = await (await docker.containers.get(container.host)).show()
    host = info["HostConfig"]
    assert host["Memory"] > 0
    assert host["MemorySwap"] == host["Memory"]
    assert host["PidsLimit"] > 0
    assert host["NanoCpus"] > 0
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["ReadonlyRootfs"] is True
    assert info["Config"]["User"] not in ("", "0", "root", "0:0")

    who = output(await container.run(run("id -u")))
    assert who.content.strip() not in ("", "0")
    root_fs = output(await container.run(run("touch /etc/owned")))
    assert root_fs.exit_code != 0
    scratch = output(await container.run(run("echo ok > /tmp/scratch && cat /tmp/scratch")))
    assert scratch.content.strip() == "ok"


async def test_a_fork_bomb_stops_at_the_pids_limit(container: DockerRuntime) -> None:
    counted = output(
        await container.run(
            run(  # the subshell dies at the first fork refused; it notes each child started
                "( n=0; while [ $n -lt 2000 ]; do sleep 60 & n=$((n+1)); "
                "echo $n > /tmp/started; done ) 2>/dev/null; "
                'read n < /tmp/started; echo "started $n"'
            )
        )
    )
    started = int(counted.content.split("started")[-1].split()[0])
    assert started < 2000
    assert started <= container.resources.pids
