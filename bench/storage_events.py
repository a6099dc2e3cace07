"""Realistic events for the storage benchmark (and `bench/http.py`): conversations as an
OpenHands agent produces them, from a seeded generator, with marker words mixed into the
free text at known rates so full-text results can be checked exactly.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

from events import (
    AgentState,
    AgentStateChangedObservation,
    AgentThinkAction,
    CmdOutputObservation,
    CmdRunAction,
    EventBase,
    FileEditAction,
    FileEditObservation,
    FileReadAction,
    FileReadObservation,
    MessageAction,
    ToolCallMetadata,
)
from events.actions import EditArgs, MessageArgs, ReadArgs, RunArgs, ThinkArgs
from events.base import Source
from events.observations import (
    AgentStateChangedExtras,
    CmdOutputExtras,
    CmdOutputMetadata,
    FileEditExtras,
    FileReadExtras,
)

T = TypeVar("T")

COMMON_WORD = "timeout"
"""In about 10% of events: the text query of the page filter."""
MODERATE_WORDS = ("deadlock", "segfault", "regression", "flakiness")
"""Each in about 1% of events."""
RARE_WORDS = ("heisenbug", "bitrot", "mandelbug", "yakshave")
"""Each in about 0.01% of events."""
COMMON_RATE, MODERATE_RATE, RARE_RATE = 0.10, 0.01, 0.0001

MODULES = (
    "auth", "billing", "cache", "cli", "config", "events", "models", "parser", "queue",
    "router", "schema", "server", "storage", "utils", "worker",
)  # fmt: skip
FUNCTIONS = (
    "load_config", "parse_args", "handle_request", "flush", "validate", "serialize",
    "connect", "migrate", "render", "dispatch", "resolve_path", "close",
)  # fmt: skip
WORDS = (
    "the", "test", "fails", "because", "value", "is", "missing", "from", "response", "need",
    "to", "check", "how", "handles", "empty", "input", "before", "changing", "code", "looks",
    "like", "function", "returns", "wrong", "type", "when", "called", "with", "list",
    "instead", "of", "dict", "fix", "it", "update", "tests", "accordingly", "run", "again",
    "see", "whether", "passes", "now", "error", "comes", "import", "cycle", "between",
    "modules", "add", "guard", "for", "none", "case", "log", "message", "unclear", "rename",
    "variable", "make", "intent", "explicit", "cursor", "page", "batch", "commit", "schema",
)  # fmt: skip
COMMANDS = (
    "pytest tests/test_{m}.py -x -q",
    "git status --short",
    "git diff --stat src/{m}",
    "ls -la src/{m}",
    'grep -rn "def {f}" src/',
    "python -m {m} --check",
    "ruff check src/{m}",
    "cat src/{m}/__init__.py",
)
OUTPUT_LINES = (
    "tests/test_{m}.py::test_{f} PASSED",
    "FAILED tests/test_{m}.py::test_{f} - AssertionError: assert {n} == {k}",
    "===== {n} passed, {k} failed in {n}.{k}s =====",
    " M src/{m}/{f}.py",
    "src/{m}/core.py:{n}:    def {f}(self, value):",
    "-rw-r--r-- 1 openhands openhands {n}{k} Nov 25 14:05 {f}.py",
    "src/{m}/core.py:{n}:{k}: F401 `typing.Any` imported but unused",
)
CODE_LINES = (
    "def {f}(value: dict[str, Any]) -> list[str]:",
    '    """Return the {m} entries for value."""',
    "    if not value:",
    "        return []",
    "    result = [item for item in value if item]",
    "    logger.debug('{f}: %d items', len(result))",
    "    return sorted(result)",
    "from {m}.core import {f}",
)
STEPS = ("run", "read", "edit", "think", "agent_message", "user_message", "state")
STEP_WEIGHTS = (30, 12, 10, 12, 5, 3, 4)
AGENT_STATES: tuple[AgentState, ...] = ("running", "awaiting_user_input")


class ConversationScript:
    """One conversation's events as an OpenHands agent produces them: think, run a
    command and read its output, read and edit files, talk to the user.

    Every event carries one free-text note; the marker words are mixed into notes at their
    rates, and ``markers`` counts them so full-text results can be checked exactly.
    """

    def __init__(self, rng: random.Random, markers: Counter[str]) -> None:
        self._rng = rng
        self._markers = markers
        self._host = f"runtime-{rng.getrandbits(24):06x}"

    def events(self, count: int) -> Iterator[EventBase]:
        produced = 0
        while produced < count:
            step = self._step(produced, room=count - produced)
            yield from step
            produced += len(step)

    def _step(self, first_id: int, room: int) -> list[EventBase]:
        step = self._rng.choices(STEPS, STEP_WEIGHTS)[0] if room > 1 else "think"
        if step == "run":
            return self._run(first_id)
        if step == "read":
            return self._read(first_id)
        if step == "edit":
            return self._edit(first_id)
        if step == "think":
            return [AgentThinkAction(source="agent", args=ThinkArgs(thought=self._note(16)))]
        if step == "state":
            state = self._rng.choice(AGENT_STATES)
            extras = AgentStateChangedExtras(agent_state=state)
            return [AgentStateChangedObservation(source="environment", extras=extras)]
        source: Source = "user" if step == "user_message" else "agent"
        return [MessageAction(source=source, args=MessageArgs(content=self._note(18)))]

    def _run(self, first_id: int) -> list[EventBase]:
        rng = self._rng
        command = self._fill(rng.choice(COMMANDS))
        exit_code = 0 if rng.random() < 0.8 else 1
        call = self._tool_call("execute_bash")
        output = "\n".join(self._fill(rng.choice(OUTPUT_LINES)) for _ in range(rng.randint(1, 3)))
        metadata = CmdOutputMetadata(
            exit_code=exit_code,
            pid=rng.randint(100, 30000),
            username="openhands",
            hostname=self._host,
            working_dir="/workspace/project",
            py_interpreter_path="/openhands/poetry/bin/python",
            suffix=f"\n[The command completed with exit code {exit_code}.]",
        )
        return [
            CmdRunAction(
                source="agent",
                args=RunArgs(command=command, thought=self._note(8)),
                tool_call_metadata=call,
            ),
            CmdOutputObservation(
                source="agent",
                cause=first_id,
                content=f"{output}\n{self._note(5)}",
                extras=CmdOutputExtras(command=command, metadata=metadata),
            ),
        ]

    def _read(self, first_id: int) -> list[EventBase]:
        path = self._fill("/workspace/project/src/{m}/{f}.py")
        call = self._tool_call("str_replace_editor")
        code = "\n".join(self._fill(line) for line in self._rng.sample(CODE_LINES, 3))
        return [
            FileReadAction(
                source="agent",
                args=ReadArgs(path=path, thought=self._note(6)),
                tool_call_metadata=call,
            ),
            FileReadObservation(
                source="agent",
                cause=first_id,
                content=f"{code}\n# {self._note(4)}",
                extras=FileReadExtras(path=path),
            ),
        ]

    def _edit(self, first_id: int) -> list[EventBase]:
        path = self._fill("/workspace/project/src/{m}/{f}.py")
        old, new = (self._fill(line) for line in self._rng.sample(CODE_LINES, 2))
        call = self._tool_call("str_replace_editor")
        args = EditArgs(
            path=path, command="str_replace", old_str=old, new_str=new, thought=self._note(6)
        )
        return [
            FileEditAction(source="agent", args=args, tool_call_metadata=call),
            FileEditObservation(
                source="agent",
                cause=first_id,
                content=f"The file {path} has been edited. {self._note(4)}",
                extras=FileEditExtras(path=path, prev_exist=True, diff=f"-{old}\n+{new}"),
            ),
        ]

    def _note(self, words: int) -> str:
        rng = self._rng
        parts = [" ".join(rng.choices(WORDS, k=words)).capitalize() + "."]
        if rng.random() < COMMON_RATE:
            parts.append(f"Hit a {COMMON_WORD} after {rng.randint(5, 300)}s.")
            self._markers[COMMON_WORD] += 1
        if rng.random() < MODERATE_RATE * len(MODERATE_WORDS):
            word = rng.choice(MODERATE_WORDS)
            parts.append(f"Smells like a {word} in {rng.choice(MODULES)}.")
            self._markers[word] += 1
        if rng.random() < RARE_RATE * len(RARE_WORDS):
            word = rng.choice(RARE_WORDS)
            parts.append(f"Could this be a {word}?")
            self._markers[word] += 1
        return " ".join(parts)

    def _fill(self, template: str) -> str:
        rng = self._rng
        return template.format(
            m=rng.choice(MODULES),
            f=rng.choice(FUNCTIONS),
            n=rng.randint(1, 400),
            k=rng.randint(0, 9),
        )

    def _tool_call(self, function: str) -> ToolCallMetadata:
        return ToolCallMetadata(
            function_name=function, tool_call_id=f"toolu_{self._rng.getrandbits(96):024x}"
        )


def script(seed: int, index: int, markers: Counter[str]) -> ConversationScript:
    return ConversationScript(random.Random(f"{seed}:{index}"), markers)


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
