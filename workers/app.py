"""The Celery app of the workers, configured from the shared settings (shared/queueing.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Task

from shared.queueing import make_celery
from shared.settings import get_settings

app = make_celery(get_settings())
# A worker must outlive a Redis restart with its unacked messages: Celery's own consumer dies in most restarts
# (celery 5.7) and leaves them to visibility_timeout. See workers/broker_recovery.py.
app.conf.worker_consumer = "workers.broker_recovery:RecoveringConsumer"


def genqueue_task(name: str) -> Callable[[Callable[..., Any]], Task]:
    """Register a step task: bound (it needs its own task id), routed by name, taking only a job id."""

    def register(function: Callable[..., Any]) -> Task:
        return app.task(name=name, bind=True, typing=True)(function)

    return register
