"""The submit step's money rules as pure decisions (shared/decisions/submit.py): no Celery, no Redis.

The table: how a submit ended (the vendor's answer or error) × whether the provider allows resubmits × whether
the job was canceled while the POST was in flight → the transition written and the effects on the provider.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from shared import lifecycle
from shared.decisions import Effects
from shared.decisions import submit as rules
from shared.errors import (
    GenqueueError,
    InsufficientCredits,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)
from shared.models import Charge, Cost, GenerationRequest, Job, JobStatus, utcnow
from shared.protection import Admission
from shared.providers.base import HttpAnswer, SubmitResult
from shared.providers.client import SendFailed
from shared.settings import Settings

NOW = utcnow()
SETTINGS = Settings(providers={"sandbox": {"base_url": "http://vendor.test", "api_key": "sk-secret-1"}})


def submitting_job(**fields: object) -> Job:
    """A queued job whose submit step is due."""
    return Job(
        id="job_d",
        provider="sandbox",
        request=GenerationRequest(model="sandbox-image", prompt="p"),
        deadline_at=NOW + timedelta(hours=1),
        step=lifecycle.new_step("submit", NOW),
        **fields,
    )


def posting_job(**fields: object) -> Job:
    """A job whose submit intent is recorded: its POST is in flight."""
    job = submitting_job(charge=Charge(estimate=Cost(credits=2)), **fields)
    intended = rules.record_intent(job, task_id(job), "sandbox", SETTINGS, NOW)
    assert intended is not None and intended.submit_started_at == NOW
    return intended


def test_the_intent_lengthens_the_claims_short_lease_to_the_vendor_calls() -> None:
    """A claimed submit holds the short step lease until its intent: a submit that then only waits for capacity
    (or whose next write a failover loses) is free again after that, not after the vendor call's lease."""
    job = submitting_job()
    _, claimed = lifecycle.claim(job, "submit", task_id(job), NOW, 10)
    assert claimed is not None and claimed.step is not None
    assert claimed.step.lease_until == NOW + timedelta(seconds=10)
    intended = rules.record_intent(claimed, task_id(claimed), "sandbox", SETTINGS, NOW)
    assert intended is not None and intended.step is not None
    assert intended.step.lease_until == NOW + timedelta(seconds=lifecycle.vendor_call_lease_seconds(SETTINGS))
    assert rules.record_intent(claimed, "another-task", "sandbox", SETTINGS, NOW) is None


def task_id(job: Job) -> str:
    assert job.step is not None
    return job.step.task_id


@dataclass(frozen=True)
class Ending:
    """How a submit POST ended without a task id."""

    name: str
    error: GenqueueError
    answer: HttpAnswer | None


LOST = Ending("answer lost", SendFailed("read timed out", sent=True), None)
NEVER_SENT = Ending("never sent", SendFailed("connection refused", sent=False), None)
UNREADABLE = Ending("unreadable 2xx", ProviderUnavailable("not JSON"), HttpAnswer(status_code=200, body=b"<html>"))
SERVER_ERROR = Ending("503", ProviderUnavailable("503 from the vendor"), HttpAnswer(status_code=503))
RATE_LIMITED = Ending("429", RateLimited("slow down", retry_after=7.0), HttpAnswer(status_code=429))
REJECTED = Ending("422", ProviderRejected("bad prompt"), HttpAnswer(status_code=422))
NO_CREDITS = Ending("402", InsufficientCredits("out of credits"), HttpAnswer(status_code=402))

RETRY = "retry"


@pytest.mark.parametrize(
    ("ending", "allow_resubmit", "expected"),
    [
        (LOST, False, "submit_outcome_unknown"),
        (LOST, True, RETRY),
        (NEVER_SENT, False, RETRY),
        (NEVER_SENT, True, RETRY),
        (UNREADABLE, False, "submit_outcome_unknown"),
        (UNREADABLE, True, RETRY),
        (SERVER_ERROR, False, RETRY),
        (RATE_LIMITED, False, RETRY),
        (REJECTED, False, "invalid_request"),
        (REJECTED, True, "invalid_request"),
        (NO_CREDITS, False, "insufficient_credits"),
    ],
    ids=lambda value: value.name if isinstance(value, Ending) else str(value),
)
def test_an_unanswered_submit_fails_or_retries_never_risking_a_second_charge(
    ending: Ending, allow_resubmit: bool, expected: str
) -> None:
    job = posting_job()
    new = rules.unanswered(
        job, task_id(job), ending.error, ending.answer, allow_resubmit, SETTINGS, NOW, random.Random(1)
    )
    assert new is not None
    if expected == RETRY:
        assert new.status is JobStatus.QUEUED and new.step is not None and new.step.name == "submit"
        assert new.step.task_id != task_id(job) and new.step.retries == {ending.error.code: 1}
        assert new.submit_started_at is None  # the vendor did not take it (or may take it again): resubmit
        retry_after = getattr(ending.error, "retry_after", None)
        assert new.step.due_at >= NOW + timedelta(seconds=retry_after or 0)
    else:
        assert new.status is JobStatus.FAILED and new.error is not None and new.error.code == expected
        assert new.submit_started_at == NOW


