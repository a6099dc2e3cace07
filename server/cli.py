"""The ``threadline`` command: ``serve`` the server, manage API ``keys``, build the
``sandbox`` image; and, over a running server's API (server/commands.py): ``ls``,
``tail``, ``send``, ``export``, ``import``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from client import ApiError, ServerUnreachable
from server import logs
from server.auth import create_key
from server.commands import add_commands, run_command
from server.runtimes import prepare_data_dir
from server.settings import Settings
from storage import Storage, StorageInUse
from storage.sqlite import SqliteStorage

logger = logging.getLogger("threadline")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code. A failure is one line on stderr, never a
    traceback (``--debug`` shows one)."""
    parser = _parser()
    arguments = parser.parse_args(argv)
    command = arguments.command
    try:
        if command == "serve":
            return serve(_settings(arguments))
        if command == "keys":
            return asyncio.run(_keys(arguments))
        if command == "sandbox":
            return _build_sandbox_image(arguments.tag, arguments.force)
        return run_command(arguments)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if getattr(arguments, "debug", False):
            raise
        print(f"threadline {command}: {_in_words(exc, arguments)}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1


def _in_words(exc: Exception, arguments: argparse.Namespace) -> str:
    if isinstance(exc, ServerUnreachable):
        return f"{exc} (is `threadline serve` running there? see --url)"
    if isinstance(exc, ApiError):
        field = f" ({exc.field})" if exc.field else ""
        return f"the server answered {exc.status}: {exc.message}{field}"
    if isinstance(exc, StorageInUse):
        return f"{exc} (stop the server using {arguments.data_dir}, or pick --data-dir)"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def serve(settings: Settings) -> int:
    # Imported here: the app pulls in every agent (the openai client alone takes a
    # second), which `keys`, `export` and `import` do not need.
    from server import serving

    logs.configure(settings.log_level, settings.log_format)
    if not _is_loopback(settings.host):
        logger.warning(
            "listening on %s: unless API keys exist (threadline keys create), anyone who can "
            "reach this address can use the server",
            settings.host,
        )
    for warning in prepare_data_dir(settings):
        logger.warning("%s", warning)
    if settings.workers > 1:
        return serving.supervise(settings)
    serving.run(settings)
    return 0


async def _keys(arguments: argparse.Namespace) -> int:
    settings = _settings(arguments)
    store: Storage
    if settings.database:
        from storage.postgres import PostgresStorage

        store = await PostgresStorage.open(settings.database)
    else:
        store = await SqliteStorage.open(settings.storage_dir, owner=False)
    try:
        if arguments.action == "create":
            key, record = await create_key(store, arguments.user, arguments.label)
            print(key)
            print(f"key {record.id} for {record.user}: shown once, store it now", file=sys.stderr)
        elif arguments.action == "list":
            for record in await store.list_api_keys(arguments.user):
                state = "revoked" if record.revoked else "active"
                print(
                    f"{record.id}\t{record.user}\t{state}\t{record.created_at:%Y-%m-%d}\t{record.label}"
                )
        elif arguments.action == "revoke":
            await store.revoke_api_key(arguments.key_id)
            print(f"key {arguments.key_id} revoked", file=sys.stderr)
    finally:
        await store.close()
    return 0


def _build_sandbox_image(tag: str, force: bool) -> int:
    from runtime.image import build_image

    asyncio.run(build_image(tag, force=force, log=lambda line: print(line, file=sys.stderr)))
    return 0


def _settings(arguments: argparse.Namespace) -> Settings:
    overrides = {name: getattr(arguments, name, None) for name, _, _ in _SETTING_FLAGS} | {
        "data_dir": getattr(arguments, "data_dir", None)
    }
    return Settings.from_env(**overrides)


_SETTING_FLAGS = [
    (item.name, variable, (default, text))
    for item, (variable, default, text) in zip(
        dataclasses.fields(Settings), Settings.documented(), strict=True
    )
]
"""(field, variable, (default, description)) of every setting: each is a flag of
``serve``."""


def _setting_type(name: str) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            return Settings.parse(name, raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="threadline",
        description="An event-streaming server for AI-agent conversations. "
        "`threadline serve --help` lists every setting.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_parser = commands.add_parser(
        "serve",
        help="run the server",
        usage="threadline serve [--SETTING VALUE ...] [--debug]",
        description="Run the server. Every setting is a flag and a THREADLINE_* variable; "
        "flags win over variables, which win over the defaults shown.",
    )
    for name, variable, (default, text) in _SETTING_FLAGS:
        serve_parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            metavar=name.split("_")[-1].upper(),
            type=_setting_type(name),
            help=f"{text} (${variable}; default: {default})".replace("%", "%%"),
        )
    serve_parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")

    keys = commands.add_parser("keys", help="manage API keys (turns authentication on)")
    data_dir_help = "data directory (default: $THREADLINE_DATA_DIR, else ./data)"
    keys.add_argument("--data-dir", type=Path, help=data_dir_help)
    key_actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = key_actions.add_parser("create", help="create a key and print it once")
    create.add_argument("--user", required=True, help="whose key it is")
    create.add_argument("--label", default="", help="a note to tell keys apart (default: none)")
    listing = key_actions.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--user", help="only this user's (default: everyone's)")
    revoke = key_actions.add_parser("revoke", help="revoke a key by id (see keys list)")
    revoke.add_argument("key_id", type=int)
    for action in (create, listing, revoke):
        # Also after the action (`keys create --data-dir X`); SUPPRESS keeps the one
        # given before it.
        action.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help=data_dir_help)

    add_commands(commands)

    sandbox = commands.add_parser("sandbox", help="the Docker sandbox image")
    sandbox_actions = sandbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = sandbox_actions.add_parser(
        "build", help="build the sandbox image from Debian packages (no registry needed)"
    )
    build.add_argument(
        "--tag",
        default=os.environ.get("THREADLINE_DOCKER_IMAGE", "threadline-sandbox:latest"),
        help="image name (default: %(default)s, from $THREADLINE_DOCKER_IMAGE)",
    )
    build.add_argument("--force", action="store_true", help="build even if up to date")
    return parser


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
