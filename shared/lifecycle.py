"""Pure transitions of a job: who may run its next step, and what each outcome changes.

Every transition takes a Job (and the time, and the settings where a budget or a schedule is involved) and
returns a new Job, or None when it does not apply to the job as it is now (it moved on, or another task owns its
step). The job store applies them atomically, so they are safe against duplicate and late tasks. Which one a
stage applies is decided in shared/decisions/; the workers and the producer only write them
(shared/queueing.write_and_publish).
"""

from __future__ import annotations

import enum
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from shared import costs
from shared.errors import GenqueueError, redact
from shared.models import (
    PUBLIC_FIELDS,
    STATUS_RANK,
    Charge,
    Job,
    JobError,
    JobStatus,
    Output,
    Step,
    StepName,
    VendorOutcome,
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


T = TypeVar("T")


@dataclass(frozen=True)
class Claim(Generic[T]):
    """The answer to a task asking for its step (a job's or a batch's): the decision, the claimed record (RUN), the
    delay (WAIT)."""

    decision: Decision
    record: T | None = None
    delay: float = 0.0


class LeasedStep(Protocol):
    """What a job's Step and a batch's BatchStep share: the one task that may run it, when, and its lease."""

    task_id: str
    due_at: datetime
    lease_until: datetime | None


def step_decision(step: LeasedStep | None, task_id: str, now: datetime) -> tuple[Decision, float]:
    """What task `task_id` should do with `step` (None: the record has no such step): DROP unless the step names
    it; WAIT, with the delay, while the step is not due or another run holds its lease; else RUN."""
    if step is None or step.task_id != task_id:
        return Decision.DROP, 0.0
    if step.due_at > now + EARLY_TOLERANCE:
        return Decision.WAIT, (step.due_at - now).total_seconds()
    if step.lease_until is not None and step.lease_until > now:
        return Decision.WAIT, (step.lease_until - now).total_seconds()
    return Decision.RUN, 0.0


def new_step(name: StepName, due_at: datetime, retries: dict[str, int] | None = None) -> Step:
    """A step with a fresh task id: only the task published with that id may run it (its retries so far kept)."""
    return Step(name=name, task_id=uuid.uuid4().hex, due_at=due_at, retries=dict(retries or {}))


def claim(job: Job, name: StepName, task_id: str, now: datetime, lease_seconds: float) -> tuple[Claim[Job], Job | None]:
    """Decide what task `task_id` sent for step `name` should do; the job to write when it runs (lease taken)."""
    step = job.step if job.step is not None and job.step.name == name else None
    decision, delay = step_decision(step, task_id, now)
    if decision is not Decision.RUN:
        return Claim(decision, delay=delay), None
    leased = with_lease(job, now + timedelta(seconds=lease_seconds))
    return Claim(Decision.RUN, leased), leased


def with_lease(job: Job, until: datetime) -> Job:
    """`job` (which has a step) with its step leased until `until`; a copy of the two it changes (the rest is
    shared: transitions replace what they change, never edit it in place, so sharing is safe and spares a deep
    copy per write)."""
    assert job.step is not None
    return job.model_copy(update={"step": job.step.model_copy(update={"lease_until": until})})


def renew_lease(job: Job, task_id: str, now: datetime, lease_seconds: float) -> Job | None:
    """Extend the lease of the step task `task_id` is running to at least `lease_seconds` from `now`; None when the
    step is no longer its own, or already holds a longer lease (a submit's intent takes the vendor call's: a renewal
    never shortens it)."""
    if not owns_step(job, task_id) or job.step is None or job.step.lease_until is None:
        return None
    until = now + timedelta(seconds=lease_seconds)
    if job.step.lease_until >= until:
        return None
    return with_lease(job, until)


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
    new = job.model_copy(update=fields)  # shallow: see with_lease
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


#: appended to the reason of a job canceled while its vendor renders it
NOT_STOPPED_NOTE = (
    "; the vendor was not asked to stop (its API cannot cancel a task) and may still finish and charge for it:"
    " genqueue follows the task until it ends, to free its in-flight slot and record the charge"
)


def finish(
    job: Job,
    status: JobStatus,
    now: datetime,
    error: JobError | None = None,
    vendor_outcome: VendorOutcome | None = None,
) -> Job | None:
    """End a job (succeeded, failed or canceled) and, when it has a webhook URL, schedule the event's delivery.

    What the job was charged is decided here (shared/costs.py), from `vendor_outcome` (what the vendor reported,
    when it did) and the job's state; except for a job canceled while the vendor renders it: its charge stays
    undecided (`charged` None, `cost` the vendor's figure or the estimate) and its next step, after the webhook
    if it has one, is a quiet poll that follows the task to its end (`ended_at_vendor`).

    None when the job already ended: a job ends once, and its webhook event is created once.
    """
    if job.status.terminal:
        return None
    new = job.model_copy(deep=True)
    new.status = status
    new.error = error
    new.updated_at = now
    new.step = None
    if vendor_outcome is not None:
        new.charge.vendor_outcome = vendor_outcome
    follow = status is JobStatus.CANCELED and (costs.renders(new) or costs.submitting(new))
    if follow:
        if new.error is not None:
            new.error = JobError(code=new.error.code, message=new.error.message + NOT_STOPPED_NOTE)
    else:
        new = costs.decide(new, costs.outcome_of(new))
    if job.webhook_url:
        new.webhook = WebhookState(event_id=f"msg_{uuid.uuid4().hex}", event_type=event_type_for(status), timestamp=now)
        new.step = new_step("deliver_webhook", now)
    elif follow:
        new.step = new_step("poll", now)
    return new


def after_event(job: Job, now: datetime) -> Step | None:
    """The step after a job's webhook event is done with (delivered or given up): a quiet poll while the vendor
    still renders a canceled job, else none."""
    return new_step("poll", now) if costs.awaiting_vendor(job) else None


def follow_step(job: Job, poll_at: datetime) -> Step:
    """The next step of a canceled job genqueue follows: its next poll at `poll_at`, or its webhook's retry when
    that is due first, so neither waits for the other (a job has one step at a time)."""
    retry_at = _webhook_retry_at(job)
    if retry_at is not None and retry_at <= poll_at:
        return new_step("deliver_webhook", retry_at)
    return new_step("poll", poll_at)


def _webhook_retry_at(job: Job) -> datetime | None:
    hook = job.webhook
    if hook is None or hook.delivered or hook.gave_up is not None:
        return None
    return hook.next_attempt_at


def ended_at_vendor(job: Job, task_id: str, outcome: costs.Outcome, now: datetime) -> Job | None:
    """Record how the vendor ended a canceled job genqueue was following, from the poll task `task_id` owns: its
    charge is decided and nothing is left to do. None when the step is not that task's or the job is not followed.
    """
    if not owns_step(job, task_id) or not costs.awaiting_vendor(job):
        return None
    return _vendor_ended(job, outcome, now)


def accepted_after_cancel(
    job: Job, now: datetime, provider_task_id: str, provider_task_scope: str | None, charge: Charge
) -> Job | None:
    """Record the vendor's task id on a job canceled while its submit POST was in flight, from that submit: the
    vendor took it, so genqueue follows the task (its next step a quiet poll now, unless its webhook's delivery is
    pending: the polls follow that). None when the job is not a canceled one waiting for its submit's answer.
    """
    if not costs.awaiting_vendor(job) or not costs.submitting(job):
        return None
    new = job.model_copy(
        deep=True,
        update={
            "provider_task_id": provider_task_id,
            "provider_task_scope": provider_task_scope,
            "charge": charge,
            "cost": costs.amount(charge, "unknown"),
            "updated_at": now,
        },
    )
    if new.step is None or new.step.name == "poll":
        new.step = follow_step(new, now)
    return new


def unanswered_after_cancel(job: Job, outcome: costs.Outcome, now: datetime) -> Job | None:
    """Record how the submit of a job canceled during its POST ended without a task id: refused (`NOT_ACCEPTED`,
    not charged) or with its answer lost (`MAYBE_ACCEPTED`, charged unknown). None when the job is not a canceled
    one waiting for its submit's answer."""
    if not costs.awaiting_vendor(job) or not costs.submitting(job):
        return None
    new = _vendor_ended(job, outcome, now)
    if job.step is not None and job.step.name == "deliver_webhook":
        new.step = job.step  # the canceled event's delivery goes on
    return new


def _vendor_ended(job: Job, outcome: costs.Outcome, now: datetime) -> Job:
    new = job.model_copy(deep=True)
    if outcome is costs.Outcome.SUCCEEDED:
        new.charge.vendor_outcome = "succeeded"
    elif outcome is costs.Outcome.FAILED:
        new.charge.vendor_outcome = "failed"
    new = costs.decide(new, outcome)
    retry_at = _webhook_retry_at(new)
    new.step = None if retry_at is None else new_step("deliver_webhook", retry_at)
    new.updated_at = now
    return new


def fail_owned(
    job: Job, task_id: str, error: GenqueueError, now: datetime, vendor_outcome: VendorOutcome | None = None
) -> Job | None:
    """Fail a job from the step task `task_id` owns, with the error's code and message (and how the vendor said
    the task ended, when it said)."""
    if not owns_step(job, task_id):
        return None
    return finish(job, JobStatus.FAILED, now, JobError(code=error.code, message=error.message), vendor_outcome)


def cancel_owned(job: Job, task_id: str, reason: str, now: datetime) -> Job | None:
    """Cancel a job, with `reason`, from the step task `task_id` owns."""
    if not owns_step(job, task_id):
        return None
    return finish(job, JobStatus.CANCELED, now, JobError(code="canceled", message=reason))


def cancel(job: Job, now: datetime | None = None) -> Job | None:
    """Cancel a job that has not ended; None when it already ended."""
    return finish(job, JobStatus.CANCELED, now or utcnow(), JobError(code="canceled", message="canceled by the caller"))


def as_job_error(error: GenqueueError, settings: Settings) -> GenqueueError:
    """`error` as a job may keep it: every secret the settings hold redacted from its message."""
    return error.reworded(redact(error.message, settings.secrets()))


def retry_or_fail(
    job: Job,
    task_id: str,
    error: GenqueueError,
    settings: Settings,
    now: datetime,
    rng: random.Random,
    retry_after: float | None = None,
    **fields: object,
) -> Job | None:
    """Run the step task `task_id` owns again after a backoff (with `fields` set), or fail the job with `error`
    (redacted) once its code's retry budget is spent. None when the step is no longer that task's."""
    if not owns_step(job, task_id) or job.step is None:
        return None
    retries = {**job.step.retries, error.code: job.step.retries.get(error.code, 0) + 1}
    if retries[error.code] > settings.retry_budget(error.code):
        spent = f"{job.provider} {job.step.name}: {error.message} (gave up after {retries[error.code] - 1} retries)"
        return fail_owned(job, task_id, as_job_error(error.reworded(spent), settings), now)
    delay = backoff_seconds(settings, sum(retries.values()), retry_after, rng)
    step = new_step(job.step.name, now + timedelta(seconds=delay), retries)
    return advance(job, task_id, now, status=None, step=step, **fields)


def reschedule(job: Job, task_id: str, now: datetime, delay_seconds: float) -> Job | None:
    """Run the step task `task_id` owns again after `delay_seconds`, under a new task id, its retries untouched
    (a job waiting for capacity)."""
    if job.step is None:
        return None
    step = new_step(job.step.name, now + timedelta(seconds=delay_seconds), job.step.retries)
    return advance(job, task_id, now, step=step)


def release(job: Job, now: datetime) -> Job | None:
    """Give a held batch job its submit step; None when it was released, canceled or ended meanwhile."""
    if job.status is not JobStatus.QUEUED or job.step is not None:
        return None
    released = job.model_copy(deep=True)
    released.step = new_step("submit", now)
    released.updated_at = now
    return released


def cancel_held(job: Job, reason: str, now: datetime) -> Job | None:
    """Cancel a held batch job with `reason`; None when it was released meanwhile (its submit step checks the
    batch deadline itself) or it ended."""
    if job.step is not None:
        return None
    return finish(job, JobStatus.CANCELED, now, JobError(code="canceled", message=reason))


def mark_retried(job: Job, line: int) -> Job:
    """Note on a failed batch job that `batch retry` enqueued it again, as line `line`."""
    new = job.model_copy(deep=True)
    new.metadata["genqueue_retried_as"] = f"line {line}"
    return new


def backoff_seconds(settings: Settings, attempt: int, retry_after: float | None, rng: random.Random) -> float:
    """Delay before retry number `attempt` (1-based): exponential with ±25 % jitter, at least Retry-After."""
    base = settings.retry_base_seconds * (2 ** (attempt - 1))
    delay = min(base, settings.poll_max_interval_seconds) * rng.uniform(0.75, 1.25)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return float(min(delay, settings.max_countdown_seconds))


def vendor_call_lease_seconds(settings: Settings) -> float:
    """How long a submit or poll step holds its lease: past the longest vendor call, with room for the writes."""
    return settings.provider_timeout_seconds * 1.5 + 30


def submit_answered_by(settings: Settings, job: Job) -> datetime | None:
    """When the submit whose intent `job` records has had its answer or lost its lease (None: no intent)."""
    if job.submit_started_at is None:
        return None
    return job.submit_started_at + timedelta(seconds=vendor_call_lease_seconds(settings))


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
    resumed.step = new_step(step.name, now, step.retries)
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
