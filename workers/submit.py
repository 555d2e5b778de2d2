"""Stage 1, submit: send the job to its vendor once, record the vendor's task id and cost, schedule the first poll.

The double charge is the failure to avoid: the intent (`submit_started_at`) is recorded before the POST and the
vendor's task id after it. A submit that finds an intent with no task id does not POST again blindly: the job
fails with `submit_outcome_unknown`, unless the provider's settings allow a resubmit.
"""

from __future__ import annotations

from datetime import timedelta

from celery import Task

from shared import lifecycle
from shared.constants import SUBMIT_TASK
from shared.errors import GenqueueError, SubmitOutcomeUnknown, TransientProviderError
from shared.models import Cost, Job, JobStatus, utcnow
from shared.providers.base import is_success
from shared.providers.client import SendFailed, redact, send
from shared.providers.registry import get_adapter
from shared.storage import StorageInputs
from workers import context
from workers.app import genqueue_task
from workers.steps import fail, move_on, retry_or_fail, run_step


@genqueue_task(SUBMIT_TASK)
def submit(self: Task, job_id: str) -> None:
    """Submit job `job_id` to its vendor (at most once per accepted answer)."""
    lease = context.settings().provider_timeout_seconds * 1.5 + 30
    run_step(self, job_id, "submit", lease, submit_job)


def submit_job(job: Job, task_id: str) -> None:
    """The submit step for a claimed job."""
    if job.status is not JobStatus.QUEUED:
        return
    try:
        config = context.settings().provider(job.provider)
        if job.submit_started_at is not None and not config.allow_resubmit:
            raise SubmitOutcomeUnknown(
                f"an earlier submit to {job.provider} started at {job.submit_started_at.isoformat()} may have been"
                " accepted; not resubmitting, so the job is not paid for twice"
            )
        adapter = get_adapter(config.dialect)
        request = adapter.build_submit(job.request, config, StorageInputs(context.storage()))
    except GenqueueError as exc:
        fail(job.id, task_id, exc)
        return
    now = utcnow()
    if (
        context.store().update(job.id, lambda j: lifecycle.advance(j, task_id, now, step=j.step, submit_started_at=now))
        is None
    ):
        return
    answer = None
    try:
        answer = send(context.http(), request, config.api_key)
        result = adapter.parse_submit(answer)
    except SendFailed as exc:
        if exc.sent and not config.allow_resubmit:
            fail(job.id, task_id, SubmitOutcomeUnknown(f"submit to {job.provider} sent but its answer was lost: {exc}"))
        else:
            retry_or_fail(job.id, task_id, "submit", exc, submit_started_at=None)
        return
    except TransientProviderError as exc:
        if answer is not None and is_success(answer) and not config.allow_resubmit:
            # a 2xx we cannot read: the vendor most likely accepted (and charged) the job
            message = f"{job.provider} accepted the submit but its answer was unreadable: {exc.message}"
            fail(job.id, task_id, SubmitOutcomeUnknown(redact(message, config.api_key)))
        else:  # a refusal (429, 5xx): the vendor did not take the job, so submitting again is safe
            retry_or_fail(job.id, task_id, "submit", exc, exc.retry_after, submit_started_at=None)
        return
    except GenqueueError as exc:
        exc.message = redact(exc.message, config.api_key)
        fail(job.id, task_id, exc)
        return
    settings = context.settings()
    cost = result.cost if (result.cost.credits is not None or result.cost.usd is not None) else job.cost
    first_poll = utcnow() + timedelta(seconds=lifecycle.first_poll_delay_seconds(settings, result.estimated_seconds))
    move_on(
        job.id,
        task_id,
        JobStatus.SUBMITTED,
        lifecycle.new_step("poll", first_poll),
        provider_task_id=result.task_id,
        cost=Cost.model_validate(cost.model_dump()),
    )
