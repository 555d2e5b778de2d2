"""What the submit step decides, in the order it decides it: whether the job may still go (batch deadline, an
earlier unanswered intent), whether it waits for capacity, the intent before the POST, and after the POST the
vendor's answer or error as a transition plus the effects on the provider's limits.

The rule behind all of them: a job is never paid for twice by genqueue's doing. A submit that may have been taken
by the vendor (sent with its answer lost, or a 2xx genqueue could not read) is not sent again unless the provider
allows resubmits (`allow_resubmit`); it fails with `submit_outcome_unknown`. A refusal (4xx, 429, 5xx) or a
request never sent was not taken, so a transient one is retried within its code's budget.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from shared import costs, lifecycle
from shared.decisions import Effects
from shared.decisions.dispatch import deadline_reason
from shared.errors import (
    GenqueueError,
    InsufficientCredits,
    JobTimeout,
    ProviderUnavailable,
    SubmitOutcomeUnknown,
    Transient,
)
from shared.models import Charge, Cost, Job, JobStatus
from shared.protection import Admission
from shared.providers.base import HttpAnswer, SubmitResult, is_success
from shared.providers.client import SendFailed
from shared.settings import Settings


def deadline_cancel(job: Job, now: datetime) -> str | None:
    """Why a batch job must be canceled instead of submitted (its batch's deadline passed before any submit
    started), or None when it may go."""
    if job.submit_by is not None and job.submit_started_at is None and now >= job.submit_by:
        return deadline_reason(job.submit_by)
    return None


def resubmit_refusal(job: Job, allow_resubmit: bool) -> SubmitOutcomeUnknown | None:
    """The error that stops a submit finding an earlier intent with no task id (a worker died mid-POST), unless
    the provider allows resubmits; None when it may POST."""
    if job.submit_started_at is None or allow_resubmit:
        return None
    return SubmitOutcomeUnknown(
        f"an earlier submit to {job.provider} started at {job.submit_started_at.isoformat()} may have been"
        " accepted; not resubmitting, so the job is not paid for twice"
    )


def over_capacity(
    job: Job, task_id: str, admission: Admission, settings: Settings, now: datetime, rng: random.Random
) -> Job | None:
    """A job the provider's limits did not admit: its submit step again later (holding no worker, its retry budget
    untouched), or past its deadline a `timeout` failure."""
    if now > job.deadline_at:
        error = JobTimeout(f"{job.provider} had no capacity before the deadline ({admission.reason})")
        return lifecycle.fail_owned(job, task_id, lifecycle.as_job_error(error, settings), now)
    wait = min(admission.wait_seconds, settings.capacity_recheck_seconds, settings.max_countdown_seconds)
    return lifecycle.reschedule(job, task_id, now, wait * rng.uniform(1.0, 1.25))


def record_intent(job: Job, task_id: str, dialect: str, settings: Settings, now: datetime) -> Job | None:
    """The intent, written before the POST: when the submit started, the dialect it goes to (the charge rule), and
    the step's lease lengthened to the vendor call's, so no takeover can send a second POST while this one may
    still be answered. Until then the step held only the short lease of its claim: a submit that waits for
    capacity, or whose next write a failover loses, is free again soon."""
    if not lifecycle.owns_step(job, task_id):
        return None
    intent = job.charge.model_copy(update={"dialect": dialect})
    leased = lifecycle.with_lease(job, now + timedelta(seconds=lifecycle.vendor_call_lease_seconds(settings)))
    return lifecycle.advance(leased, task_id, now, step=leased.step, submit_started_at=now, charge=intent)


def intent_withdrawn(job: Job, task_id: str, settings: Settings, now: datetime) -> Job | None:
    """An intent that did not reach a replica in time, withdrawn before anything was sent: the submit step again
    after `capacity_recheck_seconds`. Sent now, a failover could forget that it had been, and pay for it twice."""
    withdrawn = job.model_copy(
        update={"submit_started_at": None, "charge": job.charge.model_copy(update={"dialect": None})}
    )
    return lifecycle.reschedule(withdrawn, task_id, now, settings.capacity_recheck_seconds)


def reported_charge(intent: Charge, result: SubmitResult) -> Charge:
    """The cost record once the vendor took the job: the intent's, with what its answer said it charges."""
    return intent.model_copy(update={"reported": Cost.model_validate(result.cost.model_dump())})


