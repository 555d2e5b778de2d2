"""An ended job with nothing left to do expires after the retention; given a step again (a webhook redelivery) it
is kept until that step ends too; a job that has not ended never expires."""

from __future__ import annotations

from datetime import timedelta

import fakeredis

from shared import lifecycle
from shared.constants import JOB_KEY
from shared.models import GenerationRequest, Job, JobStatus, utcnow
from shared.store import JobStore

KEY = JOB_KEY.format(job_id="job_x")


def test_an_ended_job_expires_and_is_kept_while_it_has_a_step_again() -> None:
    store = JobStore(fakeredis.FakeRedis(), retention_seconds=3600)
    now = utcnow()
    store.create(
        Job(
            id="job_x",
            provider="sandbox",
            request=GenerationRequest(model="sandbox-image"),
            deadline_at=now + timedelta(hours=1),
            step=lifecycle.new_step("submit", now),
        )
    )
    store.update("job_x", lambda job: job.model_copy(update={"status": JobStatus.RUNNING}))
    assert store.redis.ttl(KEY) == -1
    store.update("job_x", lambda job: job.model_copy(update={"status": JobStatus.SUCCEEDED, "step": None}))
    assert 0 < store.redis.ttl(KEY) <= 3600
    redelivery = lifecycle.new_step("deliver_webhook", now)
    store.update("job_x", lambda job: job.model_copy(update={"step": redelivery}))
    assert store.redis.ttl(KEY) == -1
    store.update("job_x", lambda job: job.model_copy(update={"step": None}))
    assert 0 < store.redis.ttl(KEY) <= 3600
