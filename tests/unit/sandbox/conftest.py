"""Fixtures for the sandbox tests: one in-process sandbox for the session, reset before every test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sandbox import SandboxConfig, SandboxServer, start_in_thread


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    """A sandbox on a free port whose tasks finish at the first poll (delay 0) unless a test changes it."""
    server = start_in_thread(SandboxConfig(port=0, delay_seconds=0.0))
    yield server
    server.stop()


@pytest.fixture
def client(sandbox_server: SandboxServer) -> Iterator[httpx.Client]:
    """An httpx client on the sandbox, after /_control/reset."""
    with httpx.Client(base_url=sandbox_server.base_url, timeout=10.0) as http:
        http.post("/_control/reset").raise_for_status()
        yield http
