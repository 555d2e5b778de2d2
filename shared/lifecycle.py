"""Pure transitions of a job: who may run its next step, and what each outcome changes.

Every function takes a Job (and the time) and returns a new Job, or None when the transition does not apply to
the job as it is now (it moved on, or another task owns its step). The job store applies them atomically, so
they are safe against duplicate and late tasks; the workers only choose which one to apply.
"""

from __future__ import annotations

import enum
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.errors import GenqueueError
from shared.models import (
    PUBLIC_FIELDS,
    STATUS_RANK,
    Job,
    JobError,
    JobStatus,
    Output,
    Step,
    StepName,
    WebhookState,
    utcnow,
)
from shared.settings import Settings
from shared.webhooks.events import event_type_for

#: a task that arrives up to this early (clock skew between machines) still runs its step
EARLY_TOLERANCE = timedelta(seconds=1)


class Decision(enum.Enum):
    """What a task should do with the step it was sent for."""

    RUN = "run"
    #: not due yet, or another run holds the lease: check again after `delay`
    WAIT = "wait"
    #: a duplicate or stale task: the job has moved on
    DROP = "drop"


@dataclass(frozen=True)
class Claim:
    """The answer to a task asking for its step: the decision, the claimed job (RUN), the delay (WAIT)."""

    decision: Decision
    job: Job | None = None
    delay: float = 0.0


def new_step(name: StepName, due_at: datetime, attempt: int = 0, retries: dict[str, int] | None = None) -> Step:
    """A step with a fresh task id: only the task published with that id may run it."""
    return Step(name=name, task_id=uuid.uuid4().hex, due_at=due_at, attempt=attempt, retries=dict(retries or {}))


def claim(job: Job, name: StepName, task_id: str, now: datetime, lease_seconds: float) -> tuple[Claim, Job | None]:
    """Decide what task `task_id` sent for step `name` should do; the job to write when it runs (lease taken)."""
    step = job.step
    if step is None or step.name != name or step.task_id != task_id:
        return Claim(Decision.DROP), None
    if step.due_at > now + EARLY_TOLERANCE:
        return Claim(Decision.WAIT, delay=(step.due_at - now).total_seconds()), None
    if step.lease_until is not None and step.lease_until > now:
        return Claim(Decision.WAIT, delay=(step.lease_until - now).total_seconds()), None
    leased = job.model_copy(deep=True)
    assert leased.step is not None
    leased.step.lease_until = now + timedelta(seconds=lease_seconds)
    return Claim(Decision.RUN, job=leased), leased


def renew_lease(job: Job, task_id: str, now: datetime, lease_seconds: float) -> Job | None:
    """Extend the lease of the step task `task_id` is running; None when the step is no longer its own."""
    if not owns_step(job, task_id) or job.step is None or job.step.lease_until is None:
        return None
    renewed = job.model_copy(deep=True)
    assert renewed.step is not None
    renewed.step.lease_until = now + timedelta(seconds=lease_seconds)
    return renewed


def owns_step(job: Job, task_id: str) -> bool:
    """True while the job's step is still the one task `task_id` claimed."""
    return job.step is not None and job.step.task_id == task_id


def advance(
    job: Job, task_id: str, now: datetime, status: JobStatus | None = None, step: Step | None = None, **fields: object
) -> Job | None:
    """Move a job forward from the step task `task_id` owns: new status (never backwards), next step, fields."""
    if not owns_step(job, task_id):
        return None
    if status is not None and STATUS_RANK[status] < STATUS_RANK[job.status]:
        return None
    new = job.model_copy(deep=True, update=fields)
    if status is not None:
        new.status = status
    new.step = step
    if (status is not None and status is not job.status) or PUBLIC_FIELDS.intersection(fields):
        new.updated_at = now
    return new


def succeed_owned(job: Job, task_id: str, now: datetime, outputs: list[Output]) -> Job | None:
    """End a job as succeeded with its stored outputs, from the step task `task_id` owns."""
    if not owns_step(job, task_id):
        return None
    return finish(job.model_copy(update={"outputs": outputs}), JobStatus.SUCCEEDED, now)


