"""Stage 2, poll: ask the vendor how the job is doing, then poll again later, or hand over to finalize.

"Not ready" is a schedule, not an error: the next poll is a countdown that grows with each poll (with jitter
and a cap). Only real failures go through the retry budget. The rules are shared/decisions/poll.py's.
"""

from __future__ import annotations

import logging

from celery import Task

from shared import costs
from shared.constants import POLL_TASK
from shared.decisions import poll as poll_rules
from shared.errors import GenqueueError, Transient
from shared.models import Job, utcnow
from shared.providers.base import PollResult
from shared.providers.registry import get_adapter
from workers import context
from workers.app import genqueue_task
from workers.steps import call_vendor, carry_out, fail, retry_or_fail, run_step, write

log = logging.getLogger("genqueue.workers")


@genqueue_task(POLL_TASK)
def poll(self: Task, job_id: str) -> None:
    """Poll the vendor for job `job_id` once. It holds the step lease: a poll taken over while its GET is still out
    only asks the vendor twice, and its late answer is refused (the step is no longer its own)."""
    run_step(self, job_id, "poll", context.settings().step_lease_seconds, poll_job)


def ask_vendor(job: Job) -> PollResult:
    """The vendor's status of the job's task (the job must have a task id); GenqueueError when it cannot say."""
    assert job.provider_task_id is not None
    config = context.settings().provider(job.provider)
    adapter = get_adapter(config.dialect)
    request = adapter.build_poll(job.provider_task_id, job.request, config, job.provider_task_scope)
    return adapter.parse_poll(call_vendor("poll", config, request))


def poll_job(job: Job, task_id: str) -> None:
    """The poll step for a claimed job."""
    settings = context.settings()
    if costs.awaiting_vendor(job):
        follow_canceled(job, task_id)
        return
    timeout = poll_rules.timed_out(job, settings, utcnow())
    if timeout is not None:
        fail(job.id, task_id, timeout)
        return
    try:
        result = ask_vendor(job)
    except Transient as exc:
        retry_or_fail(job.id, task_id, exc, exc.retry_after)
        return
    except GenqueueError as exc:
        fail(job.id, task_id, exc)
        return
    carry_out(poll_rules.polled_effects(result), settings.provider(job.provider), job.id)
    now, rng = utcnow(), context.rng()
    write(job.id, lambda j: poll_rules.polled(j, task_id, result, settings, now, rng), now)


def follow_canceled(job: Job, task_id: str) -> None:
    """A quiet poll of a canceled job the vendor still renders: no status change, no webhook.

    When the vendor reports the task ended (or it cannot be known: the job's deadline passed, the poll's retries
    are spent, a permanent error, a submit whose answer never came), the charge is recorded by the dialect's rule
    and the in-flight slot freed (poll_rules.followed).
    """
    settings, now, rng = context.settings(), utcnow(), context.rng()
    observed: PollResult | GenqueueError | None = None
    if poll_rules.asks_vendor(job, now):
        try:
            observed = ask_vendor(job)
        except GenqueueError as exc:
            observed = exc
    written = write(job.id, lambda j: poll_rules.followed(j, task_id, observed, settings, now, rng), now)
    if written is not None and not costs.awaiting_vendor(written):
        context.guard().free_slot(job.provider, job.id)  # the vendor is done with it: free its in-flight slot
        log.info("canceled job %s ended at %s: charged %s", job.id, job.provider, written.charged)
