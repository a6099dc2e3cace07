"""``python -m tests.chaos``: see `tests.chaos.cli`."""

from tests.chaos.cli import main

raise SystemExit(main())
