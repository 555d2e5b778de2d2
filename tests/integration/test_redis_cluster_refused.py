"""A Redis Cluster node is refused at start-up, with one line naming the setting, by the command line, a worker,
beat and the API (Celery's broker cannot use Redis Cluster: celery/celery#2852)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.processes import ServerProcess, free_port, port_open
from tests.integration.test_pipeline import GENQUEUE, run_cli

pytestmark = pytest.mark.integration

REASON = "is a Redis Cluster node; genqueue needs one Redis (with Sentinel for high availability)"


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A single redis-server in cluster mode (enough for INFO to say cluster_enabled:1)."""
    workdir = tmp_path_factory.mktemp("cluster")
    port = free_port()
    while port > 55535:  # cluster mode also listens on port + 10000
        port = free_port()
    binary = shutil.which("redis-server")
    assert binary is not None
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
            "--cluster-config-file", str(workdir / "nodes.conf"), "--dir", str(workdir), "--save", ""]  # fmt: skip
    server = ServerProcess(argv, workdir / "redis.log")
    server.wait_until(lambda: port_open(port), what="redis-server --cluster-enabled yes")
    yield f"redis://127.0.0.1:{port}/0"
    server.stop()


def test_the_command_line_refuses_a_cluster_node_in_one_line(cluster_url: str) -> None:
    result = run_cli({"GENQUEUE_REDIS_URL": cluster_url}, "status", "job_x")
    assert result.returncode == 2
    assert result.stderr.startswith("genqueue: error: GENQUEUE_STORE_URL (or GENQUEUE_REDIS_URL) " + REASON)
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("role", ["worker", "beat", "api"])
def test_a_process_refuses_to_start_on_a_cluster_node(cluster_url: str, role: str, tmp_path: Path) -> None:
    argv = {
        "worker": [sys.executable, "-m", "celery", "-A", "workers", "worker", "--pool", "threads", "-c", "1"],
        "beat": [sys.executable, "-m", "celery", "-A", "workers", "beat", "--schedule", str(tmp_path / "schedule")],
        "api": [GENQUEUE, "api", "--port", str(free_port())],
    }[role]
    env = {"GENQUEUE_REDIS_URL": cluster_url, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert REASON in result.stdout + result.stderr
