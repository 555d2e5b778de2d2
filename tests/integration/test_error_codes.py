"""Every error code of INTERFACE.md reached by a job through real workers, each provoked the way it happens.

(`provider_error`, `download_failed`, `insufficient_credits`, `generation_failed` and `canceled` are provoked in
test_transient_faults.py and test_pipeline.py; `submit_outcome_unknown` in tests/chaos and test_submit_step.py.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from infra.local.processes import ServerProcess
from infra.local.stack import LocalStack
from producer.api import Producer
from shared.models import Job
from shared.settings import Settings
from tests.integration.conftest import settings_for

pytestmark = pytest.mark.integration


def control(sandbox_url: str, what: str, body: dict[str, Any]) -> None:
    httpx.post(f"{sandbox_url}/_control/{what}", json=body).raise_for_status()


def failed_with(job: Job, code: str) -> str:
    """The job's error message, after checking it failed with `code`."""
    assert job.status.value == "failed", (job.status, job.error)
    assert job.error is not None and job.error.code == code, job.error
    return job.error.message


def test_429_until_the_budget_is_spent_ends_rate_limited(
    workers: ServerProcess, settings: Settings, sandbox_url: str
) -> None:
    refusals = settings.retry_budget("rate_limited") + 1
    control(sandbox_url, "faults", {"target": "submit", "dialect": "veo3api", "status": 429, "count": refusals})
    producer = Producer(settings)
    job = producer.submit("veo3api", "veo3_fast", "never let through")
    message = failed_with(producer.wait(job.id, timeout=90), "rate_limited")
    assert "veo3api" in message
    assert httpx.get(f"{sandbox_url}/_control/faults").json() == []  # every refusal used: the budget stopped it


def test_a_vendor_that_never_finishes_ends_as_timeout(
    workers: ServerProcess, settings: Settings, sandbox_url: str
) -> None:
    control(sandbox_url, "config", {"delay_seconds": 60})
    try:
        producer = Producer(settings.model_copy(update={"job_timeout_seconds": 1.5}))
        job = producer.submit("sandbox", "sandbox-image", "takes a minute")
        final = producer.wait(job.id, timeout=60)
    finally:
        control(sandbox_url, "config", {"delay_seconds": 0.5})
    message = failed_with(final, "timeout")
    assert final.provider_task_id is not None  # it was submitted and polled, then given up on
    assert "sandbox" in message


def test_a_key_the_vendor_refuses_ends_as_auth_failed(
    workers: ServerProcess, settings: Settings, sandbox_url: str
) -> None:
    control(sandbox_url, "config", {"api_keys": ["sk-some-other-key"]})
    try:
        producer = Producer(settings)
        job = producer.submit("vicsee", "sora-2", "wrong key", {"duration": 10})
        final = producer.wait(job.id, timeout=60)
    finally:
        control(sandbox_url, "config", {"api_keys": None})
    message = failed_with(final, "auth_failed")
    assert "sk-sandbox" not in message  # the key itself is never repeated


def test_a_request_the_vendor_refuses_ends_as_invalid_request(
    workers: ServerProcess, settings: Settings, sandbox_url: str
) -> None:
    control(sandbox_url, "faults", {"target": "submit", "dialect": "veogen", "status": 400, "count": 1})
    producer = Producer(settings)
    job = producer.submit("veogen", "gpt-4o-image", "refused by the vendor")
    failed_with(producer.wait(job.id, timeout=60), "invalid_request")


@pytest.fixture(scope="module")
def bucketless(pipeline_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A worker whose bucket does not exist, on its own Redis database so the main workers never see its jobs."""
    env = dict(pipeline_env)
    env["GENQUEUE_REDIS_URL"] = env["GENQUEUE_REDIS_URL"].rsplit("/", 1)[0] + "/1"
    env["GENQUEUE_S3_BUCKET"] = f"missing-{uuid.uuid4().hex[:8]}"
    stack = LocalStack(tmp_path_factory.mktemp("bucketless"), env=env)
    stack.start_workers(name="bucketless", concurrency=4)
    yield settings_for(env)
    stack.stop()


def test_storage_that_keeps_failing_ends_as_storage_error(bucketless: Settings) -> None:
    producer = Producer(bucketless)
    job = producer.submit("sandbox", "sandbox-image", "nowhere to put it")
    final = producer.wait(job.id, timeout=90)
    message = failed_with(final, "storage_error")
    assert "NoSuchBucket" in message
    assert final.outputs == []
    assert final.provider_task_id is not None  # generated and paid for; only the copy failed
