"""What the webhook step decides after one attempt at a job's terminal event: the event's new state and the
job's next step, and whether the job goes on the dead-letter list.

A failed attempt with retries left is the next step, unless the vendor still renders a canceled job: then the
quiet polls go on and hand back to the retry when it is due (a job has one step at a time). A delivered or
given-up event leaves the step after it (lifecycle.after_event).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared import costs, lifecycle
from shared.models import Job, Step, WebhookState
from shared.webhooks.attempt import Attempted


def after_attempt(job: Job, attempted: Attempted, now: datetime) -> tuple[WebhookState, Step | None]:
    """The event's state with the attempt recorded, and the job's next step."""
    if attempted.result.gone or attempted.retry_in is None:
        return attempted.state, lifecycle.after_event(job, now)
    retry_at = now + timedelta(seconds=attempted.retry_in)
    if costs.awaiting_vendor(job):
        return attempted.state.model_copy(update={"next_attempt_at": retry_at}), lifecycle.new_step("poll", now)
    return attempted.state, lifecycle.new_step("deliver_webhook", retry_at)


def dead_letter(attempted: Attempted) -> bool:
    """Whether the event was given up on after its whole retry schedule (a 410 Gone is not a dead letter: the
    endpoint is marked gone instead)."""
    return not attempted.result.gone and attempted.retry_in is None and not attempted.state.delivered
