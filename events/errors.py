"""The project's error tree.

    ThreadlineError                  root of every error threadline raises on purpose
    ├── EventValidationError         an event (or filter) that does not fit the model
    ├── storage.errors.StorageError  see storage/errors.py
    └── runtime / server errors      see their packages

`events` is the bottom of the dependency graph, so the root lives here and every other
package derives its branch from it.
"""

from __future__ import annotations


class ThreadlineError(Exception):
    """Root of every error threadline raises on purpose."""


class EventValidationError(ThreadlineError, ValueError):
    """An event or filter failed validation.

    `field` is the dotted path of the offending field (``"args.command"``), or ``""``
    when the problem is the document as a whole (not JSON, not an object).
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)
