"""What the dispatcher decides for a batch's held jobs: when the batch's window is open (not before
`--not-before`, nothing but cancels past `--deadline`), how many to release or look at per pass, what to do with
each held job (release, cancel, drop, or stop for this pass), how a budget refuses a job, what an ended job is
settled at, and which queued jobs are orphans to hold again.

A budget is never passed: each job's estimate is reserved (atomically, in Redis) before it is released. A job
that does not fit waits while running jobs hold reservations that may come back, and is canceled with a reason
starting `budget_exhausted` once none are outstanding.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from shared import costs
from shared.batch import Batch
from shared.batch.pacing import release_allowance
from shared.decisions import route as route_rules
from shared.models import Job, JobStatus
from shared.protection import ProviderStatus


class Held(enum.Enum):
    """What to do with one held job."""

    #: give it its submit step (after its estimate is reserved, under a budget)
    RELEASE = "release"
    #: cancel it with the action's reason
    CANCEL = "cancel"
    #: no longer held: it ended, was released, or is gone
    DROP = "drop"
    #: leave it and the rest held until a later pass
    STOP = "stop"


@dataclass(frozen=True)
class Action:
    """The decision for one held job, with the cancel's reason."""

    held: Held
    reason: str = ""


@dataclass(frozen=True)
class Window:
    """Where a pass stands against the batch's times: before not-before nothing moves (`closed`); past the
    deadline every held job is canceled (`past_deadline`)."""

    closed: bool
    past_deadline: bool
    deadline_reason: str = ""


def deadline_reason(deadline: datetime) -> str:
    """The cancel reason of a job its batch's deadline stopped before it was submitted."""
    return f"the batch deadline {deadline.isoformat()} passed before it was submitted"


def window(batch: Batch, now: datetime) -> Window:
    """The batch's window at `now`."""
    if batch.deadline is not None and now >= batch.deadline:
        return Window(closed=False, past_deadline=True, deadline_reason=deadline_reason(batch.deadline))
    return Window(closed=batch.not_before is not None and now < batch.not_before, past_deadline=False)


def allowance(window: Window, status: ProviderStatus, in_queue: int, interval_seconds: float) -> int:
    """How many held jobs of a provider may be released this pass (none past the deadline)."""
    return 0 if window.past_deadline else release_allowance(status, in_queue, interval_seconds)


def examine_count(batch: Batch, window: Window, allowance: int, most: int) -> int:
    """How many held jobs to look at: all of `most` when some may be canceled (past the deadline, or under a
    budget), else as many as may be released."""
    return most if window.past_deadline or batch.budget is not None else min(allowance, most)


def held_action(job: Job | None, window: Window, room: int) -> Action:
    """The decision for held job `job` (None: expired) with `room` releases left in this pass."""
    if window.past_deadline:
        return Action(Held.CANCEL, window.deadline_reason)
    if room <= 0:
        return Action(Held.STOP)
    if job is None or job.status.terminal or job.step is not None:
        return Action(Held.DROP)
    return Action(Held.RELEASE)


def estimate(batch: Batch, job: Job, usd_per_credit: float | None = None) -> float:
    """What `job` reserves of the batch's budget: its estimate in the budget's currency (0 when it has none). Against
    a USD budget, an estimate in credits counts at its provider's `usd_per_credit`, and a job sent to a route (a
    route's budget is in USD) at the dearest of its candidates' USD estimates, since its submit may choose any."""
    assert batch.budget is not None
    if batch.budget.currency == "usd":
        if job.route is not None:
            return max((found.estimate_usd or 0.0 for found in route_rules.choosable(job.route)), default=0.0)
        return costs.in_usd(job.cost, usd_per_credit) or 0.0
    value: float | None = getattr(job.cost, batch.budget.currency)
    return value or 0.0


def over_budget(
    batch: Batch, job: Job, outstanding: int, committed: float, usd_per_credit: float | None = None
) -> Action:
    """A job whose reservation did not fit: wait while `outstanding` reservations may come back, else cancel."""
    if outstanding:
        return Action(Held.STOP)
    assert batch.budget is not None
    currency = batch.budget.currency
    return Action(
        Held.CANCEL,
        f"budget_exhausted: this job's estimated {estimate(batch, job, usd_per_credit):g} {currency} would take the"
        f" batch past its budget of {batch.budget.amount:g} ({committed:g} committed)",
    )


def settles_now(job: Job | None) -> bool:
    """Whether an ended job's reservation is settled now: not while the vendor still renders a canceled job
    (its charge is not known yet)."""
    return job is None or not costs.awaiting_vendor(job)


@dataclass(frozen=True)
class Settlement:
    """What an ended job is booked at: spent per currency, and what replaces its reservation (None: no budget)."""

    credits: float
    usd: float
    counted: float | None


def settlement(batch: Batch, job: Job, usd_per_credit: float | None = None) -> Settlement:
    """The booking of an ended job whose charge is decided (shared/costs.py: 0 where the vendor charged nothing,
    the vendor's figure or the estimate where whether it charged is unknown). A job that expired or cannot be
    read has no booking: its reservation stands as spent. Against a USD budget, a charge in credits counts at the
    provider's `usd_per_credit`, as its reservation did (at its reservation when that is no longer set)."""
    job = costs.booked(job)
    counted = None if batch.budget is None else costs.counted(job, batch.budget.currency)
    if batch.budget is not None and batch.budget.currency == "usd" and job.cost.usd is None:
        converted = costs.in_usd(job.cost, usd_per_credit)
        counted = estimate(batch, job, usd_per_credit) if converted is None else converted
    return Settlement(credits=job.cost.credits or 0.0, usd=job.cost.usd or 0.0, counted=counted)


def is_orphan(job: Job) -> bool:
    """A job of a batch that waits to be released but whose hold was lost: queued with no step (a released one
    has its submit step)."""
    return job.status is JobStatus.QUEUED and job.step is None
