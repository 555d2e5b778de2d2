"""How every step task runs: claim the step in the job store, do the work, record the outcome, publish the next.

A task runs its step only when the job store names the task's own id as the job's next step (lifecycle.claim):
a duplicate delivery, a stale task or a second chain finds another id and drops itself. Every stage has the same
shape: claim (`run_step`), do the I/O, decide (shared/lifecycle.py, shared/decisions/), `write` the transition
once and publish its step, and `carry_out` the decision's effects on the provider's limits. The outcome is
written before the next task is published, so a crash in between leaves a job whose step is recorded and
overdue, never a task for a state that was not saved.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime

import redis
from celery import Task

from shared import counters, history, lifecycle, logs, tracing
from shared.decisions import Effects
from shared.errors import GenqueueError, ProviderRedirected, ProviderUnavailable
from shared.lifecycle import Decision
from shared.models import Job, JobStatus, Step, StepName, VendorOutcome, utcnow
from shared.providers.base import HttpAnswer, HttpRequest
from shared.providers.client import send
from shared.quarantine import UnreadableRecord
from shared.queueing import write_and_publish
from shared.settings import ProviderConfig
from workers import context
from workers.app import app
from workers.leases import KEEPER

log = logging.getLogger("genqueue.workers")

StepHandler = Callable[[Job, str], None]

#: the step run this thread is in (set by run_step), noted as it goes and recorded in the job by its outcome's write
CURRENT_RUN: ContextVar[history.StepRun | None] = ContextVar("genqueue_step_run", default=None)


def call_vendor(kind: str, config: ProviderConfig, request: HttpRequest) -> HttpAnswer:
    """Send one vendor API call (`kind`: submit or poll) within the provider deadline, and count it by the status
    it was answered with (shared/counters.py; a redirect counts as 3xx, no answer as transport); send's errors
    pass through."""
    status: int | str | None = None
    try:
        answer = send(context.http(), request, config.api_key, context.settings().provider_timeout_seconds)
        status = answer.status_code
        return answer
    except ProviderRedirected:
        status = "3xx"
        raise
    finally:
        count_vendor_request(config.name, kind, status)
        note_answer("transport" if status is None else status)


def note_answer(answer: int | str) -> None:
    """Note what answered the current step run's outbound call (its history record shows the last)."""
    run = CURRENT_RUN.get()
    if run is not None:
        run.answer = answer


def count_vendor_request(provider: str, kind: str, status: int | str | None) -> None:
    """Count one vendor request: by the step run's next write (no round trip of its own), else at once."""
    keys = [counters.vendor_request(provider, kind, status), counters.recent_answer(provider, status)]
    run = CURRENT_RUN.get()
    if run is not None:
        for key in keys:
            counters.add(run.counts, key)
    else:
        add_counts(dict.fromkeys(keys, 1.0))


def add_counts(counts: dict[str, float]) -> None:
    """Add `counts` to the counters on their own; a Redis that fails here loses the counts, never the step."""
    try:
        counters.count(context.store().redis, counts, time.time())
    except redis.RedisError as exc:
        log.warning("could not count %s: %s", ", ".join(counts), exc)


def run_step(task: Task, job_id: str, name: StepName, lease_seconds: float, handler: StepHandler) -> None:
    """Claim step `name` of job `job_id` for this task and run `handler(job, task_id)` if it is ours to run.

    Every line logged meanwhile carries the job id, the step and the task id (and once claimed the provider, the
    batch and the attempt: shared/logs.py); the run is a span in the job's trace (shared/tracing.py)."""
    task_id = task.request.id
    assert task_id is not None
    with logs.bind_step(job_id=job_id, step=name, task_id=task_id):
        _run_step(task, task_id, job_id, name, lease_seconds, handler)


def _run_step(
    task: Task, task_id: str, job_id: str, name: StepName, lease_seconds: float, handler: StepHandler
) -> None:
    now = utcnow()
    outcome: dict[str, lifecycle.Claim[Job]] = {}

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
    assert claim.record is not None
    job = claim.record
    attempt = job.step.attempt if job.step is not None else 0
    token = CURRENT_RUN.set(history.StepRun(step=name, started=now, attempt=attempt))
    try:
        with (
            logs.bind_step(provider=job.provider, batch_id=job.batch_id, attempt=attempt),
            tracing.step_span(job, name, attempt),
            KEEPER.keep(job_id, task_id, lease_seconds),
        ):
            handler(job, task_id)
    except Exception as exc:  # a bug or an unexpected failure must not leave the job stuck
        log.exception("%s: job %s: unexpected %s", name, job_id, type(exc).__name__)
        retry_or_fail(job_id, task_id, ProviderUnavailable(f"internal error in {name}: {type(exc).__name__}"))
    finally:
        run = CURRENT_RUN.get()
        CURRENT_RUN.reset(token)
        if run is not None and run.counts:  # no write of the run took them (it declined, or none was made)
            add_counts(run.counts)


