"""The runtime conformance suite: one set of tests every `Runtime` passes.

A backend's test module subclasses `RuntimeConformance` and provides the ``make``
fixture: a function that builds a runtime over a given workspace directory.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from events import (
    CmdOutputObservation,
    CmdRunAction,
    ErrorObservation,
    FileEditAction,
    FileEditObservation,
    FileReadAction,
    FileReadObservation,
    FileWriteAction,
    FileWriteObservation,
    MessageAction,
)
from events.actions import EditArgs, MessageArgs, ReadArgs, RunArgs, WriteArgs
from runtime import CommandLimits, Runtime, RuntimeFailure

Make = Callable[[Path, CommandLimits], Runtime]
FLIP_PY = """import os, shutil, sys
while True:
    try:
        os.symlink(sys.argv[1], "d")
    except OSError:
        pass
    try:
        os.unlink("d")
    except OSError:
        shutil.rmtree("d", ignore_errors=True)
"""
"""Flips ``d`` between nothing and a symlink to its argument (and removes a directory
put there), as fast as python can."""
LIMITS = CommandLimits(timeout=10, no_change_timeout=None, output_limit=2000)


def run(command: str, **args: object) -> CmdRunAction:
    return CmdRunAction(source="agent", args=RunArgs(command=command, **args))  # type: ignore[arg-type]


def output(observation: object) -> CmdOutputObservation:
    assert isinstance(observation, CmdOutputObservation), observation
    return observation


class RuntimeConformance:
    @pytest.fixture
    def make(self) -> Make:
        raise NotImplementedError

    @pytest_asyncio.fixture
    async def runtime(self, make: Make, tmp_path: Path) -> AsyncIterator[Runtime]:
        runtime = make(tmp_path / "workspace", LIMITS)
        await runtime.start()
        yield runtime
        await runtime.destroy()

    def processes_of(self, marker: str) -> list[str]:
        """Live processes whose command line contains ``marker`` (the process table)."""
        listing = subprocess.run(
            ["ps", "-eo", "pid,stat,args"], capture_output=True, text=True
        ).stdout
        return [
            line for line in listing.splitlines()
            if marker in line and "ps -eo" not in line and " Z" not in line.split(marker)[0]
        ]  # fmt: skip

    async def settle_processes(self, marker: str, *, running: bool) -> list[str]:
        """The processes of ``marker`` once they are there (``running``) or gone, or
        after 2 s: the caller asserts on what is returned."""
        for _ in range(100):
            found = self.processes_of(marker)
            if bool(found) == running:
                return found
            await asyncio.sleep(0.02)
        return self.processes_of(marker)

    # -- commands --------------------------------------------------------------------

    async def test_command_output_and_exit_code(self, runtime: Runtime) -> None:
        result = output(await runtime.run(run("echo hello; echo oops >&2; exit 3")))
        assert "hello" in result.content
        assert "oops" in result.content
        assert result.exit_code == 3
        assert result.success is False
        assert "exit code 3" in result.extras.metadata.suffix

    async def test_commands_share_the_workspace(self, runtime: Runtime) -> None:
        await runtime.run(run("mkdir -p src && echo data > src/file.txt"))
        result = output(await runtime.run(run("cat file.txt", cwd="src")))
        assert result.content.strip() == "data"
        assert result.exit_code == 0

    async def test_output_is_capped_keeping_head_and_tail(self, runtime: Runtime) -> None:
        result = output(await runtime.run(run("seq 1 20000")))
        assert result.content.startswith("1\n2\n")
        assert result.content.rstrip().endswith("20000")
        assert "bytes of output cut" in result.content
        assert len(result.content) < 2200

    async def test_timeout_kills_the_whole_process_group(self, runtime: Runtime) -> None:
        marker = "sleep 3141"
        action = run(f"{marker} & {marker} & echo started; wait").model_copy(
            update={"timeout": 1.0}
        )
        result = output(await runtime.run(action))
        assert "started" in result.content
        assert result.exit_code == -1
        assert "timed out after 1 seconds" in result.extras.metadata.suffix
        assert self.processes_of(marker) == []

    async def test_an_action_cannot_outlast_the_server_s_command_timeout(
        self, make: Make, tmp_path: Path
    ) -> None:
        """An action may ask for less time than the operator's limit, never more (a model
        asking execute_bash for timeout 100000 used to get it)."""
        runtime = make(tmp_path / "workspace", CommandLimits(timeout=1, no_change_timeout=None))
        await runtime.start()
        try:
            marker = f"sleep {random.randrange(10_000, 99_999)}"
            action = run(f"{marker}; echo late").model_copy(update={"timeout": 100_000.0})
            result = output(await runtime.run(action))
            assert result.exit_code == -1
            assert "timed out after 1 seconds" in result.extras.metadata.suffix
            assert self.processes_of(marker) == []
        finally:
            await runtime.close()

    async def test_no_change_timeout_returns_and_the_command_can_be_continued(
        self, make: Make, tmp_path: Path
    ) -> None:
        limits = CommandLimits(timeout=20, no_change_timeout=0.5, output_limit=2000)
        runtime = make(tmp_path / "workspace", limits)
        await runtime.start()
        try:
            marker = "sleep 2718"
            first = output(await runtime.run(run(f"echo first; {marker}; echo second")))
            assert first.content.strip() == "first"
            assert first.exit_code == -1
            assert "no new output after 0.5 seconds" in first.extras.metadata.suffix
            refused = await runtime.run(run("echo other"))
            assert isinstance(refused, ErrorObservation)
            assert "still running" in refused.content
            waited = output(await runtime.run(run("", is_input=True)))
            assert waited.exit_code == -1  # still quiet: returns again
            interrupted = output(await runtime.run(run("C-c", is_input=True)))
            assert interrupted.exit_code != 0
            assert self.processes_of(marker) == []
            after = output(await runtime.run(run("echo free again")))
            assert after.content.strip() == "free again"
        finally:
            await runtime.destroy()

    async def test_input_reaches_a_waiting_command(self, make: Make, tmp_path: Path) -> None:
        limits = CommandLimits(timeout=20, no_change_timeout=0.5, output_limit=2000)
        runtime = make(tmp_path / "workspace", limits)
        await runtime.start()
        try:
            prompt = output(await runtime.run(run("echo name?; read name; echo hello $name")))
            assert prompt.content.strip() == "name?"
            answered = output(await runtime.run(run("world", is_input=True)))
            assert "hello world" in answered.content
            assert answered.exit_code == 0
        finally:
            await runtime.destroy()

    async def test_cancelling_a_command_kills_it(self, runtime: Runtime) -> None:
        marker = "sleep 1618"
        task = asyncio.create_task(runtime.run(run(f"{marker}")))
        for _ in range(200):
            if self.processes_of(marker):
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert self.processes_of(marker) == []

    async def test_close_kills_background_jobs(self, make: Make, tmp_path: Path) -> None:
        runtime = make(tmp_path / "workspace", LIMITS)
        await runtime.start()
        marker = "sleep 1414"
        result = output(await runtime.run(run(f"{marker} >/dev/null 2>&1 & echo spawned")))
        assert "spawned" in result.content
        assert self.processes_of(marker) != []  # background jobs outlive their command
        await runtime.close()
        assert await self.settle_processes(marker, running=False) == []
        await runtime.destroy()

    # -- files -----------------------------------------------------------------------

    async def test_write_read_and_edit(self, runtime: Runtime) -> None:
        written = await runtime.run(
            FileWriteAction(
                source="agent", args=WriteArgs(path="notes/a.txt", content="one\ntwo\n")
            )
        )
        assert isinstance(written, FileWriteObservation)
        read = await runtime.run(FileReadAction(source="agent", args=ReadArgs(path="notes/a.txt")))
        assert isinstance(read, FileReadObservation)
        assert read.content == "one\ntwo\n"
        edited = await runtime.run(
            FileEditAction(
                source="agent",
                args=EditArgs(
                    path="notes/a.txt", command="str_replace", old_str="two", new_str="2"
                ),
            )
        )
        assert isinstance(edited, FileEditObservation)
        assert "-two" in (edited.extras.diff or "")
        assert "+2" in (edited.extras.diff or "")
        shown = output(await runtime.run(run("cat notes/a.txt")))
        assert shown.content == "one\n2\n"
        missing = EditArgs(path="notes/a.txt", command="str_replace", old_str="nope", new_str="0")
        refused = await runtime.run(FileEditAction(source="agent", args=missing))
        assert isinstance(refused, ErrorObservation)

    async def test_a_new_file_at_the_top_of_the_workspace(self, runtime: Runtime) -> None:
        written = await runtime.run(
            FileWriteAction(source="agent", args=WriteArgs(path="top.txt", content="hi\n"))
        )
        assert isinstance(written, FileWriteObservation), written
        assert output(await runtime.run(run("cat top.txt"))).content == "hi\n"

    @pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "link/secret"])
    async def test_paths_outside_the_workspace_are_refused(
        self, runtime: Runtime, path: str
    ) -> None:
        await runtime.run(run("ln -s /etc link"))
        read = await runtime.run(FileReadAction(source="agent", args=ReadArgs(path=path)))
        assert isinstance(read, ErrorObservation)
        assert "outside the workspace" in read.content
        write = await runtime.run(
            FileWriteAction(source="agent", args=WriteArgs(path=path, content="x"))
        )
        assert isinstance(write, ErrorObservation)

    async def test_a_symlink_swapped_in_mid_write_leads_nowhere(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A process in the sandbox flips ``d`` between a directory and a symlink to a
        directory outside while the agent writes (and edits) ``d/x.txt``: every write
        lands in the workspace or is refused, none outside."""
        outside = tmp_path / "outside"
        outside.mkdir()
        outside.chmod(0o777)
        await runtime.run(
            FileWriteAction(source="agent", args=WriteArgs(path="flip.py", content=FLIP_PY))
        )
        flipper = (  # python where the sandbox has it: thousands of flips a second
            f"if command -v python3 >/dev/null; then python3 flip.py {outside}; "
            f"else while :; do rm -rf d; mkdir d; rm -rf d; ln -s {outside} d; done; fi "
            ">/dev/null 2>&1 &"
        )
        output(await runtime.run(run(flipper)))
        deadline = asyncio.get_running_loop().time() + 2.5
        writes, refused = 0, 0
        while asyncio.get_running_loop().time() < deadline and not any(outside.iterdir()):
            written = await runtime.run(
                FileWriteAction(source="agent", args=WriteArgs(path="d/x.txt", content="x\n"))
            )
            await runtime.run(
                FileEditAction(
                    source="agent",
                    args=EditArgs(path="d/y.txt", command="create", file_text="y\n"),
                )
            )
            writes += 1
            refused += isinstance(written, ErrorObservation)
        assert writes > 5
        assert refused > 0  # the flipper did flip
        assert sorted(path.name for path in outside.iterdir()) == []

    async def test_file_observations_are_capped_and_huge_files_refused(
        self, runtime: Runtime
    ) -> None:
        output(await runtime.run(run("seq 1 100000 > long.txt")))
        read = await runtime.run(FileReadAction(source="agent", args=ReadArgs(path="long.txt")))
        assert isinstance(read, FileReadObservation)
        assert read.content.startswith("1\n2\n")
        assert read.content.rstrip().endswith("100000")
        assert "bytes of output cut" in read.content
        assert len(read.content.encode()) < LIMITS.output_limit + 200
        viewed = await runtime.run(
            FileEditAction(source="agent", args=EditArgs(path="long.txt", command="view"))
        )
        assert isinstance(viewed, FileEditObservation)
        assert "bytes of output cut" in viewed.content
        assert len(viewed.content.encode()) < LIMITS.output_limit + 200

        output(await runtime.run(run("head -c 6000000 /dev/zero > huge.bin")))
        for action in (
            FileReadAction(source="agent", args=ReadArgs(path="huge.bin")),
            FileEditAction(
                source="agent",
                args=EditArgs(path="huge.bin", command="str_replace", old_str="a", new_str="b"),
            ),
        ):
            refused = await runtime.run(action)
            assert isinstance(refused, ErrorObservation), refused
            assert "larger than" in refused.content
        too_big = await runtime.run(
            FileWriteAction(source="agent", args=WriteArgs(path="big.txt", content="x" * 6_000_000))
        )
        assert isinstance(too_big, ErrorObservation)
        assert "larger than" in too_big.content

    async def test_unsupported_actions_are_error_observations(self, runtime: Runtime) -> None:
        result = await runtime.run(MessageAction(source="agent", args=MessageArgs(content="hi")))
        assert isinstance(result, ErrorObservation)

    # -- repository preparation ------------------------------------------------------

    async def test_clone_checkout_and_setup_script(
        self, make: Make, tmp_path: Path, bare_repository: Path
    ) -> None:
        statuses: list[str] = []

        async def status(message: str) -> None:
            statuses.append(message)

        runtime = make(tmp_path / "workspace", LIMITS)
        await runtime.start(repository=str(bare_repository), branch="feature", on_status=status)
        try:
            head = output(await runtime.run(run("cat .git/HEAD")))
            assert head.content.strip() == "ref: refs/heads/feature"
            marker = output(await runtime.run(run("cat setup-ran.txt")))
            assert marker.content.strip() == "setup ran"
        finally:
            await runtime.destroy()
        assert any(message.startswith("cloning") for message in statuses)
        assert any("checking out feature" in message for message in statuses)
        assert any("setup script" in message for message in statuses)

    async def test_a_setup_script_behind_a_symlink_is_the_sandboxs_to_find(
        self, make: Make, tmp_path: Path
    ) -> None:
        """The host may skip asking the sandbox only when nothing is there: a symlinked
        .openhands is still looked into, in the sandbox, as its user."""
        workspace = tmp_path / "workspace"
        first = make(workspace, LIMITS)
        await first.start()
        try:
            made = "mkdir config && echo 'echo linked > setup-ran.txt' > config/setup.sh"
            output(await first.run(run(f"{made} && ln -s config .openhands")))
        finally:
            await first.close()
        again = make(workspace, LIMITS)
        await again.start()
        try:
            marker = output(await again.run(run("cat setup-ran.txt")))
            assert marker.content.strip() == "linked"
        finally:
            await again.destroy()

    async def test_a_branch_is_never_an_option_to_git(
        self, make: Make, tmp_path: Path, bare_repository: Path
    ) -> None:
        secret = tmp_path / "host-secret.txt"
        secret.write_text("feature\nTOP-SECRET-HOST-FILE\n")
        runtime = make(tmp_path / "workspace", LIMITS)
        with pytest.raises(RuntimeFailure) as failure:
            await runtime.start(
                repository=str(bare_repository), branch=f"--pathspec-from-file={secret}"
            )
        await runtime.destroy()
        assert "TOP-SECRET" not in str(failure.value)
        assert "branch" in str(failure.value)

    async def test_repositories_outside_the_allowed_roots_are_refused(
        self, make: Make, tmp_path: Path, bare_repository: Path
    ) -> None:
        elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere.git"  # not under the roots
        shutil.copytree(bare_repository, elsewhere)
        runtime = make(tmp_path / "workspace", LIMITS)
        try:
            with pytest.raises(RuntimeFailure, match="THREADLINE_REPOSITORY_ROOTS"):
                await runtime.start(repository=str(elsewhere))
        finally:
            await runtime.destroy()
            shutil.rmtree(elsewhere)

    async def test_destroy_removes_the_workspace_and_follows_no_link(
        self, make: Make, tmp_path: Path
    ) -> None:
        keep = tmp_path / "keep"
        keep.mkdir()
        (keep / "precious.txt").write_text("keep me\n")
        workspace = tmp_path / "workspace"
        runtime = make(workspace, LIMITS)
        await runtime.start()
        marker = "sleep 2323"
        await runtime.run(
            run(
                f"mkdir -p a/b && echo hi > a/b/f && ln -s {keep} a/link && "
                f"ln -s {keep}/precious.txt p && ({marker} >/dev/null 2>&1 &)"
            )
        )
        assert self.processes_of(marker) != []
        await runtime.destroy()
        assert not workspace.exists()
        assert (keep / "precious.txt").read_text() == "keep me\n"
        assert await self.settle_processes(marker, running=False) == []

    async def test_a_failing_setup_step_is_a_runtime_failure(
        self, make: Make, tmp_path: Path
    ) -> None:
        runtime = make(tmp_path / "workspace", LIMITS)
        with pytest.raises(RuntimeFailure, match="git clone failed"):
            await runtime.start(repository=str(tmp_path / "no-such-repository"))
        await runtime.destroy()
