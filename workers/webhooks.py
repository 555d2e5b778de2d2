"""Stage 4, deliver_webhook: POST the job's signed terminal event until it is delivered or the schedule is spent.

Every attempt carries the same `webhook-id`, so receivers can deduplicate; the signature and timestamp are made
fresh per attempt (receivers refuse timestamps more than five minutes old).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task

from shared import costs, lifecycle
from shared.constants import WEBHOOK_TASK
from shared.models import Job, utcnow
from shared.webhooks.attempt import attempt_event
from workers import context
from workers.app import genqueue_task
from workers.steps import move_on, run_step

log = logging.getLogger("genqueue.workers")


@genqueue_task(WEBHOOK_TASK)
def deliver_webhook(self: Task, job_id: str) -> None:
    """Deliver job `job_id`'s terminal event once; schedule the next attempt if it failed."""
    lease = context.settings().webhook_timeout_seconds * 2 + 30
    run_step(self, job_id, "deliver_webhook", lease, deliver_job_event)


def deliver_job_event(job: Job, task_id: str) -> None:
    """The webhook step for a claimed job."""
    settings = context.settings()
    state = job.webhook
    # once the event is done with, a canceled job the vendor still renders is followed to its end (quiet polls)
    then = lifecycle.after_event(job, utcnow())
    if state is None or job.webhook_url is None or state.delivered or state.gave_up:
        move_on(job.id, task_id, None, then)
        return
    store = context.store()
    if store.endpoint_gone(job.webhook_url):
        gone = state.model_copy(update={"gave_up": "the endpoint answered 410 Gone before; not sent"})
        move_on(job.id, task_id, None, then, webhook=gone)
        return
    attempted = attempt_event(context.webhook_http(), job.webhook_url, state, job.public(), settings, utcnow())
    new_state, step = attempted.state, lifecycle.after_event(job, utcnow())
    if attempted.result.gone:
        store.mark_endpoint_gone(job.webhook_url)
    elif attempted.retry_in is not None:
        retry_at = utcnow() + timedelta(seconds=attempted.retry_in)
        if costs.awaiting_vendor(job):  # the quiet polls go on meanwhile; they hand back to the retry when due
            new_state = new_state.model_copy(update={"next_attempt_at": retry_at})
            step = lifecycle.new_step("poll", utcnow())
        else:
            step = lifecycle.new_step("deliver_webhook", retry_at)
    elif not new_state.delivered:
        store.add_dead_letter(job.id)
    if new_state.gave_up:
        log.warning("webhook for job %s: %s", job.id, new_state.gave_up)
    move_on(job.id, task_id, None, step, webhook=new_state)
