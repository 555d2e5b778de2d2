"""The charging rule (shared/costs.py) per dialect and outcome, and how job transitions record it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared import costs, lifecycle
from shared.costs import Outcome
from shared.errors import GenerationFailed, JobTimeout, SubmitOutcomeUnknown
from shared.models import Charge, Charged, Cost, GenerationRequest, Job, JobStatus, Output, VendorOutcome, utcnow

# dialect, outcome, charged: every documented rule, and what is assumed where the document is silent
RULE_TABLE: list[tuple[str | None, Outcome, Charged]] = [
    ("veogen", Outcome.SUCCEEDED, "yes"),
    ("veogen", Outcome.FAILED, "no"),  # "failed: you were not charged"
    ("veogen", Outcome.UNKNOWN, "unknown"),
    ("veo3api", Outcome.SUCCEEDED, "yes"),
    ("veo3api", Outcome.FAILED, "yes"),  # "credits are deducted immediately when generation starts"
    ("veo3api", Outcome.UNKNOWN, "yes"),
    ("vicsee", Outcome.SUCCEEDED, "yes"),
    ("vicsee", Outcome.FAILED, "unknown"),  # the document says nothing of refunds
    ("vicsee", Outcome.UNKNOWN, "unknown"),
    ("gateway", Outcome.SUCCEEDED, "unknown"),  # the document says nothing of charges
    ("gateway", Outcome.FAILED, "unknown"),
    ("gateway", Outcome.UNKNOWN, "unknown"),
    ("sandbox", Outcome.SUCCEEDED, "yes"),
    ("sandbox", Outcome.FAILED, "yes"),
    ("sandbox", Outcome.UNKNOWN, "yes"),
    ("nosuch", Outcome.SUCCEEDED, "unknown"),
    (None, Outcome.UNKNOWN, "unknown"),
]


@pytest.mark.parametrize(("dialect", "outcome", "expected"), RULE_TABLE)
def test_charging_rule_per_dialect_and_outcome(dialect: str | None, outcome: Outcome, expected: Charged) -> None:
    assert costs.charged(dialect, outcome) == expected


@pytest.mark.parametrize("dialect", [None, "veogen", "veo3api", "vicsee", "gateway", "sandbox", "nosuch"])
def test_a_job_the_vendor_never_accepted_is_never_charged(dialect: str | None) -> None:
    assert costs.charged(dialect, Outcome.NOT_ACCEPTED) == "no"
    assert costs.charged(dialect, Outcome.MAYBE_ACCEPTED) == "unknown"  # a lost submit answer, whatever the rule


# estimate, reported, charged -> the cost the job counts
AMOUNT_TABLE: list[tuple[Cost, Cost, Charged, Cost]] = [
    (Cost(usd=0.5), Cost(usd=0.3), "yes", Cost(usd=0.3)),  # the vendor's figure wins
    (Cost(usd=0.5), Cost(), "yes", Cost(usd=0.5)),  # no figure: the estimate
    (Cost(usd=0.5), Cost(usd=0.3), "no", Cost(usd=0.0)),  # 0 in the unit it was priced in, not "unknown"
    (Cost(credits=240), Cost(), "no", Cost(credits=0.0)),
    (Cost(credits=20), Cost(credits=20), "unknown", Cost(credits=20)),  # counts as charged
    (Cost(), Cost(), "no", Cost()),  # never priced (gateway): stays unpriced
]


@pytest.mark.parametrize(("estimate", "reported", "was_charged", "expected"), AMOUNT_TABLE)
def test_amount_counted(estimate: Cost, reported: Cost, was_charged: Charged, expected: Cost) -> None:
    assert costs.amount(Charge(estimate=estimate, reported=reported), was_charged) == expected


def job(
    dialect: str = "veogen",
    status: JobStatus = JobStatus.RUNNING,
    task_id: str | None = "task_1",
    reported: Cost | None = None,
    webhook: str | None = "https://example.com/hook",
) -> Job:
    now = utcnow()
    estimate = Cost(usd=0.5)
    return Job(
        id="job_1",
        status=status,
        provider=dialect,
        request=GenerationRequest(model="m"),
        provider_task_id=task_id,
        submit_started_at=now if task_id else None,
        cost=reported or estimate,
        charge=Charge(estimate=estimate, reported=reported or Cost(), dialect=dialect),
        webhook_url=webhook,
        deadline_at=now + timedelta(hours=1),
        step=lifecycle.new_step("poll", now),
    )


# dialect, how the job ends (fail with vendor outcome, succeed, timeout) -> charged and the usd it counts
END_TABLE: list[tuple[str, str, VendorOutcome | None, Charged, float]] = [
    ("veogen", "failed", "failed", "no", 0.0),
    ("veogen", "failed", None, "unknown", 0.3),  # a timeout: how it ended is not known
    ("veogen", "succeeded", "succeeded", "yes", 0.3),
    ("veogen", "failed", "succeeded", "yes", 0.3),  # rendered, then our download failed: the vendor charged
    ("veo3api", "failed", "failed", "yes", 0.3),
    ("vicsee", "failed", "failed", "unknown", 0.3),
]


@pytest.mark.parametrize(("dialect", "end", "vendor_outcome", "expected", "usd"), END_TABLE)
def test_ending_a_job_records_its_charge(
    dialect: str, end: str, vendor_outcome: VendorOutcome | None, expected: Charged, usd: float
) -> None:
    running = job(dialect, reported=Cost(usd=0.3))
    assert running.step is not None
    now = utcnow()
    if end == "succeeded":
        running.charge.vendor_outcome = vendor_outcome
        ended = lifecycle.succeed_owned(running, running.step.task_id, now, [_output()])
    else:
        error = GenerationFailed("no") if vendor_outcome == "failed" else JobTimeout("late")
        ended = lifecycle.fail_owned(running, running.step.task_id, error, now, vendor_outcome)
    assert ended is not None
    assert ended.charged == expected and ended.cost == Cost(usd=usd)
    assert ended.public()["charged"] == expected


def test_a_lost_submit_answer_counts_as_charged_at_the_estimate() -> None:
    lost = job("veogen", status=JobStatus.QUEUED, task_id=None)
    lost.submit_started_at = utcnow()
    assert lost.step is not None
    ended = lifecycle.fail_owned(lost, lost.step.task_id, SubmitOutcomeUnknown("lost"), utcnow())
    assert ended is not None and ended.charged == "unknown" and ended.cost == Cost(usd=0.5)


def test_a_job_canceled_before_its_submit_is_not_charged() -> None:
    held = job("veo3api", status=JobStatus.QUEUED, task_id=None)
    ended = lifecycle.cancel(held, utcnow())
    assert ended is not None and ended.charged == "no" and ended.cost == Cost(usd=0.0)
    assert not costs.awaiting_vendor(ended)


@pytest.mark.parametrize("webhook", ["https://example.com/hook", None])
def test_a_canceled_submitted_job_is_followed_until_the_vendor_ends_it(webhook: str | None) -> None:
    running = job("veogen", reported=Cost(usd=0.3), webhook=webhook)
    now = utcnow()
    canceled = lifecycle.cancel(running, now)
    assert canceled is not None and canceled.status is JobStatus.CANCELED
    assert canceled.charged is None and canceled.cost == Cost(usd=0.3)  # counted until the vendor says otherwise
    assert costs.awaiting_vendor(canceled)
    assert canceled.error is not None and "the vendor was not asked to stop" in canceled.error.message
    assert canceled.step is not None
    if webhook:  # the event first (once), then the quiet polls
        assert canceled.step.name == "deliver_webhook" and canceled.webhook is not None
        after = lifecycle.after_event(canceled, now)
        assert after is not None and after.name == "poll"
        canceled = canceled.model_copy(update={"step": after})
    else:
        assert canceled.step.name == "poll" and canceled.webhook is None
    assert canceled.step is not None
    assert lifecycle.ended_at_vendor(canceled, "someone-else", Outcome.FAILED, now) is None
    ended = lifecycle.ended_at_vendor(canceled, canceled.step.task_id, Outcome.FAILED, now)
    assert ended is not None and ended.step is None and ended.status is JobStatus.CANCELED
    assert ended.charged == "no" and ended.cost == Cost(usd=0.0) and ended.charge.vendor_outcome == "failed"
    assert not costs.awaiting_vendor(ended) and lifecycle.after_event(ended, now) is None
    assert ended.webhook == canceled.webhook  # no second event


def test_a_followed_job_whose_vendor_succeeded_is_charged() -> None:
    canceled = lifecycle.cancel(job("veogen", reported=Cost(usd=0.3), webhook=None), utcnow())
    assert canceled is not None and canceled.step is not None
    ended = lifecycle.ended_at_vendor(canceled, canceled.step.task_id, Outcome.SUCCEEDED, utcnow())
    assert ended is not None and ended.charged == "yes" and ended.cost == Cost(usd=0.3)


def test_a_record_stored_before_charges_were_kept_is_booked_from_its_cost() -> None:
    old = job("veogen", status=JobStatus.FAILED).model_copy(update={"charge": Charge(), "cost": Cost(usd=0.4)})
    assert costs.booked(old).charged == "unknown" and costs.booked(old).cost == Cost(usd=0.4)
    never_sent = old.model_copy(update={"provider_task_id": None, "submit_started_at": None})
    assert costs.booked(never_sent).charged == "no" and costs.booked(never_sent).cost == Cost(usd=0.0)


def _output() -> Output:
    return Output(bucket="b", key="k", size=1, sha256="0" * 64, content_type="video/mp4", url="https://x/k")


def test_a_webhook_retry_and_the_quiet_polls_take_turns() -> None:
    now = utcnow()
    canceled = lifecycle.cancel(job("veogen", reported=Cost(usd=0.3)), now)
    assert canceled is not None and canceled.webhook is not None
    retry_at = now + timedelta(seconds=300)
    canceled.webhook.next_attempt_at = retry_at  # its first attempt failed; the polls go on meanwhile
    soon = lifecycle.follow_step(canceled, now + timedelta(seconds=5))
    assert soon.name == "poll" and soon.due_at == now + timedelta(seconds=5)
    late = lifecycle.follow_step(canceled, now + timedelta(seconds=400))
    assert late.name == "deliver_webhook" and late.due_at == retry_at
    polling = canceled.model_copy(update={"step": soon})
    ended = lifecycle.ended_at_vendor(polling, soon.task_id, Outcome.FAILED, now)
    assert ended is not None and ended.charged == "no"
    assert ended.step is not None and ended.step.name == "deliver_webhook" and ended.step.due_at == retry_at
    canceled.webhook.delivered = True
    assert lifecycle.follow_step(canceled, now + timedelta(seconds=400)).name == "poll"


def test_a_job_accepted_before_cost_records_were_kept_is_not_followed_after_a_cancel() -> None:
    old = job("veogen", reported=Cost(usd=0.3), webhook=None)
    old.charge = Charge()  # a record from before: no dialect, no estimate
    canceled = lifecycle.cancel(old, utcnow())
    assert canceled is not None and canceled.step is None and not costs.awaiting_vendor(canceled)
    assert canceled.charged == "unknown" and canceled.cost == Cost(usd=0.3)  # counted as charged


def _canceled_mid_post(webhook: str | None) -> Job:
    """A veogen job canceled while its submit POST is in flight: intent recorded, no task id yet."""
    posting = job("veogen", status=JobStatus.QUEUED, task_id=None, webhook=webhook)
    posting.submit_started_at = utcnow()
    canceled = lifecycle.cancel(posting, utcnow())
    assert canceled is not None
    return canceled


@pytest.mark.parametrize("webhook", ["https://example.com/hook", None])
def test_a_job_canceled_during_its_submit_post_waits_for_the_answer(webhook: str | None) -> None:
    canceled = _canceled_mid_post(webhook)
    assert canceled.charged is None and costs.submitting(canceled) and costs.awaiting_vendor(canceled)
    assert canceled.error is not None and "the vendor was not asked to stop" in canceled.error.message
    assert canceled.step is not None
    assert canceled.step.name == ("deliver_webhook" if webhook else "poll")


@pytest.mark.parametrize("webhook", ["https://example.com/hook", None])
def test_a_late_acceptance_records_the_vendors_task_and_is_followed(webhook: str | None) -> None:
    canceled = _canceled_mid_post(webhook)
    now = utcnow()
    charge = canceled.charge.model_copy(update={"reported": Cost(usd=0.18)})
    accepted = lifecycle.accepted_after_cancel(canceled, now, "gen_1", None, charge)
    assert accepted is not None and accepted.provider_task_id == "gen_1" and accepted.status is JobStatus.CANCELED
    assert accepted.charged is None and accepted.cost == Cost(usd=0.18) and costs.awaiting_vendor(accepted)
    assert accepted.step is not None and canceled.step is not None
    if webhook:  # the event's delivery stays the step; the polls follow it (after_event)
        assert accepted.step == canceled.step
    else:  # a fresh poll now: the one waiting for the answer drops itself
        assert accepted.step.name == "poll" and accepted.step.task_id != canceled.step.task_id
    assert lifecycle.accepted_after_cancel(accepted, now, "gen_2", None, charge) is None  # recorded once
    assert lifecycle.unanswered_after_cancel(accepted, Outcome.NOT_ACCEPTED, now) is None


# how the submit of a job canceled mid-POST ended without a task id -> charged, usd counted
UNANSWERED_TABLE: list[tuple[Outcome, Charged, float]] = [
    (Outcome.NOT_ACCEPTED, "no", 0.0),  # refused: the vendor never took it
    (Outcome.MAYBE_ACCEPTED, "unknown", 0.5),  # answer lost: counted at the estimate
]


@pytest.mark.parametrize(("outcome", "expected", "usd"), UNANSWERED_TABLE)
@pytest.mark.parametrize("webhook", ["https://example.com/hook", None])
def test_an_unanswered_submit_after_a_cancel_decides_the_charge(
    outcome: Outcome, expected: Charged, usd: float, webhook: str | None
) -> None:
    canceled = _canceled_mid_post(webhook)
    ended = lifecycle.unanswered_after_cancel(canceled, outcome, utcnow())
    assert ended is not None and ended.charged == expected and ended.cost == Cost(usd=usd)
    assert not costs.awaiting_vendor(ended)
    assert ended.step == (canceled.step if webhook else None)  # a pending event is still delivered


def test_the_submits_answer_is_awaited_until_its_lease_is_over() -> None:
    from shared.settings import Settings

    settings = Settings(provider_timeout_seconds=20)
    canceled = _canceled_mid_post(None)
    assert canceled.submit_started_at is not None
    assert lifecycle.submit_answered_by(settings, canceled) == canceled.submit_started_at + timedelta(seconds=60)
    assert lifecycle.submit_answered_by(settings, job("veogen", status=JobStatus.QUEUED, task_id=None)) is None
