"""Test-wide fixtures: the real servers integration tests run against live in tests/support/servers.py."""

pytest_plugins = ["tests.support.servers"]
