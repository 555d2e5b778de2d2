"""What the poll step decides from the vendor's status: for a running job, poll again later (a growing
countdown: "not ready" is a schedule, not an error), hand over to finalize, or fail; for a canceled job genqueue
follows (`followed`), poll again quietly or record how the vendor ended it, which decides its charge.

A canceled job whose submit POST was in flight has no task id yet: its submit records the vendor's answer, so
its quiet poll waits until that submit has answered or lost its lease (lifecycle.submit_answered_by); past that
the answer is lost and the vendor may have the job (charged "unknown").
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from shared import costs, lifecycle
from shared.decisions import Effects
from shared.errors import GenerationFailed, GenqueueError, JobTimeout, ProviderUnavailable, Transient
from shared.models import Job, JobStatus
from shared.providers.base import PollResult, TaskState
from shared.settings import Settings


def timed_out(job: Job, settings: Settings, now: datetime) -> JobTimeout | None:
    """The error of a job the vendor gave no result before its deadline; None while there is time."""
    if now > job.deadline_at:
        return JobTimeout(f"{job.provider} gave no result within {settings.job_timeout_seconds:.0f}s")
    return None


def polled(
    job: Job, task_id: str, result: PollResult, settings: Settings, now: datetime, rng: random.Random
) -> Job | None:
    """The transition after the vendor's status `result` for the poll task `task_id` owns."""
    if result.state is TaskState.FAILED:
        failed = GenerationFailed(result.failure_reason or f"{job.provider} reported the generation failed")
        return lifecycle.fail_owned(job, task_id, lifecycle.as_job_error(failed, settings), now, "failed")
    polls = job.poll_count + 1
    if result.state is TaskState.SUCCEEDED:
        if not result.output_urls:
            empty = ProviderUnavailable(f"{job.provider} reported success with no output")
            return lifecycle.retry_or_fail(job, task_id, empty, settings, now, rng)
        return lifecycle.advance(
            job,
            task_id,
            now,
            JobStatus.FINALIZING,
            lifecycle.new_step("finalize", now),
            output_urls=result.output_urls,
            progress=1.0,
            poll_count=polls,
            charge=job.charge.model_copy(update={"vendor_outcome": "succeeded"}),
        )
    delay = lifecycle.poll_delay_seconds(settings, job.poll_count, rng)
    status = JobStatus.RUNNING if result.state is TaskState.RUNNING else job.status
    step = lifecycle.new_step("poll", now + timedelta(seconds=delay))
    return lifecycle.advance(job, task_id, now, status, step, progress=result.progress, poll_count=polls)


def polled_effects(result: PollResult) -> Effects:
    """Rendering is over once the vendor reports outputs: the in-flight slot is freed (before the write)."""
    return Effects(free_slot=result.state is TaskState.SUCCEEDED and bool(result.output_urls))


def asks_vendor(job: Job, now: datetime) -> bool:
    """Whether a quiet poll of a canceled job asks the vendor: it has a task id and its deadline has not passed."""
    return job.provider_task_id is not None and now <= job.deadline_at


def followed(
    job: Job,
    task_id: str,
    observed: PollResult | GenqueueError | None,
    settings: Settings,
    now: datetime,
    rng: random.Random,
) -> Job | None:
    """The transition of a quiet poll of a canceled job the vendor may still render, from the poll task `task_id`
    owns: `observed` is the vendor's status or the poll's error (None: the vendor was not asked, see
    `asks_vendor`). Poll again (or wait for the submit's answer), or record how the vendor ended the task."""
    assert job.step is not None
    outcome = costs.Outcome.UNKNOWN
    if job.provider_task_id is None:
        answered_by = lifecycle.submit_answered_by(settings, job)
        if answered_by is not None and now < answered_by:
            return lifecycle.advance(job, task_id, now, step=lifecycle.follow_step(job, answered_by))
        outcome = costs.Outcome.MAYBE_ACCEPTED
    elif isinstance(observed, Transient):
        retries = {**job.step.retries, observed.code: job.step.retries.get(observed.code, 0) + 1}
        if retries[observed.code] <= settings.retry_budget(observed.code):
            delay = lifecycle.backoff_seconds(settings, sum(retries.values()), observed.retry_after, rng)
            step = lifecycle.follow_step(job, now + timedelta(seconds=delay))
            if step.name == "poll":
                step = lifecycle.new_step("poll", step.due_at, retries)
            return lifecycle.advance(job, task_id, now, step=step)
    elif isinstance(observed, PollResult):
        if observed.state is TaskState.FAILED:
            outcome = costs.Outcome.FAILED
        elif observed.state is TaskState.SUCCEEDED:
            outcome = costs.Outcome.SUCCEEDED
        else:
            delay = lifecycle.poll_delay_seconds(settings, job.poll_count, rng)
            step = lifecycle.follow_step(job, now + timedelta(seconds=delay))
            return lifecycle.advance(job, task_id, now, step=step, poll_count=job.poll_count + 1)
    # a permanent error, spent retries, a passed deadline: how the task ends at the vendor cannot be learned
    return lifecycle.ended_at_vendor(job, task_id, outcome, now)