@pytest.mark.parametrize(
    ("ending", "charged"),
    [(LOST, "unknown"), (UNREADABLE, "unknown"), (NEVER_SENT, "no"), (SERVER_ERROR, "no"), (REJECTED, "no")],
    ids=lambda value: value.name if isinstance(value, Ending) else str(value),
)
@pytest.mark.parametrize("allow_resubmit", [False, True])
def test_a_submit_canceled_meanwhile_records_the_charge_instead(
    ending: Ending, charged: str, allow_resubmit: bool
) -> None:
    canceled = lifecycle.cancel(posting_job(), NOW)
    assert canceled is not None
    # the step is no longer the submit's: neither a failure nor a retry is written
    rng = random.Random(1)
    assert (
        rules.unanswered(canceled, "the-submit", ending.error, ending.answer, allow_resubmit, SETTINGS, NOW, rng)
        is None
    )
    ended = lifecycle.unanswered_after_cancel(canceled, rules.unanswered_outcome(ending.error, ending.answer), NOW)
    assert ended is not None and ended.status is JobStatus.CANCELED and ended.charged == charged
    assert ended.step is None


@pytest.mark.parametrize(
    ("ending", "effects"),
    [
        (LOST, Effects(free_slot=True, breaker_failure=True)),
        (NEVER_SENT, Effects(free_slot=True, breaker_failure=True)),
        (SERVER_ERROR, Effects(free_slot=True, breaker_failure=True)),
        (RATE_LIMITED, Effects(free_slot=True)),
        (REJECTED, Effects(free_slot=True)),
        (NO_CREDITS, Effects(free_slot=True, credit_pause="out of credits")),
    ],
    ids=lambda value: value.name if isinstance(value, Ending) else "",
)
def test_an_unanswered_submit_frees_its_slot_and_tells_the_breaker_or_the_credit_pause(
    ending: Ending, effects: Effects
) -> None:
    assert rules.error_effects(ending.error) == effects


def test_an_accepted_submit_records_the_task_and_schedules_the_first_poll() -> None:
    job = posting_job()
    result = SubmitResult(task_id="t1", cost=Cost(credits=3), estimated_seconds=12)
    charge = rules.reported_charge(job.charge, result)
    new = rules.accepted(job, task_id(job), result, "images", charge, SETTINGS, NOW)
    assert new is not None and new.status is JobStatus.SUBMITTED and new.provider_task_id == "t1"
    assert new.provider_task_scope == "images" and new.cost == Cost(credits=3) and new.charged is None
    assert new.charge.dialect == "sandbox" and new.charge.reported == Cost(credits=3)
    assert new.step is not None and new.step.name == "poll"
    assert new.step.due_at == NOW + timedelta(seconds=min(12, SETTINGS.poll_max_interval_seconds))
    assert rules.accepted_effects(new, None) == Effects()  # the slot is held while the vendor renders


@pytest.mark.parametrize("webhook", [None, "https://example.com/hook"])
def test_an_accepted_submit_canceled_meanwhile_keeps_its_slot_and_is_followed(webhook: str | None) -> None:
    canceled = lifecycle.cancel(posting_job(webhook_url=webhook), NOW)
    assert canceled is not None
    result = SubmitResult(task_id="t1", cost=Cost(credits=3))
    charge = rules.reported_charge(canceled.charge, result)
    assert rules.accepted(canceled, "the-submit", result, None, charge, SETTINGS, NOW) is None
    late = lifecycle.accepted_after_cancel(canceled, NOW, "t1", None, charge)
    assert late is not None and late.provider_task_id == "t1" and late.charged is None
    assert late.step is not None and late.step.name == ("deliver_webhook" if webhook else "poll")
    assert rules.accepted_effects(None, late) == Effects()
    assert rules.accepted_effects(None, None) == Effects(free_slot=True)  # gone some other way: slot freed


def test_a_second_submit_after_an_unanswered_intent_is_refused_unless_resubmits_are_allowed() -> None:
    job = posting_job()
    refusal = rules.resubmit_refusal(job, allow_resubmit=False)
    assert refusal is not None and refusal.code == "submit_outcome_unknown"
    assert rules.resubmit_refusal(job, allow_resubmit=True) is None
    fresh = job.model_copy(update={"submit_started_at": None})
    assert rules.resubmit_refusal(fresh, allow_resubmit=False) is None


def test_a_batch_job_past_its_deadline_is_canceled_unless_a_submit_started() -> None:
    job = posting_job(submit_by=NOW - timedelta(seconds=1)).model_copy(update={"submit_started_at": None})
    reason = rules.deadline_cancel(job, NOW)
    assert reason is not None and "batch deadline" in reason
    assert rules.deadline_cancel(job, NOW - timedelta(seconds=2)) is None
    assert rules.deadline_cancel(job.model_copy(update={"submit_started_at": NOW}), NOW) is None


@pytest.mark.parametrize(
    ("now", "expected"),
    [(NOW, JobStatus.QUEUED), (NOW + timedelta(hours=2), JobStatus.FAILED)],
    ids=["waits", "past its deadline"],
)
def test_a_job_over_capacity_waits_keeping_its_retries_or_times_out(now: datetime, expected: JobStatus) -> None:
    job = posting_job().model_copy(update={"submit_started_at": None})
    assert job.step is not None
    job.step.retries = {"provider_error": 2}
    admission = Admission(allowed=False, reason="in-flight cap", wait_seconds=4.0)
    new = rules.over_capacity(job, task_id(job), admission, SETTINGS, now, random.Random(1))
    assert new is not None and new.status is expected
    if expected is JobStatus.QUEUED:
        assert new.step is not None and new.step.name == "submit" and new.step.task_id != task_id(job)
        assert new.step.retries == {"provider_error": 2} and new.step.attempt == 2
        assert now + timedelta(seconds=4) <= new.step.due_at <= now + timedelta(seconds=5)
    else:
        assert new.error is not None and new.error.code == "timeout"
