"""The Celery workers: `celery -A workers worker` consumes the queues submit, poll, finalize and webhooks.

Data flows submit → poll → finalize → deliver_webhook; each module holds one stage's task.
"""

from workers import batch_webhooks, dispatcher, finalize, poll, submit, sweeper, webhooks  # noqa: F401  (register the tasks)
from workers.app import app

__all__ = ["app"]
