"""Monitoring on real parts: Flower (behind basic auth) sees our workers and tasks; job metrics for Prometheus."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra.local.processes import ServerProcess, free_port
from infra.local.stack import LocalStack
from producer.api import Producer
from shared.settings import Settings
from tests.integration.conftest import settings_for
from tests.integration.test_pipeline import GENQUEUE, run_cli

pytestmark = pytest.mark.integration
AUTH = ("admin", "s3cret")


@pytest.fixture(scope="module")
def flower(
    pipeline_env: dict[str, str], workers: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    stack = LocalStack(tmp_path_factory.mktemp("flower"), env=pipeline_env)
    url = stack.start_flower(basic_auth=":".join(AUTH))
    wait_until_flower_sees_events(url, Producer(settings_for(pipeline_env)))
    yield url
    stack.stop()


def wait_until_flower_sees_events(url: str, producer: Producer, timeout: float = 60.0) -> None:
    """Flower answers HTTP before its event receiver is connected; task events sent until then are never shown.
    Submit small jobs until one of them appears in Flower."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = producer.submit("sandbox", "sandbox-image", "warm-up")
        producer.wait(job.id, timeout=30)
        tasks = httpx.get(f"{url}/api/tasks", auth=AUTH, timeout=10).json()
        if any(job.id in str(task.get("args")) and task["name"] == "genqueue.submit" for task in tasks.values()):
            return
    raise TimeoutError("Flower showed no task events")


def test_flower_shows_workers_and_tasks_by_job_id_never_the_prompt(flower: str, settings: Settings) -> None:
    assert httpx.get(f"{flower}/api/workers").status_code == 401  # never without auth
    secret_prompt = f"confidential prompt {uuid.uuid4().hex}"
    job = Producer(settings).submit("sandbox", "sandbox-image", secret_prompt)
    assert Producer(settings).wait(job.id, timeout=60).status.value == "succeeded"
    deadline = time.monotonic() + 30
    names: set[str] = set()
    while time.monotonic() < deadline:
        tasks = httpx.get(f"{flower}/api/tasks", auth=AUTH, timeout=10).json()
        mine = {task_id: task for task_id, task in tasks.items() if job.id in str(task.get("args"))}
        names = {task["name"] for task in mine.values()}
        if {"genqueue.submit", "genqueue.poll", "genqueue.finalize"} <= names:
            break
        time.sleep(0.5)
    assert {"genqueue.submit", "genqueue.poll", "genqueue.finalize"} <= names, names
    assert all(task["args"] == f"['{job.id}']" for task in mine.values())
    assert secret_prompt not in json.dumps(tasks)
    workers = httpx.get(f"{flower}/api/workers", auth=AUTH, params={"refresh": "1"}, timeout=30).json()
    assert any(name.startswith("worker@") for name in workers), list(workers)
    metrics = httpx.get(f"{flower}/metrics", auth=AUTH, timeout=10).text
    assert "flower_events_total" in metrics


def test_stats_and_the_prometheus_exporter_count_jobs(
    workers: ServerProcess, pipeline_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    producer = Producer(settings)
    job = producer.submit("sandbox", "sandbox-image", "counted")
    assert producer.wait(job.id, timeout=60).status.value == "succeeded"
    result = run_cli(pipeline_env, "stats", "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert "sandbox" in json.dumps(stats) and "succeeded" in json.dumps(stats)
    table = run_cli(pipeline_env, "stats")
    assert table.returncode == 0 and "sandbox" in table.stdout

    port = free_port()
    exporter = ServerProcess(
        [GENQUEUE, "metrics", "serve", "--port", str(port)], tmp_path / "exporter.log", env=pipeline_env
    )
    try:
        exporter.wait_until(lambda: _answers(f"http://127.0.0.1:{port}/metrics"), what="metrics exporter")
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        exporter.stop()
    ended = 'genqueue_jobs_ended_total{code="none",provider="sandbox",status="succeeded"}'
    samples = [line for line in text.splitlines() if line.startswith(ended)]
    assert samples and float(samples[0].split()[-1]) >= 1
    for counted in ("genqueue_polls_total", 'genqueue_vendor_requests_total{kind="submit",provider="sandbox"'):
        assert counted in text


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
