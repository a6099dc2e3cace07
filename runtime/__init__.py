"""Where actions run: the `Runtime` protocol and its sandboxes."""

from runtime.errors import RuntimeFailure, SandboxStartTimeout
from runtime.local import LocalRuntime
from runtime.protocol import CommandLimits, PhaseCallback, Runtime, StartPhase, StatusCallback

__all__ = [
    "CommandLimits",
    "LocalRuntime",
    "PhaseCallback",
    "Runtime",
    "RuntimeFailure",
    "SandboxStartTimeout",
    "StartPhase",
    "StatusCallback",
]
