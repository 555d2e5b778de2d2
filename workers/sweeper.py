"""The sweeper (run by `celery -A workers beat`): resume jobs whose next step is overdue.

A step's task can be lost: Redis crashed before its AOF reached disk, a worker was killed holding it (with a
threads pool its messages come back only after the visibility timeout), or a process died between recording a
step and publishing its task. The job store still names the step and when it was due; the sweeper gives it a
fresh task id and publishes it, so every job reaches an end.
"""

from __future__ import annotations

import logging

from celery import Task

from shared import lifecycle
from shared.constants import SWEEP_TASK
from shared.models import utcnow
from shared.queueing import publish_step
from workers import context
from workers.app import app, genqueue_task

log = logging.getLogger("genqueue.sweeper")

BATCH = 500


@genqueue_task(SWEEP_TASK)
def sweep(self: Task) -> int:
    """Resume every overdue job; the number resumed."""
    return sweep_overdue()


def sweep_overdue() -> int:
    """One pass over the overdue index; the number of jobs whose step was republished."""
    settings = context.settings()
    store = context.store()
    now = utcnow()
    resumed = 0
    candidates = store.due_job_ids(before=now.timestamp() - settings.sweep_grace_seconds, limit=BATCH)
    for job_id in candidates:
        written = store.update(job_id, lambda job: lifecycle.resume_overdue(job, now, settings.sweep_grace_seconds))
        if written is not None and written.step is not None:
            publish_step(app, settings, job_id, written.step, now)
            log.warning("sweeper: job %s step %s was overdue; republished", job_id, written.step.name)
            resumed += 1
    return resumed
