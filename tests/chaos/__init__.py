"""The chaos harness (``scripts/chaos``): the real server abused — kill -9 and SIGTERM
under load, a reconnect storm, a full disk, consumers that never read — and the log's
and the streams' guarantees checked afterwards. ``tests/chaos/test_chaos.py`` runs a
short version of every scenario."""
