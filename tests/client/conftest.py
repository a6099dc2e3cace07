"""The server fixtures of tests/server."""

from tests.server.conftest import fresh_server, server

__all__ = ["fresh_server", "server"]