def write(job_id: str, transition: Callable[[Job], Job | None], now: datetime) -> Job | None:
    """Write `transition` to the job and publish the step it leaves; a job it failed frees its in-flight slot
    (the vendor is done with it, or never took it). The first write of a step run's outcome records the run in
    the job's history; each adds the counts the run has noted since its last. The job written, or None if the
    transition declined."""
    before: dict[str, JobStatus] = {}
    run = CURRENT_RUN.get()

    def change(job: Job) -> Job | None:
        before["status"] = job.status
        after = transition(job)
        if after is None or run is None or run.recorded:
            return after
        return history.with_run(job, after, run, now)

    counts = dict(run.counts) if run is not None else None
    written = write_and_publish(context.store(), app, context.settings(), job_id, change, now, counts)
    if written is not None and run is not None:
        run.counts.clear()
    if written is not None and run is not None and not run.recorded:
        run.recorded = True
        if written.history:
            record = written.history[-1]
            log.info("%s answered %s in %.2fs: %s", record.step, record.answer or "-", record.seconds, record.outcome)
    if written is not None and written.status is JobStatus.FAILED and before["status"] is not JobStatus.FAILED:
        log.info("job %s failed: %s", job_id, written.error.code if written.error else "?")
        context.guard().free_slot(written.provider, job_id)
    return written


def move_on(job_id: str, task_id: str, status: JobStatus | None, step: Step | None, **fields: object) -> Job | None:
    """Record the outcome of the step task `task_id` owns and publish the next step; None if the job moved on."""
    now = utcnow()
    return write(job_id, lambda job: lifecycle.advance(job, task_id, now, status=status, step=step, **fields), now)


def fail(job_id: str, task_id: str, error: GenqueueError, vendor_outcome: VendorOutcome | None = None) -> Job | None:
    """End the job as failed with `error`'s code and message (and how the vendor said the task ended, when it
    said: it decides the charge), and publish its webhook delivery if it has one.

    This is where an error becomes the job's: every secret the settings hold is redacted from its message.
    """
    now = utcnow()
    error = lifecycle.as_job_error(error, context.settings())
    return write(job_id, lambda job: lifecycle.fail_owned(job, task_id, error, now, vendor_outcome), now)


def cancel(job_id: str, task_id: str, reason: str) -> Job | None:
    """End the job as canceled with `reason`, from the step task `task_id` owns (a batch deadline passed, say)."""
    now = utcnow()
    return write(job_id, lambda job: lifecycle.cancel_owned(job, task_id, reason, now), now)


def retry_or_fail(
    job_id: str, task_id: str, error: GenqueueError, retry_after: float | None = None, **fields: object
) -> Job | None:
    """Run the step task `task_id` owns again after a backoff, or fail with `error` once its code's retry budget
    is spent (lifecycle.retry_or_fail)."""
    settings, rng, now = context.settings(), context.rng(), utcnow()
    written = write(
        job_id, lambda job: lifecycle.retry_or_fail(job, task_id, error, settings, now, rng, retry_after, **fields), now
    )
    if written is not None and written.step is not None and not written.status.terminal:
        step, delay = written.step, (written.step.due_at - now).total_seconds()
        log.info("%s: job %s: %s; retry %d in %.1fs", step.name, job_id, error.code, step.attempt, delay)
    return written


def carry_out(effects: Effects, config: ProviderConfig, job_id: str) -> None:
    """Apply a decision's effects on the provider's shared limits, for job `job_id`."""
    guard = context.guard()
    if effects.credit_pause is not None:
        guard.pause_for_credits(config.name, time.time(), effects.credit_pause)
    if effects.breaker_failure:
        guard.record_failure(config, time.time())
    if effects.breaker_success:
        guard.record_success(config.name, job_id)
    if effects.free_slot:
        guard.free_slot(config.name, job_id)
