"""Stage 1, submit: send the job to its vendor once, record the vendor's task id and cost, schedule the first poll.

The double charge is the failure to avoid: the intent (`submit_started_at`) is recorded before the POST and the
vendor's task id after it. A submit that finds an intent with no task id does not POST again blindly: the job
fails with `submit_outcome_unknown`, unless the provider's settings allow a resubmit.
"""

from __future__ import annotations

import time
from datetime import timedelta

from celery import Task

from shared import costs, lifecycle
from shared.batch import BatchStore
from shared.constants import SUBMIT_TASK
from shared.errors import (
    GenqueueError,
    InsufficientCredits,
    JobTimeout,
    ProviderUnavailable,
    SubmitOutcomeUnknown,
    Transient,
)
from shared.models import Cost, Job, JobStatus, utcnow
from shared.providers.base import HttpAnswer, is_success
from shared.providers.client import SendFailed, send
from shared.providers.registry import get_adapter
from shared.queueing import publish_step
from shared.settings import ProviderConfig
from shared.storage import StorageInputs
from workers import context
from workers.app import app, genqueue_task
from workers.steps import cancel, fail, move_on, retry_or_fail, run_step


@genqueue_task(SUBMIT_TASK)
def submit(self: Task, job_id: str) -> None:
    """Submit job `job_id` to its vendor (at most once per accepted answer)."""
    lease = lifecycle.vendor_call_lease_seconds(context.settings())
    run_step(self, job_id, "submit", lease, submit_job)


def submit_job(job: Job, task_id: str) -> None:
    """The submit step for a claimed job."""
    if job.status is not JobStatus.QUEUED:
        return
    if job.batch_id is not None:
        BatchStore(context.store().redis).mark_started(job.provider, job.id)
        if job.submit_by is not None and job.submit_started_at is None and utcnow() >= job.submit_by:
            cancel(job.id, task_id, f"the batch deadline {job.submit_by.isoformat()} passed before it was submitted")
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
        task_scope = adapter.task_scope(job.request, config)
    except GenqueueError as exc:
        fail(job.id, task_id, exc)
        return
    if not admitted(job, task_id, config):
        return
    now = utcnow()
    intent = job.charge.model_copy(update={"dialect": config.dialect})
    if (
        context.store().update(
            job.id, lambda j: lifecycle.advance(j, task_id, now, step=j.step, submit_started_at=now, charge=intent)
        )
        is None
    ):
        return
    answer = None
    guard = context.guard()
    try:
        answer = send(context.http(), request, config.api_key, context.settings().provider_timeout_seconds)
        result = adapter.parse_submit(answer)
    except GenqueueError as exc:
        # the vendor is failing (5xx, transport) or out of credits: hold other submits back
        if isinstance(exc, InsufficientCredits):
            guard.pause_for_credits(config.name, time.time(), exc.message)
        elif isinstance(exc, ProviderUnavailable):
            guard.record_failure(config, time.time())
        guard.free_slot(config.name, job.id)
        handle_submit_error(job, task_id, config, exc, answer)
        outcome = costs.Outcome.MAYBE_ACCEPTED if may_have_been_accepted(exc, answer) else costs.Outcome.NOT_ACCEPTED
        context.store().update(job.id, lambda j: lifecycle.unanswered_after_cancel(j, outcome, utcnow()))
        return
    guard.record_success(config.name, job.id)
    settings = context.settings()
    charge = intent.model_copy(update={"reported": Cost.model_validate(result.cost.model_dump())})
    first_poll = utcnow() + timedelta(seconds=lifecycle.first_poll_delay_seconds(settings, result.estimated_seconds))
    written = move_on(
        job.id,
        task_id,
        JobStatus.SUBMITTED,
        lifecycle.new_step("poll", first_poll),
        provider_task_id=result.task_id,
        provider_task_scope=task_scope,
        charge=charge,
        # until the job ends it counts as the vendor's figure, or the estimate where the vendor gives none
        cost=costs.amount(charge, "unknown"),
    )
    if written is None:
        # canceled during the POST: the vendor took it all the same, so the canceled job follows its task (holding
        # the slot) until the vendor ends it; a job gone some other way frees the slot now
        now = utcnow()
        late = context.store().update(
            job.id, lambda j: lifecycle.accepted_after_cancel(j, now, result.task_id, task_scope, charge)
        )
        if late is None:
            guard.free_slot(config.name, job.id)
        elif late.step is not None and late.step.name == "poll":
            publish_step(app, settings, job.id, late.step, now)


def may_have_been_accepted(exc: GenqueueError, answer: HttpAnswer | None) -> bool:
    """Whether the vendor may have taken a submit that ended in `exc`: sent with its answer lost, or a 2xx answer
    genqueue could not read. A refusal (4xx, 429, 5xx) or a request never sent was not taken."""
    if isinstance(exc, SendFailed):
        return exc.sent
    return isinstance(exc, Transient) and answer is not None and is_success(answer)


def admitted(job: Job, task_id: str, config: ProviderConfig) -> bool:
    """Take a rate-limit token and an in-flight slot for the job, or reschedule it to wait (False).

    A job over a limit waits by rescheduling its submit step, holding no worker; its retry budget is not touched.
    Past its deadline, a job still waiting fails with `timeout`.
    """
    settings = context.settings()
    ttl = settings.job_timeout_seconds + 3600
    admission = context.guard().admit(config, job.id, time.time(), ttl_seconds=ttl)
    if admission.allowed:
        return True
    if utcnow() > job.deadline_at:
        fail(job.id, task_id, JobTimeout(f"{job.provider} had no capacity before the deadline ({admission.reason})"))
        return False
    wait = min(admission.wait_seconds, settings.capacity_recheck_seconds, settings.max_countdown_seconds)
    delay = wait * context.rng().uniform(1.0, 1.25)
    assert job.step is not None
    step = lifecycle.new_step("submit", utcnow() + timedelta(seconds=delay), job.step.attempt, job.step.retries)
    move_on(job.id, task_id, None, step)
    return False


def handle_submit_error(
    job: Job, task_id: str, config: ProviderConfig, exc: GenqueueError, answer: HttpAnswer | None
) -> None:
    """Fail, or retry, a submit that did not return a task id, never risking a second charge."""
    if isinstance(exc, SendFailed):
        if may_have_been_accepted(exc, answer) and not config.allow_resubmit:
            fail(job.id, task_id, SubmitOutcomeUnknown(f"submit to {job.provider} sent but its answer was lost: {exc}"))
        else:
            retry_or_fail(job.id, task_id, "submit", exc, submit_started_at=None)
    elif isinstance(exc, Transient):
        if may_have_been_accepted(exc, answer) and not config.allow_resubmit:
            # a 2xx we cannot read: the vendor most likely accepted (and charged) the job
            message = f"{job.provider} accepted the submit but its answer was unreadable: {exc.message}"
            fail(job.id, task_id, SubmitOutcomeUnknown(message))
        else:  # a refusal (429, 5xx): the vendor did not take the job, so submitting again is safe
            retry_or_fail(job.id, task_id, "submit", exc, exc.retry_after, submit_started_at=None)
    else:
        fail(job.id, task_id, exc)
