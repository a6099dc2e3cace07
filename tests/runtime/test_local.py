"""The runtime conformance suite against `LocalRuntime`, and what only local commands
need: a scrubbed environment and, when the server is root, a user of their own."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runtime import CommandLimits, LocalRuntime, Runtime, RuntimeFailure
from runtime.users import UserPool
from tests.reachable import reachable
from tests.runtime.conformance import LIMITS, Make, RuntimeConformance, output, run

AS_ROOT = os.geteuid() == 0


def pool() -> UserPool | None:
    return UserPool.default() if AS_ROOT else None


class TestLocalRuntime(RuntimeConformance):
    @pytest.fixture
    def make(self, tmp_path: Path) -> Make:
        reachable(tmp_path)

        def build(workspace: Path, limits: CommandLimits) -> Runtime:
            return LocalRuntime(workspace, limits, repository_roots=(tmp_path,), users=pool())

        return build


async def test_commands_get_a_scrubbed_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THREADLINE_LLM_API_KEY", "sk-operator-secret")
    workspace = reachable(tmp_path) / "workspace"
    runtime = LocalRuntime(workspace, LIMITS, users=pool())
    await runtime.start()
    try:
        listing = output(await runtime.run(run("env"))).content
    finally:
        await runtime.destroy()
    assert "sk-operator-secret" not in listing
    names = {line.partition("=")[0] for line in listing.splitlines() if "=" in line}
    assert names <= {"PATH", "HOME", "LANG", "LC_ALL", "TERM", "PWD", "SHLVL", "OLDPWD", "_"}
    assert f"HOME={workspace}" in listing.splitlines()


@pytest.mark.skipif(not AS_ROOT, reason="only root can run commands as another user")
async def test_each_workspace_has_a_user_of_its_own(tmp_path: Path) -> None:
    reachable(tmp_path)
    private = tmp_path / "data"  # stands for the data directory and the event log
    private.mkdir(mode=0o700)
    (private / "log.db").write_text("everyone's events\n")
    first = LocalRuntime(tmp_path / "first", LIMITS, users=pool())
    second = LocalRuntime(tmp_path / "second", LIMITS, users=pool())
    await first.start()
    await second.start()
    try:
        ids = output(await first.run(run("id -u; id -g; id -G; umask; echo x > mine.txt")))
        uid, gid, groups, umask = ids.content.split("\n")[:4]
        assert int(uid) != 0
        assert groups.split() == [gid]
        assert umask.strip() in ("0077", "077")
        info = (tmp_path / "first").stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (int(uid), 0o700)
        assert (tmp_path / "first" / "mine.txt").stat().st_uid == int(uid)
        other = output(await second.run(run("id -u")))
        assert other.content.strip() != uid
        peek = output(await second.run(run(f"cat {tmp_path}/first/mine.txt")))
        assert peek.exit_code != 0
        database = output(await first.run(run(f"cat {private}/log.db")))
        assert database.exit_code != 0
        assert "everyone's events" not in database.content
    finally:
        await first.destroy()
        await second.destroy()


@pytest.mark.skipif(not AS_ROOT, reason="only root can run commands as another user")
async def test_git_hooks_run_as_the_sandbox_user_never_the_server(
    tmp_path: Path, bare_repository: Path
) -> None:
    workspace = reachable(tmp_path) / "workspace"
    make = lambda: LocalRuntime(  # noqa: E731
        workspace, LIMITS, repository_roots=(tmp_path,), users=pool()
    )
    runtime = make()
    await runtime.start(repository=str(bare_repository))
    planted = await runtime.run(
        run(
            "mkdir -p .git/hooks && "
            "printf '#!/bin/sh\\nid -u > hook-ran-as\\n' > .git/hooks/post-checkout && "
            "chmod +x .git/hooks/post-checkout && "
            "git config core.fsmonitor 'id -u > fsmonitor-ran-as #'"
        )
    )
    assert output(planted).exit_code == 0, output(planted).content
    await runtime.close()
    again = make()
    await again.start(repository=str(bare_repository), branch="feature")
    try:
        ran_as = {path.name: path.read_text().strip() for path in workspace.glob("*-ran-as")}
        assert ran_as, "git ran no hook at all: the test proves nothing"
        assert "0" not in ran_as.values()
        assert str(os.getuid()) not in ran_as.values()
    finally:
        await again.destroy()


def test_each_workspace_claims_a_distinct_stable_user(tmp_path: Path) -> None:
    users = UserPool(tmp_path / "claims", base=3_000_000, count=4)
    workspaces = [tmp_path / f"w{n}" for n in range(5)]
    for workspace in workspaces:
        workspace.mkdir()
    claimed = [users.claim(workspace).uid for workspace in workspaces[:4]]
    assert len(set(claimed)) == 4
    assert all(3_000_000 <= uid < 3_000_004 for uid in claimed)
    assert users.claim(workspaces[1]).uid == claimed[1]  # stable
    with pytest.raises(RuntimeFailure, match="no sandbox user is free"):
        users.claim(workspaces[4])
    workspaces[0].rmdir()  # a claim whose workspace is gone is free again
    assert users.claim(workspaces[4]).uid == claimed[0]


def test_a_claim_is_fresh_only_for_a_uid_nobody_claimed_before(tmp_path: Path) -> None:
    """Only then may a start skip killing the uid's leftovers (`LocalRuntime`)."""
    users = UserPool(tmp_path / "claims", base=3_000_000, count=1)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    uid, fresh = users.claim_noting_fresh(first)
    assert fresh
    assert users.claim_noting_fresh(first) == (uid, False)  # claimed before: by itself
    first.rmdir()
    assert users.claim_noting_fresh(second) == (uid, False)  # a stale claim taken over
    users.release(second, uid.uid)
    assert users.claim_noting_fresh(second) == (uid, True)  # released: nothing runs as it


