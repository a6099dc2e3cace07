"""The ``threadline`` command: ``serve`` the server, manage API ``keys``, ``export`` and
``import`` whole conversations (over a running server's HTTP API, see server/transfer.py)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx2
import uvicorn

from server import logs, transfer
from server.auth import create_key
from server.protocol import http_protocol
from server.runtimes import prepare_data_dir
from server.settings import Settings
from storage import Storage
from storage.sqlite import SqliteStorage

logger = logging.getLogger("threadline")


class ThreadlineServer(uvicorn.Server):
    """uvicorn, but on SIGTERM/SIGINT the conversations are stopped and the live streams
    ended *before* uvicorn waits for connections to close."""

    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        super().__init__(config)
        self._app = app

    async def startup(self, sockets: list[Any] | None = None) -> None:
        _watch_children_with_pidfds()
        await super().startup(sockets)

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        from server.app import prepare_shutdown

        await prepare_shutdown(self._app)
        await super().shutdown(sockets)


def _watch_children_with_pidfds() -> None:
    """Python 3.11 reaps each command with a thread of its own; a pidfd watcher does it
    from the event loop (3.12 does so by default). Called in the running loop."""
    if sys.version_info < (3, 12) and hasattr(os, "pidfd_open"):
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.get_event_loop_policy().set_child_watcher(watcher)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    try:
        if arguments.command == "serve":
            return serve(_settings(arguments))
        if arguments.command == "keys":
            return asyncio.run(_keys(arguments))
        if arguments.command in ("export", "import"):
            return _transfer(arguments)
        if arguments.command == "sandbox":
            return _build_sandbox_image(arguments.tag, arguments.force)
    except ValueError as exc:
        parser.error(str(exc))
    return 2


def _transfer(arguments: argparse.Namespace) -> int:
    try:
        with transfer.client_for(arguments.url, arguments.api_key) as client:
            if arguments.command == "export":
                transfer.export_conversation(
                    client,
                    arguments.conversation_id,
                    arguments.output,
                    lines={"json": False, "jsonl": True}.get(arguments.format),
                    include_hidden=arguments.include_hidden,
                )
            else:
                answer = transfer.import_recording(
                    client,
                    arguments.file,
                    title=arguments.title,
                    conversation_id=arguments.conversation_id,
                )
                print(answer["conversation_id"])
    except transfer.TransferError as exc:
        print(f"threadline {arguments.command}: {exc}", file=sys.stderr)
        return 1
    except httpx2.HTTPError as exc:
        print(
            f"threadline {arguments.command}: cannot talk to {arguments.url}: {exc} "
            "(is `threadline serve` running there? see --url)",
            file=sys.stderr,
        )
        return 1
    return 0


def serve(settings: Settings) -> int:
    # Imported here: the app pulls in every agent (the openai client alone takes a
    # second), which `keys`, `export` and `import` do not need.
    from server.app import create_app

    logs.configure(settings.log_level)
    if not _is_loopback(settings.host):
        logger.warning(
            "listening on %s: unless API keys exist (threadline keys create), anyone who can "
            "reach this address can use the server",
            settings.host,
        )
    for warning in prepare_data_dir(settings):
        logger.warning("%s", warning)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=http_protocol(settings.header_timeout),
        log_level=settings.log_level,
        ws_ping_interval=settings.heartbeat_interval,
        ws_ping_timeout=settings.heartbeat_interval * 2,
        ws_per_message_deflate=False,
        ws_max_size=settings.max_message_bytes,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    logs.redact_uvicorn()  # after uvicorn.Config, which installs its own logging setup
    ThreadlineServer(config, app).run()
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
    from runtime import RuntimeFailure
    from runtime.image import build_image

    try:
        asyncio.run(build_image(tag, force=force, log=lambda line: print(line, file=sys.stderr)))
    except RuntimeFailure as exc:
        print(f"threadline sandbox build: {exc}", file=sys.stderr)
        return 1
    return 0


def _settings(arguments: argparse.Namespace) -> Settings:
    return Settings.from_env(
        host=getattr(arguments, "host", None),
        port=getattr(arguments, "port", None),
        data_dir=arguments.data_dir,
        database=getattr(arguments, "database", None),
        agent=getattr(arguments, "agent", None),
        log_level=getattr(arguments, "log_level", None),
    )


def _parser() -> argparse.ArgumentParser:
    environment = "\n".join(
        f"  {name:32} {text} (default {default})" for name, default, text in Settings.documented()
    )
    parser = argparse.ArgumentParser(
        prog="threadline",
        description="An event-streaming server for AI-agent conversations.",
        epilog=f"environment variables (flags win):\n{environment}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the server")
    serve_parser.add_argument("--host", help="interface (default 127.0.0.1)")
    serve_parser.add_argument("--port", type=int, help="port (default 3000)")
    serve_parser.add_argument("--data-dir", type=Path, help="data directory (default ./data)")
    serve_parser.add_argument(
        "--database", help="postgresql://... for the log and stores (default: SQLite in --data-dir)"
    )
    serve_parser.add_argument("--agent", help="default agent (default demo)")
    serve_parser.add_argument(
        "--log-level", choices=["critical", "error", "warning", "info", "debug"]
    )

    keys = commands.add_parser("keys", help="manage API keys (turns authentication on)")
    keys.add_argument("--data-dir", type=Path, help="data directory (default ./data)")
    key_actions = keys.add_subparsers(dest="action", required=True)
    create = key_actions.add_parser("create", help="create a key and print it once")
    create.add_argument("--user", required=True)
    create.add_argument("--label", default="")
    listing = key_actions.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--user")
    revoke = key_actions.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id", type=int)

    exporting = commands.add_parser(
        "export", help="write a conversation's trajectory to a file (from a running server)"
    )
    exporting.add_argument("conversation_id")
    exporting.add_argument(
        "-o", "--output", default="-", help="file to write (default stdout); .jsonl: JSON Lines"
    )
    exporting.add_argument(
        "--format", choices=["json", "jsonl"], help="default: from the file name, else json"
    )
    exporting.add_argument(
        "--include-hidden", action="store_true", help="keep events marked hidden"
    )
    importing = commands.add_parser(
        "import", help="create a conversation from a recorded trajectory (on a running server)"
    )
    importing.add_argument("file", help="a trajectory (.json) or JSON Lines (.jsonl); - for stdin")
    importing.add_argument("--title")
    importing.add_argument("--conversation-id")
    for command in (exporting, importing):
        command.add_argument(
            "--url", default=transfer.default_url(), help="the server (default $THREADLINE_URL "
            "or http://$THREADLINE_HOST:$THREADLINE_PORT, i.e. http://127.0.0.1:3000)",
        )  # fmt: skip
        command.add_argument(
            "--api-key",
            default=os.environ.get("THREADLINE_API_KEY"),
            help="API key, when the server requires one (default $THREADLINE_API_KEY)",
        )
    sandbox = commands.add_parser("sandbox", help="the Docker sandbox image")
    sandbox_actions = sandbox.add_subparsers(dest="action", required=True)
    build = sandbox_actions.add_parser(
        "build", help="build the sandbox image from Debian packages (no registry needed)"
    )
    build.add_argument("--tag", default="threadline-sandbox:latest", help="image name")
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
