"""Stage 2, poll: ask the vendor how the job is doing, then poll again later, or hand over to finalize.

"Not ready" is a schedule, not an error: the next poll is a countdown that grows with each poll (with jitter
and a cap). Only real failures go through the retry budget.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task

from shared import costs, lifecycle
from shared.constants import POLL_TASK
from shared.errors import GenerationFailed, GenqueueError, JobTimeout, ProviderUnavailable, Transient
from shared.models import Job, JobStatus, utcnow
from shared.providers.base import TaskState
from shared.providers.client import send
from shared.providers.registry import get_adapter
from shared.queueing import publish_step
from workers import context
from workers.app import app, genqueue_task
from workers.steps import fail, move_on, retry_or_fail, run_step

log = logging.getLogger("genqueue.workers")


@genqueue_task(POLL_TASK)
def poll(self: Task, job_id: str) -> None:
    """Poll the vendor for job `job_id` once."""
    lease = lifecycle.vendor_call_lease_seconds(context.settings())
    run_step(self, job_id, "poll", lease, poll_job)


def poll_job(job: Job, task_id: str) -> None:
    """The poll step for a claimed job."""
    settings = context.settings()
    if costs.awaiting_vendor(job):
        follow_canceled(job, task_id)
        return
    if utcnow() > job.deadline_at:
        fail(job.id, task_id, JobTimeout(f"{job.provider} gave no result within {settings.job_timeout_seconds:.0f}s"))
        return
    assert job.provider_task_id is not None
    try:
        config = settings.provider(job.provider)
        adapter = get_adapter(config.dialect)
        request = adapter.build_poll(job.provider_task_id, job.request, config, job.provider_task_scope)
        result = adapter.parse_poll(
            send(context.http(), request, config.api_key, context.settings().provider_timeout_seconds)
        )
    except Transient as exc:
        retry_or_fail(job.id, task_id, "poll", exc, exc.retry_after)
        return
    except GenqueueError as exc:
        fail(job.id, task_id, exc)
        return
    now = utcnow()
    polls = job.poll_count + 1
    if result.state is TaskState.FAILED:
        reason = result.failure_reason or f"{job.provider} reported the generation failed"
        fail(job.id, task_id, GenerationFailed(reason), vendor_outcome="failed")
    elif result.state is TaskState.SUCCEEDED:
        if not result.output_urls:
            retry_or_fail(
                job.id, task_id, "poll", ProviderUnavailable(f"{job.provider} reported success with no output")
            )
            return
        context.guard().free_slot(job.provider, job.id)  # rendering is over: free its in-flight slot
        move_on(
            job.id,
            task_id,
            JobStatus.FINALIZING,
            lifecycle.new_step("finalize", now),
            output_urls=result.output_urls,
            progress=1.0,
            poll_count=polls,
            charge=job.charge.model_copy(update={"vendor_outcome": "succeeded"}),
        )
    else:
        delay = lifecycle.poll_delay_seconds(settings, job.poll_count, context.rng())
        status = JobStatus.RUNNING if result.state is TaskState.RUNNING else job.status
        move_on(
            job.id,
            task_id,
            status,
            lifecycle.new_step("poll", now + timedelta(seconds=delay)),
            progress=result.progress,
            poll_count=polls,
        )


def follow_canceled(job: Job, task_id: str) -> None:
    """A quiet poll of a canceled job the vendor still renders: no status change, no webhook.

    When the vendor reports the task ended (or it cannot be known: the job's deadline passed, the poll's retries
    are spent, a permanent error, a submit whose answer never came), the charge is recorded by the dialect's rule
    and the in-flight slot freed.
    """
    settings = context.settings()
    now = utcnow()
    assert job.step is not None
    outcome = costs.Outcome.UNKNOWN
    if job.provider_task_id is None:
        # canceled during its submit POST: that submit records the vendor's answer; wait for it until its lease is
        # over, then the answer is lost and the vendor may have the job
        answered_by = lifecycle.submit_answered_by(settings, job)
        if answered_by is not None and now < answered_by:
            move_on(job.id, task_id, None, lifecycle.follow_step(job, answered_by))
            return
        outcome = costs.Outcome.MAYBE_ACCEPTED
    elif now <= job.deadline_at:
        try:
            config = settings.provider(job.provider)
            adapter = get_adapter(config.dialect)
            request = adapter.build_poll(job.provider_task_id, job.request, config, job.provider_task_scope)
            result = adapter.parse_poll(
                send(context.http(), request, config.api_key, settings.provider_timeout_seconds)
            )
        except Transient as exc:
            retries = {**job.step.retries, exc.code: job.step.retries.get(exc.code, 0) + 1}
            if retries[exc.code] <= settings.retry_budget(exc.code):
                delay = lifecycle.backoff_seconds(settings, job.step.attempt + 1, exc.retry_after, context.rng())
                step = lifecycle.follow_step(job, now + timedelta(seconds=delay))
                if step.name == "poll":
                    step = lifecycle.new_step("poll", step.due_at, job.step.attempt + 1, retries)
                move_on(job.id, task_id, None, step)
                return
        except GenqueueError:
            pass  # a permanent error: how the task ends cannot be learned
        else:
            if result.state is TaskState.FAILED:
                outcome = costs.Outcome.FAILED
            elif result.state is TaskState.SUCCEEDED:
                outcome = costs.Outcome.SUCCEEDED
            else:
                delay = lifecycle.poll_delay_seconds(settings, job.poll_count, context.rng())
                step = lifecycle.follow_step(job, now + timedelta(seconds=delay))
                move_on(job.id, task_id, None, step, poll_count=job.poll_count + 1)
                return
    written = context.store().update(job.id, lambda j: lifecycle.ended_at_vendor(j, task_id, outcome, now))
    if written is not None:
        context.guard().free_slot(job.provider, job.id)  # the vendor is done with it: free its in-flight slot
        log.info("canceled job %s ended at %s (%s): charged %s", job.id, job.provider, outcome, written.charged)
        if written.step is not None:  # its webhook's retry, due later
            publish_step(app, settings, job.id, written.step, now)
