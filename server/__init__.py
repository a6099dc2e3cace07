"""The Starlette app, streaming, the session manager, agents and the CLI."""
