"""Runtime errors.

ThreadlineError
└── RuntimeFailure            the sandbox itself failed (not a command in it)
    └── SandboxStartTimeout   the sandbox did not come up in time
"""

from __future__ import annotations

from events import ThreadlineError


class RuntimeFailure(ThreadlineError):
    """The sandbox failed; a failing command is an observation, not this."""


class SandboxStartTimeout(RuntimeFailure):
    pass
