"""Session fixtures for the real servers: redis-server and moto's S3 server, each started and stopped by pid.

A missing server binary fails the test run in CI (CI=true) instead of skipping silently.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import ServerProcess, free_port, port_open


def _require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make setup installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh redis-server on a free port, with AOF on as shipped in infra/redis.conf."""
    binary = _require_binary("redis-server")
    workdir = tmp_path_factory.mktemp("redis")
    port = free_port()
    server = ServerProcess(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
        ],
        workdir / "redis.log",
    )
    server.wait_until(lambda: port_open(port), what="redis-server")
    yield f"redis://127.0.0.1:{port}/0"
    server.stop()


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server as a real HTTP endpoint on a free port; AWS credentials are set to test values."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    workdir = tmp_path_factory.mktemp("moto")
    port = free_port()
    server = ServerProcess(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], workdir / "moto.log"
    )
    server.wait_until(lambda: port_open(port), what="moto server")
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def artifacts_dir() -> Path:
    """Where tests leave files worth keeping (screenshots, logs): test-artifacts/ at the repository root."""
    path = Path(__file__).resolve().parents[2] / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
