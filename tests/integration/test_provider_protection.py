"""Vendor protection shared by all workers: in-flight cap, rate limit, and the pause after insufficient credits."""

from __future__ import annotations

import time

import httpx
import pytest

from infra.local.processes import ServerProcess
from producer.api import Producer
from shared.models import JobStatus
from shared.settings import Settings
from tests.integration.test_pipeline import run_cli

pytestmark = pytest.mark.integration

AT_VENDOR = {JobStatus.SUBMITTED, JobStatus.RUNNING}


def test_in_flight_cap_is_never_exceeded(workers: ServerProcess, settings: Settings) -> None:
    producer = Producer(settings)
    jobs = [producer.submit("capped", "sandbox-video", f"capped {n}") for n in range(3)]
    most_at_vendor = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        current = [producer.get(job.id) for job in jobs]
        most_at_vendor = max(most_at_vendor, sum(job.status in AT_VENDOR for job in current))
        if all(job.status.terminal for job in current):
            break
        time.sleep(0.05)
    assert [producer.get(job.id).status for job in jobs] == [JobStatus.SUCCEEDED] * 3
    assert most_at_vendor == 1


def test_rate_limit_spaces_submits(workers: ServerProcess, settings: Settings, sandbox_url: str) -> None:
    producer = Producer(settings)
    before = httpx.get(f"{sandbox_url}/_control/stats").json()["submits"].get("sandbox", 0)
    started = time.monotonic()
    jobs = [producer.submit("throttled", "sandbox-image", f"throttled {n}") for n in range(5)]
    while httpx.get(f"{sandbox_url}/_control/stats").json()["submits"].get("sandbox", 0) < before + 5:
        assert time.monotonic() - started < 60
        time.sleep(0.05)
    # a bucket of 1 refilled at 2/s lets 5 submits through no faster than 2 s
    assert time.monotonic() - started >= 1.9
    assert all(producer.wait(job.id, timeout=60).status is JobStatus.SUCCEEDED for job in jobs)


def test_insufficient_credits_pauses_the_provider_until_resumed(
    workers: ServerProcess, settings: Settings, sandbox_url: str, pipeline_env: dict[str, str]
) -> None:
    producer = Producer(settings)
    httpx.post(f"{sandbox_url}/_control/balance", json={"dialect": "veo3api", "balance": 100})
    try:
        first = producer.submit("veo3api", "veo3_fast", "out of credits")
        failed = producer.wait(first.id, timeout=60)
        assert failed.error is not None and failed.error.code == "insufficient_credits"
        attempts_before = httpx.get(f"{sandbox_url}/_control/stats").json()["submit_attempts"]["veo3api"]
        held = [producer.submit("veo3api", "veo3_fast", f"held {n}") for n in range(3)]
        time.sleep(2.0)
        # held back: no storm of refusals bought at the vendor, the jobs wait queued
        attempts = httpx.get(f"{sandbox_url}/_control/stats").json()["submit_attempts"]["veo3api"]
        assert attempts == attempts_before
        assert all(producer.get(job.id).status is JobStatus.QUEUED for job in held)
        status = run_cli(pipeline_env, "provider", "status")
        assert status.returncode == 0
        rows = status.stdout.splitlines()
        assert any(line.startswith("veo3api") and "PAUSED" in line for line in rows), status.stdout
    finally:
        httpx.post(f"{sandbox_url}/_control/balance", json={"dialect": "veo3api", "balance": 1_000_000_000})
    resumed = run_cli(pipeline_env, "provider", "resume", "veo3api")
    assert resumed.returncode == 0, resumed.stderr
    assert all(producer.wait(job.id, timeout=60).status is JobStatus.SUCCEEDED for job in held)
    unknown = run_cli(pipeline_env, "provider", "resume", "nosuch")
    assert unknown.returncode == 2 and "unknown provider" in unknown.stderr
