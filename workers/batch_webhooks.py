"""The `batch.completed` webhook: the batch's summary, POSTed to its --webhook URL when its last job ends.

Delivered like a job's event (workers/webhooks.py): the same `webhook-id` on every retry, Standard Webhooks
signatures, the same retry schedule; the attempts are recorded on the batch. The delivery is the batch's step
(shared/batch/lifecycle.py): the batch names the one task id that may run it, so a duplicate or redelivered task
drops itself, and the sweeper resumes a step whose task was lost (workers/sweeper.py).
"""

from __future__ import annotations

import logging
from datetime import datetime

from celery import Task

from shared.batch import BatchStore
from shared.batch import lifecycle as batch_lifecycle
from shared.batch.models import Batch, BatchStep, dispatcher_health
from shared.constants import BATCH_WEBHOOK_TASK
from shared.lifecycle import Claim, Decision
from shared.models import utcnow
from shared.webhooks.attempt import attempt_event
from workers import context
from workers.app import app, genqueue_task
from workers.webhooks import signing_secret

log = logging.getLogger("genqueue.workers")


def publish_batch_step(batch_id: str, step: BatchStep, now: datetime | None = None) -> None:
    """Publish the task that runs batch `batch_id`'s `step`, with the step's task id and a countdown to its due
    time (capped as every countdown is; a step due later wakes early and publishes itself again)."""
    wait = (step.due_at - (now or utcnow())).total_seconds()
    countdown = min(max(wait, 0.0), context.settings().max_countdown_seconds)
    app.send_task(
        BATCH_WEBHOOK_TASK, args=[batch_id], task_id=step.task_id, queue="webhooks", countdown=countdown or None
    )


def lease_seconds() -> float:
    """How long a delivery attempt may hold the step: one POST, bounded by the webhook timeout, with room to spare."""
    return context.settings().webhook_timeout_seconds * 2 + 30


@genqueue_task(BATCH_WEBHOOK_TASK)
def deliver_batch_webhook(self: Task, batch_id: str) -> None:
    """One delivery attempt of batch `batch_id`'s completion event, if this task owns the batch's step; records the
    attempt and publishes the next one if it failed."""
    task_id = self.request.id
    assert task_id is not None
    batches = BatchStore(context.store().redis)
    now = utcnow()
    outcome: dict[str, Claim[Batch]] = {}

    def take(batch: Batch) -> Batch | None:
        claim, leased = batch_lifecycle.claim(batch, task_id, now, lease_seconds())
        outcome["claim"] = claim
        return leased

    batches.update(batch_id, take)
    claim = outcome.get("claim")
    if claim is None or claim.decision is Decision.DROP:
        log.info("batch webhook of %s: not this task's step; dropping duplicate or stale task %s", batch_id, task_id)
        return
    if claim.decision is Decision.WAIT:
        countdown = min(claim.delay, context.settings().max_countdown_seconds)
        app.send_task(BATCH_WEBHOOK_TASK, args=[batch_id], task_id=task_id, queue="webhooks", countdown=countdown)
        return
    assert claim.record is not None
    deliver_claimed(batches, claim.record, task_id)


def deliver_claimed(batches: BatchStore, batch: Batch, task_id: str) -> None:
    """The delivery step for a batch claimed by task `task_id`."""
    state = batch.webhook
    if state is None or batch.webhook_url is None or state.delivered or state.gave_up:
        batches.update(batch.id, lambda current: batch_lifecycle.finish_step(current, task_id))
        return
    settings = context.settings()
    now = utcnow()
    health = dispatcher_health(batches.dispatcher_last_run(), 0, now, 0.0)
    summary = batch.summary(batches.counts(batch.id), batches.ledger(batch.id), 0, health)
    secret, missing = signing_secret(batch.tenant)
    attempted = attempt_event(context.webhook_http(), batch.webhook_url, state, summary, settings, now, secret, missing)
    last = attempted.state.attempts[-1]
    answer = last.status_code if last.status_code is not None else "no answer"
    then = f"; next attempt in {attempted.retry_in:.1f}s" if attempted.retry_in is not None else ""
    count = len(attempted.state.attempts)
    log.info("batch webhook of %s: attempt %d by task %s answered %s%s", batch.id, count, task_id, answer, then)
    if attempted.state.gave_up:
        log.warning("batch webhook for %s: %s", batch.id, attempted.state.gave_up)
    written = batches.update(
        batch.id,
        lambda current: batch_lifecycle.record_attempt(current, task_id, attempted.state, attempted.retry_in, now),
    )
    if written is not None and written.step is not None:
        publish_batch_step(batch.id, written.step, now)
