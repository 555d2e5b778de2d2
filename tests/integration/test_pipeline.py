"""A job from the command line to a verified webhook, through real worker processes, on real parts."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx
import pytest
import redis

from infra.local.processes import ServerProcess
from infra.local.webhook_receiver import WebhookReceiver
from producer.api import Producer
from sandbox.files import expected_sha256
from shared.errors import InvalidRequest
from shared.settings import Settings

GENQUEUE = str(Path(sys.executable).parent / "genqueue")

pytestmark = pytest.mark.integration


def run_cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GENQUEUE, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout, check=False
    )


def bucket_bytes(settings: Settings, key: str) -> bytes:
    s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url)
    return s3.get_object(Bucket=settings.s3_bucket, Key=key)["Body"].read()


def queue_lengths(settings: Settings) -> dict[str, int]:
    client = redis.Redis.from_url(settings.redis_url)
    return {name: int(client.llen(name)) for name in ("submit", "poll", "finalize", "webhooks")}


def job_count(settings: Settings) -> int:
    client = redis.Redis.from_url(settings.redis_url)
    return sum(1 for _ in client.scan_iter("genqueue:job:*"))


def test_cli_job_reaches_bucket_and_verified_webhook(
    workers: ServerProcess, pipeline_env: dict[str, str], settings: Settings, receiver: WebhookReceiver
) -> None:
    result = run_cli(
        pipeline_env,
        "submit",
        "--provider",
        "sandbox",
        "--model",
        "sandbox-video",
        "--prompt",
        "a flower opening",
        "--option",
        "duration=4",
        "--option",
        "aspect_ratio=16:9",
        "--webhook",
        receiver.url,
        "--metadata",
        "team=growth",
        "--wait",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["status"] == "succeeded"
    assert job["error"] is None and job["provider_task_id"]
    assert job["metadata"] == {"team": "growth"}
    [output] = job["outputs"]
    assert output["key"] == f"{settings.s3_prefix}{job['id']}/0.mp4"
    stored = bucket_bytes(settings, output["key"])
    assert len(stored) == output["size"] == 256 * 1024
    assert hashlib.sha256(stored).hexdigest() == output["sha256"]
    assert output["sha256"] == expected_sha256(job["provider_task_id"], 0, output["size"])
    assert output["content_type"] == "video/mp4"
    assert httpx.get(output["url"]).content == stored  # the presigned URL really serves the object

    event = receiver.wait_for(job["id"])
    assert event.verified, "standardwebhooks refused our signature"
    assert event.body["type"] == "job.succeeded"
    assert event.body["data"] == job
    assert event.headers["webhook-id"].startswith("msg_")


def test_refused_request_exits_2_and_enqueues_nothing(
    workers: ServerProcess, pipeline_env: dict[str, str], settings: Settings
) -> None:
    before_jobs, before_queues = job_count(settings), queue_lengths(settings)
    cases = [
        (["--provider", "nosuch", "--model", "m", "--prompt", "p"], "unknown provider"),
        (["--provider", "sandbox", "--model", "nosuch", "--prompt", "p"], "nosuch"),
        (["--provider", "sandbox", "--model", "sandbox-video", "--prompt", "p", "--option", "colour=red"], "colour"),
        (["--provider", "veo3api", "--model", "veo3_fast", "--prompt", "x" * 1500], "1000"),
        (["--provider", "sandbox", "--model", "sandbox-video", "--prompt", "p", "--option", "novalue"], "KEY=VALUE"),
        (
            ["--provider", "sandbox", "--model", "sandbox-video", "--prompt", "p", "--image", "/no/such/file.png"],
            "no such file",
        ),
    ]
    for args, reason in cases:
        result = run_cli(pipeline_env, "submit", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and reason in lines[0], (args, result.stderr)
    assert job_count(settings) == before_jobs
    assert queue_lengths(settings) == before_queues


def test_vendor_failure_fails_job_with_reason_and_webhook(
    workers: ServerProcess, pipeline_env: dict[str, str], sandbox_url: str, receiver: WebhookReceiver
) -> None:
    httpx.post(f"{sandbox_url}/_control/fail_next", json={"count": 1, "reason": "content policy", "dialect": "native"})
    result = run_cli(
        pipeline_env,
        "submit",
        "--provider",
        "sandbox",
        "--model",
        "sandbox-image",
        "--prompt",
        "p",
        "--webhook",
        receiver.url,
        "--wait",
        "--json",
    )
    assert result.returncode == 1, result.stderr
    job = json.loads(result.stdout)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "generation_failed"
    assert "content policy" in job["error"]["message"]
    assert receiver.wait_for(job["id"]).body["type"] == "job.failed"


def test_wait_timeout_exits_3_and_job_goes_on(
    workers: ServerProcess, pipeline_env: dict[str, str], settings: Settings, sandbox_url: str
) -> None:
    httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 3.0})
    try:
        result = run_cli(
            pipeline_env,
            "submit",
            "--provider",
            "sandbox",
            "--model",
            "sandbox-video",
            "--prompt",
            "slow",
            "--wait",
            "--timeout",
            "0.5",
            "--json",
        )
    finally:
        httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 0.5})
    assert result.returncode == 3, result.stderr
    job = json.loads(result.stdout)
    assert job["status"] in ("queued", "submitted", "running")
    final = Producer(settings).wait(job["id"], timeout=60)
    assert final.status.value == "succeeded"


def test_cancel_stops_job_and_fires_canceled_webhook(
    workers: ServerProcess,
    pipeline_env: dict[str, str],
    settings: Settings,
    sandbox_url: str,
    receiver: WebhookReceiver,
) -> None:
    httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 5.0})
    producer = Producer(settings)
    try:
        job = producer.submit("sandbox", "sandbox-video", "to cancel", webhook_url=receiver.url)
        producer.wait(job.id, timeout=1)
        result = run_cli(pipeline_env, "cancel", job.id)
    finally:
        httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 0.5})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [job.id, "canceled"]
    assert receiver.wait_for(job.id).body["type"] == "job.canceled"
    time.sleep(1.5)  # the poll chain must have stopped: the job stays canceled with no outputs
    final = producer.get(job.id)
    assert final.status.value == "canceled" and final.outputs == [] and final.error is not None
    assert final.error.code == "canceled"
    again = run_cli(pipeline_env, "cancel", job.id)  # canceling a canceled job is not an error
    assert again.returncode == 0 and again.stdout.split() == [job.id, "canceled"]


def test_status_of_unknown_job_exits_2(pipeline_env: dict[str, str]) -> None:
    result = run_cli(pipeline_env, "status", "job_nosuch")
    assert result.returncode == 2
    assert "no job" in result.stderr


def test_idempotency_key_gives_back_the_same_job(
    workers: ServerProcess, settings: Settings, pipeline_env: dict[str, str]
) -> None:
    producer = Producer(settings)
    first = producer.submit("sandbox", "sandbox-image", "same", idempotency_key="key-1")
    again = producer.submit("sandbox", "sandbox-image", "same", idempotency_key="key-1")
    assert again.id == first.id
    with pytest.raises(InvalidRequest, match="different request"):
        producer.submit("sandbox", "sandbox-image", "another prompt", idempotency_key="key-1")
    assert producer.wait(first.id, timeout=60).status.value == "succeeded"
    too_late = run_cli(pipeline_env, "cancel", first.id)  # a finished job cannot be canceled
    assert too_late.returncode == 1 and too_late.stdout.split() == [first.id, "succeeded"]