@pytest.mark.skipif(not AS_ROOT, reason="only a root server switches users")
async def test_close_kills_a_process_that_left_its_session(tmp_path: Path) -> None:
    """`kill -9 -1` as the sandbox user (through setpriv) reaches a daemonized process."""
    runtime = LocalRuntime(reachable(tmp_path) / "workspace", LIMITS, users=pool())
    await runtime.start()
    marker = "sleep 1515"
    result = output(
        await runtime.run(run(f"setsid {marker} >/dev/null 2>&1 < /dev/null & echo ok"))
    )
    assert "ok" in result.content
    probe = TestLocalRuntime()
    assert await probe.settle_processes(marker, running=True) != []
    await runtime.close()
    assert await probe.settle_processes(marker, running=False) == []
    await runtime.destroy()


@pytest.mark.skipif(not AS_ROOT, reason="only a root server switches users")
async def test_a_restart_under_a_claimed_uid_kills_its_leftovers_first(tmp_path: Path) -> None:
    """A crashed server's process still runs as the workspace's uid: the next start (the
    claim is not fresh) kills it before the host touches the workspace; a fresh claim
    takes the workspace in the same worker-thread hop as the claim."""
    workspace = reachable(tmp_path) / "workspace"
    users = UserPool(tmp_path / "claims", base=3_100_000, count=10)
    crashed = LocalRuntime(workspace, LIMITS, users=users)
    await crashed.start()
    assert crashed.fresh_identity
    marker = "sleep 1616"
    started = await crashed.run(run(f"setsid {marker} >/dev/null 2>&1 < /dev/null & echo ok"))
    assert "ok" in output(started).content
    probe = TestLocalRuntime()
    assert await probe.settle_processes(marker, running=True) != []
    again = LocalRuntime(workspace, LIMITS, users=users)  # the crashed one never closed
    await again.start()
    assert not again.fresh_identity
    assert again.identity == crashed.identity
    assert await probe.settle_processes(marker, running=False) == []
    await again.destroy()


@pytest.mark.skipif(not AS_ROOT, reason="only a root server switches users")
async def test_a_workspace_its_user_cannot_reach_is_refused_at_start(tmp_path: Path) -> None:
    closed = reachable(tmp_path) / "closed"
    closed.mkdir()
    closed.chmod(0o700)
    runtime = LocalRuntime(closed / "workspace", LIMITS, users=pool())
    with pytest.raises(RuntimeFailure, match=f"{closed} is not searchable by others"):
        await runtime.start()
    await runtime.destroy()