def accepted(
    job: Job,
    task_id: str,
    result: SubmitResult,
    task_scope: str | None,
    charge: Charge,
    settings: Settings,
    now: datetime,
) -> Job | None:
    """The vendor took the job: submitted, its task id and charge recorded, its first poll when the vendor's
    estimate says. None when the step is no longer this task's (canceled during the POST: see
    lifecycle.accepted_after_cancel)."""
    first_poll = now + timedelta(seconds=lifecycle.first_poll_delay_seconds(settings, result.estimated_seconds))
    return lifecycle.advance(
        job,
        task_id,
        now,
        JobStatus.SUBMITTED,
        lifecycle.new_step("poll", first_poll),
        provider_task_id=result.task_id,
        provider_task_scope=task_scope,
        charge=charge,
        # until the job ends it counts as the vendor's figure, or the estimate where the vendor gives none
        cost=costs.amount(charge, "unknown"),
    )


#: the vendor took a submit: carried out before the job is written
ACCEPTED = Effects(breaker_success=True)


def accepted_effects(written: Job | None, late: Job | None) -> Effects:
    """After an accepted submit is written: the slot is freed only when the job was neither written as submitted
    nor followed as canceled (`late`, lifecycle.accepted_after_cancel): a canceled job the vendor took keeps it."""
    return Effects(free_slot=written is None and late is None)


def may_have_been_accepted(exc: GenqueueError, answer: HttpAnswer | None) -> bool:
    """Whether the vendor may have taken a submit that ended in `exc`: sent with its answer lost, or a 2xx answer
    genqueue could not read. A refusal (4xx, 429, 5xx) or a request never sent was not taken."""
    if isinstance(exc, SendFailed):
        return exc.sent
    return isinstance(exc, Transient) and answer is not None and is_success(answer)


def error_effects(exc: GenqueueError) -> Effects:
    """A submit that got no task id frees its slot; a vendor out of credits pauses the provider, a failing one
    (5xx, transport) counts towards its breaker."""
    if isinstance(exc, InsufficientCredits):
        return Effects(free_slot=True, credit_pause=exc.message)
    return Effects(free_slot=True, breaker_failure=isinstance(exc, ProviderUnavailable))


def unanswered(
    job: Job,
    task_id: str,
    exc: GenqueueError,
    answer: HttpAnswer | None,
    allow_resubmit: bool,
    settings: Settings,
    now: datetime,
    rng: random.Random,
) -> Job | None:
    """A submit that ended in `exc` with no task id: failed, or retried, never risking a second charge. None when
    the step is no longer this task's (canceled during the POST: see `unanswered_outcome`)."""
    if may_have_been_accepted(exc, answer) and not allow_resubmit:
        if isinstance(exc, SendFailed):
            error = SubmitOutcomeUnknown(f"submit to {job.provider} sent but its answer was lost: {exc}")
        else:  # a 2xx we cannot read: the vendor most likely accepted (and charged) the job
            error = SubmitOutcomeUnknown(
                f"{job.provider} accepted the submit but its answer was unreadable: {exc.message}"
            )
        return lifecycle.fail_owned(job, task_id, lifecycle.as_job_error(error, settings), now)
    if isinstance(exc, Transient):  # the vendor did not take the job (or resubmits are allowed): again is safe
        return lifecycle.retry_or_fail(job, task_id, exc, settings, now, rng, exc.retry_after, submit_started_at=None)
    return lifecycle.fail_owned(job, task_id, lifecycle.as_job_error(exc, settings), now)


def unanswered_outcome(exc: GenqueueError, answer: HttpAnswer | None) -> costs.Outcome:
    """How a submit with no task id ended, for the charge of a job canceled during its POST
    (lifecycle.unanswered_after_cancel): maybe taken, or not taken."""
    return costs.Outcome.MAYBE_ACCEPTED if may_have_been_accepted(exc, answer) else costs.Outcome.NOT_ACCEPTED
