"""Crash safety through the sweeper: a job whose task was lost still reaches its end."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from infra.local.processes import ServerProcess
from producer.api import Producer
from shared import lifecycle
from shared.models import GenerationRequest, Job, utcnow
from shared.settings import Settings

pytestmark = pytest.mark.integration


def test_a_job_whose_submit_task_was_never_published_is_resumed(workers: ServerProcess, settings: Settings) -> None:
    """As if the producer died between storing the job and publishing its task (or Redis lost the message)."""
    producer = Producer(settings)
    now = utcnow()
    job = Job(
        id="job_lost_submit_task",
        provider="sandbox",
        request=GenerationRequest(model="sandbox-image", prompt="orphan"),
        deadline_at=now + timedelta(minutes=5),
        step=lifecycle.new_step("submit", now),
    )
    producer.store.create(job)  # stored, never published
    final = producer.wait(job.id, timeout=60)
    assert final.status.value == "succeeded", final.error


def test_a_lost_poll_task_is_resumed_without_forking_a_second_chain(workers: ServerProcess, settings: Settings) -> None:
    producer = Producer(settings)
    job = producer.submit("sandbox", "sandbox-video", "lose my poll")
    # wait until it is being polled, then replace its step's task id as if that task had been lost
    deadline = utcnow() + timedelta(seconds=30)
    while producer.get(job.id).status.value not in ("submitted", "running") and utcnow() < deadline:
        time.sleep(0.05)
    lost = producer.store.update(
        job.id,
        lambda j: j.model_copy(update={"step": lifecycle.new_step("poll", utcnow())}) if j.step is not None else None,
    )
    assert lost is not None
    final = producer.wait(job.id, timeout=60)
    assert final.status.value == "succeeded", final.error
