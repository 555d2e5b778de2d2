"""Stage 4, deliver_webhook: POST the job's signed terminal event until it is delivered or the schedule is spent.

Every attempt carries the same `webhook-id`, so receivers can deduplicate; the signature and timestamp are made
fresh per attempt (receivers refuse timestamps more than five minutes old).
"""

from __future__ import annotations

import logging

from celery import Task

from shared import lifecycle
from shared.constants import WEBHOOK_TASK
from shared.decisions import webhook as webhook_rules
from shared.keys import KeyStore
from shared.models import Job, utcnow
from shared.webhooks.attempt import UNSIGNED_REFUSAL, attempt_event
from shared.webhooks.dead_letters import DeadLetters
from workers import context
from workers.app import genqueue_task
from workers.steps import move_on, note_answer, run_step

log = logging.getLogger("genqueue.workers")


@genqueue_task(WEBHOOK_TASK)
def deliver_webhook(self: Task, job_id: str) -> None:
    """Deliver job `job_id`'s terminal event once; schedule the next attempt if it failed."""
    lease = context.settings().webhook_timeout_seconds * 2 + 30
    run_step(self, job_id, "deliver_webhook", lease, deliver_job_event)


def signing_secret(tenant: str | None) -> tuple[str | None, str]:
    """The secret the events of a job or batch made by API key `tenant` are signed with (None: the operator's, the
    settings' own), and the reason an attempt records when there is none."""
    if tenant is None:
        return context.settings().webhook_secret, UNSIGNED_REFUSAL
    secret = KeyStore(context.store().redis).webhook_secret(tenant)
    return secret, f"not sent: the record of API key {tenant!r} cannot be read, so there is no secret to sign with"


def deliver_job_event(job: Job, task_id: str) -> None:
    """The webhook step for a claimed job."""
    settings = context.settings()
    state = job.webhook
    # once the event is done with, a canceled job the vendor still renders is followed to its end (quiet polls)
    then = lifecycle.after_event(job, utcnow())
    if state is None or job.webhook_url is None or state.delivered or state.gave_up:
        move_on(job.id, task_id, None, then)
        return
    given_up = DeadLetters(context.store().redis)
    if given_up.is_gone(job.webhook_url):
        gone = state.model_copy(update={"gave_up": "the endpoint answered 410 Gone before; not sent"})
        move_on(job.id, task_id, None, then, webhook=gone)
        return
    secret, missing = signing_secret(job.tenant)
    attempted = attempt_event(
        context.webhook_http(), job.webhook_url, state, job.public(), settings, utcnow(), secret, missing
    )
    code = attempted.result.status_code
    note_answer("transport" if code is None else code)
    new_state, step = webhook_rules.after_attempt(job, attempted, utcnow())
    if attempted.result.gone:
        given_up.mark_gone(job.webhook_url)
    elif webhook_rules.dead_letter(attempted):
        given_up.add(job.id)
    if new_state.gave_up:
        log.warning("webhook for job %s: %s", job.id, new_state.gave_up)
    move_on(job.id, task_id, None, step, webhook=new_state)
