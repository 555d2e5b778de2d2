"""Whether a job was charged, and how much: a pure function of the dialect's rule, the job's state and the vendor's
answer.

Each dialect's rule follows its vendor's document (summarized in docs/dialects.md):

| dialect | accepted, succeeded | accepted, failed | accepted, end unknown |
|---|---|---|---|
| veogen | yes (`price_usd`: "the exact USD amount charged") | no ("you were not charged") | unknown |
| veo3api | yes | yes ("credits are deducted immediately when generation starts") | yes |
| vicsee | yes (`creditsUsed`: "credits consumed") | unknown (the document says nothing of refunds) | unknown |
| gateway | unknown (the document says nothing of charging) | unknown | unknown |
| sandbox | yes | yes (the sandbox deducts its balance on accepting a task) | yes |

A job the vendor never accepted (refused, or held and canceled before its submit) is not charged; a submit whose
answer was lost may have been accepted, so whether it was charged is unknown, whatever the dialect. An unknown
dialect's every outcome is unknown.
"unknown" counts as charged wherever money is counted (batch budgets, spend, `genqueue stats`, metrics): at the
vendor's own figure where it gave one, else at the estimate.
"""

from __future__ import annotations

import enum

from shared.models import Charge, Charged, Cost, Job, JobStatus


class Outcome(enum.StrEnum):
    """How a job ended as far as the vendor is concerned."""

    #: the vendor never took the job (no submit sent, or it refused it)
    NOT_ACCEPTED = "not_accepted"
    #: the vendor reported the generation succeeded
    SUCCEEDED = "succeeded"
    #: the vendor reported the generation failed
    FAILED = "failed"
    #: the vendor took the job and genqueue does not know how it ended there
    UNKNOWN = "unknown"
    #: a submit was sent and its answer lost (or the job was canceled during the POST): the vendor may have it
    MAYBE_ACCEPTED = "maybe_accepted"


#: dialect -> outcome -> charged, for jobs the vendor accepted (see the module docstring for the sources)
RULES: dict[str, dict[Outcome, Charged]] = {
    "veogen": {Outcome.SUCCEEDED: "yes", Outcome.FAILED: "no", Outcome.UNKNOWN: "unknown"},
    "veo3api": {Outcome.SUCCEEDED: "yes", Outcome.FAILED: "yes", Outcome.UNKNOWN: "yes"},
    "vicsee": {Outcome.SUCCEEDED: "yes", Outcome.FAILED: "unknown", Outcome.UNKNOWN: "unknown"},
    "gateway": {Outcome.SUCCEEDED: "unknown", Outcome.FAILED: "unknown", Outcome.UNKNOWN: "unknown"},
    "sandbox": {Outcome.SUCCEEDED: "yes", Outcome.FAILED: "yes", Outcome.UNKNOWN: "yes"},
}


def charged(dialect: str | None, outcome: Outcome) -> Charged:
    """Whether a job of `dialect` that ended with `outcome` was charged, by its vendor's documented rule."""
    if outcome is Outcome.NOT_ACCEPTED:
        return "no"
    if outcome is Outcome.MAYBE_ACCEPTED:
        return "unknown"
    if dialect is None or dialect not in RULES:
        return "unknown"
    return RULES[dialect][outcome]


def amount(charge: Charge, was_charged: Charged) -> Cost:
    """What a job counts as costing: nothing when not charged; else the vendor's figure, or the estimate without one.

    Not charged gives 0 in each unit the job was priced in (and None in the others), so the public JSON shows
    "cost 0" rather than "cost unknown".
    """
    figure = charge.reported if _priced(charge.reported) else charge.estimate
    if was_charged == "no":
        return Cost(
            credits=None if figure.credits is None else 0.0,
            usd=None if figure.usd is None else 0.0,
        )
    return Cost(credits=figure.credits, usd=figure.usd)


def outcome_of(job: Job) -> Outcome:
    """How an ended `job` stands at the vendor: the vendor's own answer when it gave one, else from the job's state
    (accepted with no answer about its end: unknown)."""
    if job.charge.vendor_outcome == "succeeded":
        return Outcome.SUCCEEDED
    if job.charge.vendor_outcome == "failed":
        return Outcome.FAILED
    if job.provider_task_id is None:
        # an intent with no task id: the answer was lost, or the POST is still in flight; the vendor may have it
        return Outcome.MAYBE_ACCEPTED if job.submit_started_at is not None else Outcome.NOT_ACCEPTED
    return Outcome.UNKNOWN


def renders(job: Job) -> bool:
    """True while the vendor may still be rendering `job`: it accepted it and has not reported how it ended.

    A job accepted before cost records were kept (no dialect in its record) is never followed after a cancel.
    """
    return job.provider_task_id is not None and job.charge.dialect is not None and job.charge.vendor_outcome is None


def submitting(job: Job) -> bool:
    """True while the vendor's answer to `job`'s submit is not known: an intent recorded and no task id yet (the POST
    may be in flight, or its answer was lost with a worker), so the vendor may be rendering it."""
    return (
        job.submit_started_at is not None
        and job.provider_task_id is None
        and job.charge.dialect is not None
        and job.charge.vendor_outcome is None
    )


def awaiting_vendor(job: Job) -> bool:
    """True for a canceled job the vendor may still render (accepted and not reported ended, or its submit not yet
    answered): genqueue follows it, holding its in-flight slot, until how it ended there is known."""
    return job.status is JobStatus.CANCELED and job.charged is None and (renders(job) or submitting(job))


def decide(job: Job, outcome: Outcome) -> Job:
    """`job` with `charged` and `cost` decided for `outcome` (pure; returns a copy).

    A job stored before the cost record existed has neither an estimate nor a vendor figure in it: its `cost`
    stands for both.
    """
    record = job.charge
    if not _priced(record.reported) and not _priced(record.estimate):
        record = record.model_copy(update={"estimate": job.cost})
    was_charged = charged(record.dialect, outcome)
    return job.model_copy(update={"charged": was_charged, "cost": amount(record, was_charged)})


def booked(job: Job) -> Job:
    """`job` as money is counted once it ended: as decided, or (a record that ended before charges were decided)
    decided now from its state."""
    return job if job.charged is not None else decide(job, outcome_of(job))


def in_usd(cost: Cost, usd_per_credit: float | None) -> float | None:
    """`cost` in USD: its USD figure, else its credits at `usd_per_credit` (a provider's USD_PER_CREDIT); None when
    neither is known."""
    if cost.usd is not None:
        return cost.usd
    if cost.credits is not None and usd_per_credit is not None:
        return round(cost.credits * usd_per_credit, 6)
    return None


def counted(job: Job, currency: str) -> float:
    """What a budget in `currency` ("credits" or "usd") counts for `job` as it is now (0 for none)."""
    value: float | None = getattr(job.cost, currency)
    return value or 0.0


def _priced(cost: Cost) -> bool:
    return cost.credits is not None or cost.usd is not None
