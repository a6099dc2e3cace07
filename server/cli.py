"""The ``threadline`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from storage.sqlite import SqliteStorage

DEFAULT_DATA_DIR = Path(os.environ.get("THREADLINE_DATA_DIR", "data"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="threadline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server on its embedded defaults")
    serve.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    arguments = parser.parse_args(argv)
    if arguments.command == "serve":
        return asyncio.run(_serve(arguments.data_dir))
    return 2


async def _serve(data_dir: Path) -> int:
    storage = await SqliteStorage.open(data_dir)
    print(f"threadline: event log open in {storage.directory.resolve()}", file=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await storage.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
