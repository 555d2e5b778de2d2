"""The `batch.completed` webhook: the batch's summary, POSTed to its --webhook URL when its last job ends.

Delivered like a job's event (workers/webhooks.py): the same `webhook-id` on every retry, Standard Webhooks
signatures, the same retry schedule; the attempts are recorded on the batch.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from celery import Task

from shared.batch import Batch, BatchStore
from shared.constants import BATCH_WEBHOOK_TASK
from shared.models import WebhookState, utcnow
from shared.webhooks.attempt import attempt_event
from workers import context
from workers.app import app, genqueue_task

log = logging.getLogger("genqueue.workers")
EVENT_TYPE = "batch.completed"


def start_batch_webhook(batches: BatchStore, batch: Batch, now: datetime) -> None:
    """Create the batch's completion event (once) and publish its first delivery."""
    if batch.webhook_url is None or batch.webhook is not None:
        return
    state = WebhookState(event_id=f"msg_{uuid.uuid4().hex}", event_type=EVENT_TYPE, timestamp=now)
    batches.save(batch.model_copy(update={"webhook": state, "webhook_next_at": now}))
    publish(batch.id, 0.0)


def publish(batch_id: str, delay: float) -> None:
    countdown = min(max(delay, 0.0), context.settings().max_countdown_seconds)
    app.send_task(BATCH_WEBHOOK_TASK, args=[batch_id], queue="webhooks", countdown=countdown or None)


@genqueue_task(BATCH_WEBHOOK_TASK)
def deliver_batch_webhook(self: Task, batch_id: str) -> None:
    """One delivery attempt of batch `batch_id`'s completion event; schedules the next one if it failed."""
    settings = context.settings()
    batches = BatchStore(context.store().redis)
    batch = batches.get(batch_id)
    if batch is None or batch.webhook is None or batch.webhook_url is None:
        return
    state = batch.webhook
    if state.delivered or state.gave_up:
        return
    now = utcnow()
    if batch.webhook_next_at is not None and batch.webhook_next_at > now + timedelta(seconds=1):
        publish(batch_id, (batch.webhook_next_at - now).total_seconds())  # woke early (a capped countdown)
        return
    summary = batch.summary(batches.counts(batch.id), batches.ledger(batch.id), 0)
    attempted = attempt_event(context.webhook_http(), batch.webhook_url, state, summary, settings, now)
    new_state, delay = attempted.state, attempted.retry_in
    if new_state.gave_up:
        log.warning("batch webhook for %s: %s", batch_id, new_state.gave_up)
    next_at = None if delay is None else now + timedelta(seconds=delay)
    batches.save(batch.model_copy(update={"webhook": new_state, "webhook_next_at": next_at}))
    if delay is not None:
        publish(batch_id, delay)