def finish(job: Job, status: JobStatus, now: datetime, error: JobError | None = None) -> Job | None:
    """End a job (succeeded, failed or canceled) and, when it has a webhook URL, schedule the event's delivery.

    None when the job already ended: a job ends once, and its webhook event is created once.
    """
    if job.status.terminal:
        return None
    new = job.model_copy(deep=True)
    new.status = status
    new.error = error
    new.updated_at = now
    new.step = None
    if job.webhook_url:
        new.webhook = WebhookState(event_id=f"msg_{uuid.uuid4().hex}", event_type=event_type_for(status), timestamp=now)
        new.step = new_step("deliver_webhook", now)
    return new


def fail_owned(job: Job, task_id: str, error: GenqueueError, now: datetime) -> Job | None:
    """Fail a job from the step task `task_id` owns, with the error's code and message."""
    if not owns_step(job, task_id):
        return None
    return finish(job, JobStatus.FAILED, now, JobError(code=error.code, message=error.message))


def cancel_owned(job: Job, task_id: str, reason: str, now: datetime) -> Job | None:
    """Cancel a job, with `reason`, from the step task `task_id` owns."""
    if not owns_step(job, task_id):
        return None
    return finish(job, JobStatus.CANCELED, now, JobError(code="canceled", message=reason))


def cancel(job: Job, now: datetime | None = None) -> Job | None:
    """Cancel a job that has not ended; None when it already ended."""
    return finish(job, JobStatus.CANCELED, now or utcnow(), JobError(code="canceled", message="canceled by the caller"))


def backoff_seconds(settings: Settings, attempt: int, retry_after: float | None, rng: random.Random) -> float:
    """Delay before retry number `attempt` (1-based): exponential with ±25 % jitter, at least Retry-After."""
    base = settings.retry_base_seconds * (2 ** (attempt - 1))
    delay = min(base, settings.poll_max_interval_seconds) * rng.uniform(0.75, 1.25)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return float(min(delay, settings.max_countdown_seconds))


def poll_delay_seconds(settings: Settings, poll_count: int, rng: random.Random) -> float:
    """Delay before the next poll: grows by the backoff factor from the initial interval, capped, with jitter."""
    base = settings.poll_initial_seconds * settings.poll_backoff_factor**poll_count
    capped = min(base, settings.poll_max_interval_seconds)
    return capped * rng.uniform(1 - settings.poll_jitter, 1 + settings.poll_jitter)


def first_poll_delay_seconds(settings: Settings, estimated_seconds: float | None) -> float:
    """The first poll waits for the vendor's own estimate where it gives one, else the initial interval."""
    if estimated_seconds is None or estimated_seconds <= 0:
        return settings.poll_initial_seconds
    return min(estimated_seconds, settings.poll_max_interval_seconds)


def resume_overdue(job: Job, now: datetime, grace_seconds: float) -> Job | None:
    """Give an overdue step a fresh task id, for the sweeper to publish; None when the step is not overdue.

    A step is overdue when it was due more than `grace_seconds` ago and no run holds its lease: its task was
    lost (a Redis crash, a publish that never happened) or its worker died. The old task id stops being valid,
    so if the lost task turns up after all it drops itself: the job still has exactly one chain.
    """
    step = job.step
    if step is None or step.due_at > now - timedelta(seconds=grace_seconds):
        return None
    if step.lease_until is not None and step.lease_until > now:
        return None
    resumed = job.model_copy(deep=True)
    resumed.step = new_step(step.name, now, step.attempt, step.retries)
    return resumed


def redeliver(job: Job, now: datetime) -> Job | None:
    """Schedule the job's webhook event again, with the same webhook-id; None if the job has no event yet."""
    if not job.status.terminal or job.webhook is None or job.webhook_url is None:
        return None
    new = job.model_copy(deep=True)
    assert new.webhook is not None
    new.webhook.delivered = False
    new.webhook.gave_up = None
    new.step = new_step("deliver_webhook", now)
    return new
