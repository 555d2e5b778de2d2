"""How every step task runs: claim the step in the job store, do the work, record the outcome, publish the next.

A task runs its step only when the job store names the task's own id as the job's next step (lifecycle.claim):
a duplicate delivery, a stale task or a second chain finds another id and drops itself. The outcome is written
before the next task is published, so a crash in between leaves a job whose step is recorded and overdue,
never a task for a state that was not saved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from celery import Task

from shared import lifecycle
from shared.errors import GenqueueError, ProviderUnavailable, redact
from shared.lifecycle import Decision
from shared.models import Job, JobStatus, Step, StepName, VendorOutcome, utcnow
from shared.quarantine import UnreadableRecord
from shared.queueing import publish_step
from workers import context
from workers.app import app
from workers.leases import KEEPER

log = logging.getLogger("genqueue.workers")

StepHandler = Callable[[Job, str], None]


def run_step(task: Task, job_id: str, name: StepName, lease_seconds: float, handler: StepHandler) -> None:
    """Claim step `name` of job `job_id` for this task and run `handler(job, task_id)` if it is ours to run."""
    task_id = task.request.id
    assert task_id is not None
    now = utcnow()
    outcome: dict[str, lifecycle.Claim] = {}

    def take(job: Job) -> Job | None:
        claim, leased = lifecycle.claim(job, name, task_id, now, lease_seconds)
        outcome["claim"] = claim
        return leased

    try:
        context.store().update(job_id, take)
    except UnreadableRecord:  # quarantined by the store; nothing can be done for it here
        log.error("%s: job %s is unreadable and was set aside; dropping task %s", name, job_id, task_id)
        return
    claim = outcome.get("claim")
    if claim is None:
        log.warning("%s: job %s does not exist; dropping task %s", name, job_id, task_id)
        return
    if claim.decision is Decision.DROP:
        log.info("%s: job %s has moved on; dropping duplicate or stale task %s", name, job_id, task_id)
        return
    if claim.decision is Decision.WAIT:
        countdown = min(claim.delay, context.settings().max_countdown_seconds)
        app.send_task(task.name, args=[job_id], task_id=task_id, countdown=countdown)
        return
    assert claim.job is not None
    try:
        with KEEPER.keep(job_id, task_id, lease_seconds):
            handler(claim.job, task_id)
    except Exception as exc:  # a bug or an unexpected failure must not leave the job stuck
        log.exception("%s: job %s: unexpected %s", name, job_id, type(exc).__name__)
        retry_or_fail(job_id, task_id, name, ProviderUnavailable(f"internal error in {name}: {type(exc).__name__}"))


def move_on(job_id: str, task_id: str, status: JobStatus | None, step: Step | None, **fields: object) -> Job | None:
    """Record the outcome of the step task `task_id` owns and publish the next step; None if the job moved on."""
    now = utcnow()
    written = context.store().update(
        job_id, lambda job: lifecycle.advance(job, task_id, now, status=status, step=step, **fields)
    )
    if written is not None and written.step is not None:
        publish_step(app, context.settings(), job_id, written.step, now)
    return written


def fail(job_id: str, task_id: str, error: GenqueueError, vendor_outcome: VendorOutcome | None = None) -> Job | None:
    """End the job as failed with `error`'s code and message (and how the vendor said the task ended, when it
    said: it decides the charge), and publish its webhook delivery if it has one.

    This is where an error becomes the job's: every secret the settings hold is redacted from its message here.
    """
    now = utcnow()
    error = error.reworded(redact(error.message, context.settings().secrets()))
    written = context.store().update(job_id, lambda job: lifecycle.fail_owned(job, task_id, error, now, vendor_outcome))
    if written is not None:
        log.info("job %s failed: %s", job_id, error.code)
        context.guard().free_slot(written.provider, job_id)  # the vendor is done with it: free its in-flight slot
        if written.step is not None:
            publish_step(app, context.settings(), job_id, written.step, now)
    return written


def cancel(job_id: str, task_id: str, reason: str) -> Job | None:
    """End the job as canceled with `reason`, from the step task `task_id` owns (a batch deadline passed, say)."""
    now = utcnow()
    written = context.store().update(job_id, lambda job: lifecycle.cancel_owned(job, task_id, reason, now))
    if written is not None and written.step is not None:
        publish_step(app, context.settings(), job_id, written.step, now)
    return written


def retry_or_fail(
    job_id: str, task_id: str, name: StepName, error: GenqueueError, retry_after: float | None = None, **fields: object
) -> Job | None:
    """Run step `name` again after a backoff, or fail with `error` once its code's retry budget is spent."""
    settings = context.settings()
    job = context.store().get(job_id)
    if job is None or job.step is None or not lifecycle.owns_step(job, task_id):
        return None
    retries = dict(job.step.retries)
    retries[error.code] = retries.get(error.code, 0) + 1
    if retries[error.code] > settings.retry_budget(error.code):
        spent = f"{job.provider} {name}: {error.message} (gave up after {retries[error.code] - 1} retries)"
        return fail(job_id, task_id, error.reworded(spent))
    attempt = job.step.attempt + 1
    delay = lifecycle.backoff_seconds(settings, attempt, retry_after, context.rng())
    log.info("%s: job %s: %s; retry %d in %.1fs", name, job_id, error.code, attempt, delay)
    step = lifecycle.new_step(name, utcnow() + timedelta(seconds=delay), attempt, retries)
    return move_on(job_id, task_id, None, step, **fields)
