"""Transient vendor faults through real workers: retried with backoff, Retry-After honoured, one accepted submit."""

from __future__ import annotations

import time

import httpx
import pytest

from infra.local.processes import ServerProcess
from producer.api import Producer
from shared.settings import Settings

pytestmark = pytest.mark.integration


def test_429_on_submit_is_retried_after_retry_after_and_paid_once(
    workers: ServerProcess, settings: Settings, sandbox_url: str
) -> None:
    httpx.post(
        f"{sandbox_url}/_control/faults",
        json={"target": "submit", "dialect": "vicsee", "status": 429, "retry_after": 1, "count": 2},
    )
    before = httpx.get(f"{sandbox_url}/_control/stats").json()
    started = time.monotonic()
    producer = Producer(settings)
    job = producer.submit("vicsee", "sora-2", "retry me", {"duration": 10})
    final = producer.wait(job.id, timeout=60)
    assert final.status.value == "succeeded", final.error
    assert time.monotonic() - started >= 2.0  # two refusals, each waited out for its Retry-After of 1 s
    after = httpx.get(f"{sandbox_url}/_control/stats").json()
    assert after["submits"]["vicsee"] == before["submits"].get("vicsee", 0) + 1
    assert after["submit_attempts"]["vicsee"] == before["submit_attempts"].get("vicsee", 0) + 3
    assert after["duplicate_submits"] == before["duplicate_submits"]


def test_5xx_on_poll_is_retried_then_succeeds(workers: ServerProcess, settings: Settings, sandbox_url: str) -> None:
    httpx.post(
        f"{sandbox_url}/_control/faults", json={"target": "poll", "dialect": "veogen", "status": 503, "count": 2}
    )
    producer = Producer(settings)
    job = producer.submit("veogen", "gpt-4o-image", "poll through a 503")
    assert producer.wait(job.id, timeout=60).status.value == "succeeded"


def test_retries_spent_fail_with_the_error_code(workers: ServerProcess, settings: Settings, sandbox_url: str) -> None:
    httpx.post(
        f"{sandbox_url}/_control/faults", json={"target": "submit", "dialect": "gateway", "status": 500, "count": 6}
    )
    producer = Producer(settings)
    job = producer.submit("gateway", "veo3", "always failing")
    final = producer.wait(job.id, timeout=90)
    assert final.status.value == "failed"
    assert final.error is not None and final.error.code == "provider_error"


def test_expired_output_link_ends_as_download_failed_naming_the_host(
    workers: ServerProcess, settings: Settings, sandbox_url: str
) -> None:
    httpx.post(f"{sandbox_url}/_control/faults", json={"target": "download", "status": 403, "count": 1})
    producer = Producer(settings)
    job = producer.submit("sandbox", "sandbox-image", "expired link")
    final = producer.wait(job.id, timeout=60)
    assert final.status.value == "failed"
    assert final.error is not None and final.error.code == "download_failed"
    assert "127.0.0.1" in final.error.message


def test_insufficient_credits_fails_the_job(workers: ServerProcess, settings: Settings, sandbox_url: str) -> None:
    httpx.post(f"{sandbox_url}/_control/balance", json={"dialect": "veo3api", "balance": 100})
    try:
        producer = Producer(settings)
        job = producer.submit("veo3api", "veo3_fast", "too expensive")
        final = producer.wait(job.id, timeout=60)
    finally:
        httpx.post(f"{sandbox_url}/_control/balance", json={"dialect": "veo3api", "balance": 1_000_000_000})
    assert final.status.value == "failed"
    assert final.error is not None and final.error.code == "insufficient_credits"
    assert "Need 240" in final.error.message
