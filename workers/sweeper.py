"""The sweeper (run by `celery -A workers beat`): resume jobs whose next step is overdue.

A step's task can be lost: Redis crashed before its AOF reached disk, a worker was killed holding it (with a
threads pool its messages come back only after the visibility timeout), or a process died between recording a
step and publishing its task. The job store still names the step and when it was due; the sweeper gives it a
fresh task id and publishes it, so every job reaches an end.
"""

from __future__ import annotations

import logging
import time

from celery import Task

from shared import lifecycle, queueing
from shared.batch import BatchStore
from shared.batch import lifecycle as batch_lifecycle
from shared.constants import SWEEP_LAST_RUN_KEY, SWEEP_TASK
from shared.models import utcnow
from shared.quarantine import UnreadableRecord
from workers import context
from workers.app import app, genqueue_task
from workers.batch_webhooks import publish_batch_step

log = logging.getLogger("genqueue.sweeper")

BATCH = 500


@genqueue_task(SWEEP_TASK)
def sweep(self: Task) -> int:
    """Resume every overdue job and batch step; the number resumed. Notes when the pass finished."""
    resumed = sweep_overdue() + sweep_overdue_batches()
    context.store().redis.set(SWEEP_LAST_RUN_KEY, repr(time.time()))
    return resumed


def sweep_overdue() -> int:
    """One pass over the overdue index; the number of jobs whose step was republished."""
    settings = context.settings()
    store = context.store()
    now = utcnow()
    resumed = 0
    candidates = store.due_job_ids(before=now.timestamp() - settings.sweep_grace_seconds, limit=BATCH)
    for job_id in candidates:
        try:
            written = queueing.write_and_publish(
                store,
                app,
                settings,
                job_id,
                lambda job: lifecycle.resume_overdue(job, now, settings.sweep_grace_seconds),
                now,
            )
        except UnreadableRecord:  # set aside by the store (and off the due index): the rest still get resumed
            continue
        if written is not None and written.step is not None:
            log.warning("sweeper: job %s step %s was overdue; republished", job_id, written.step.name)
            resumed += 1
    return resumed


def sweep_overdue_batches() -> int:
    """One pass over the batches' due index; the number of batch steps (`batch.completed` deliveries) republished.

    As for jobs: an overdue step with no lease held gets a fresh task id, so the lost task, should it turn up,
    drops itself. An index entry whose batch expired meanwhile is dropped; a batch that cannot be read is
    quarantined and skipped.
    """
    settings = context.settings()
    batches = BatchStore(context.store().redis)
    now = utcnow()
    resumed = 0
    for batch_id in batches.due_batch_ids(before=now.timestamp() - settings.sweep_grace_seconds, limit=BATCH):
        try:
            written = batches.update(
                batch_id, lambda batch: batch_lifecycle.resume_overdue(batch, now, settings.sweep_grace_seconds)
            )
        except UnreadableRecord:  # set aside by the store (and off the due index): the rest still get resumed
            continue
        if written is None:
            batches.unindex_if_gone(batch_id)
        elif written.step is not None:
            publish_batch_step(batch_id, written.step, now)
            log.warning("sweeper: batch %s step %s was overdue; republished", batch_id, written.step.name)
            resumed += 1
    return resumed
