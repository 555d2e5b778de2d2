"""The dispatcher's rules for held batch jobs as pure decisions (shared/decisions/dispatch.py): no Celery, no
Redis. The batch's window (not-before, deadline), the pace, each held job's fate, the budget, settlements,
orphans."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from shared import lifecycle
from shared.batch import Batch
from shared.decisions import dispatch as rules
from shared.decisions.dispatch import Action, Held
from shared.models import Budget, Charge, Cost, GenerationRequest, Job, JobStatus, utcnow
from shared.protection import BreakerState, ProviderStatus

NOW = utcnow()
MINUTE = timedelta(minutes=1)


def batch(**fields: object) -> Batch:
    return Batch(id="batch_d", name="d", providers=["slow"], total=3, **fields)


def held_job(**fields: object) -> Job:
    values: dict[str, object] = {
        "id": "job_h",
        "provider": "slow",
        "model": "sandbox-image",
        "request": GenerationRequest(model="sandbox-image"),
        "cost": Cost(credits=2),
        "batch_id": "batch_d",
        "deadline_at": NOW + timedelta(hours=1),
    }
    return Job.model_validate(values | fields)


def status(tokens: float = 3, in_flight: int = 0, breaker: BreakerState = BreakerState.CLOSED) -> ProviderStatus:
    return ProviderStatus(
        provider="slow",
        tokens=tokens,
        burst=3,
        rate_per_second=2,
        in_flight=in_flight,
        max_in_flight=50,
        breaker=breaker,
        breaker_until=None,
        consecutive_failures=0,
        credit_pause=None,
    )


@pytest.mark.parametrize(
    ("fields", "now", "closed", "past_deadline"),
    [
        ({}, NOW, False, False),
        ({"not_before": NOW + MINUTE}, NOW, True, False),
        ({"not_before": NOW - MINUTE}, NOW, False, False),
        ({"deadline": NOW + MINUTE}, NOW, False, False),
        ({"deadline": NOW - MINUTE}, NOW, False, True),
        ({"deadline": NOW}, NOW, False, True),  # the deadline itself is past it
        # a deadline before not-before: the held jobs are canceled, not kept waiting
        ({"not_before": NOW + MINUTE, "deadline": NOW - MINUTE}, NOW, False, True),
    ],
)
def test_the_batch_window(fields: dict[str, datetime], now: datetime, closed: bool, past_deadline: bool) -> None:
    window = rules.window(batch(**fields), now)
    assert (window.closed, window.past_deadline) == (closed, past_deadline)
    assert ("deadline" in window.deadline_reason) is past_deadline


@pytest.mark.parametrize(
    ("provider", "in_queue", "past_deadline", "expected"),
    [
        (status(tokens=3), 0, False, 3 + 2 - 1),  # burst, plus a second's rate, minus the interactive token
        (status(tokens=3), 2, False, 2),  # released and not started yet: they hold the room
        (status(tokens=3), 0, True, 0),  # past the deadline nothing goes
        (status(tokens=3, breaker=BreakerState.OPEN), 0, False, 0),
        (status(tokens=3, in_flight=48), 0, False, 1),  # the in-flight cap, a slot kept back
    ],
)
def test_the_allowance(provider: ProviderStatus, in_queue: int, past_deadline: bool, expected: int) -> None:
    window = rules.Window(closed=False, past_deadline=past_deadline)
    assert rules.allowance(window, provider, in_queue, 1.0) == expected


@pytest.mark.parametrize(
    ("fields", "past_deadline", "allowance", "expected"),
    [
        ({}, False, 4, 4),
        ({}, False, 900, 500),
        ({}, True, 0, 500),  # every held job may be canceled
        ({"budget": Budget(currency="credits", amount=5)}, False, 4, 500),  # some may be canceled over budget
    ],
)
def test_how_many_held_jobs_a_pass_looks_at(
    fields: dict[str, Budget], past_deadline: bool, allowance: int, expected: int
) -> None:
    window = rules.Window(closed=False, past_deadline=past_deadline)
    assert rules.examine_count(batch(**fields), window, allowance, 500) == expected


OPEN = rules.Window(closed=False, past_deadline=False)
PAST = rules.Window(closed=False, past_deadline=True, deadline_reason="the batch deadline passed")


@pytest.mark.parametrize(
    ("job", "window", "room", "expected"),
    [
        (held_job(), OPEN, 1, Action(Held.RELEASE)),
        (held_job(), OPEN, 0, Action(Held.STOP)),
        (held_job(), PAST, 1, Action(Held.CANCEL, "the batch deadline passed")),
        (None, PAST, 0, Action(Held.CANCEL, "the batch deadline passed")),
        (None, OPEN, 1, Action(Held.DROP)),  # expired
        (held_job(status=JobStatus.CANCELED), OPEN, 1, Action(Held.DROP)),
        (held_job(step=lifecycle.new_step("submit", NOW)), OPEN, 1, Action(Held.DROP)),  # released already
    ],
    ids=["release", "no room", "past the deadline", "gone past the deadline", "gone", "ended", "released"],
)
def test_what_happens_to_a_held_job(job: Job | None, window: rules.Window, room: int, expected: Action) -> None:
    assert rules.held_action(job, window, room) == expected


BUDGET = batch(budget=Budget(currency="credits", amount=5))


@pytest.mark.parametrize(
    ("outstanding", "expected"),
    [(2, Held.STOP), (0, Held.CANCEL)],
    ids=["over with outstanding reservations: wait", "over with none: cancel"],
)
def test_a_job_over_the_budget_waits_for_reservations_or_is_canceled(outstanding: int, expected: Held) -> None:
    action = rules.over_budget(BUDGET, held_job(), outstanding, committed=4.0)
    assert action.held is expected
    if expected is Held.CANCEL:
        assert action.reason == (
            "budget_exhausted: this job's estimated 2 credits would take the batch past its budget of 5 (4 committed)"
        )


@pytest.mark.parametrize(
    ("budget", "cost", "expected"),
    [
        (Budget(currency="credits", amount=5), Cost(credits=2), 2.0),
        (Budget(currency="usd", amount=5), Cost(usd=0.25), 0.25),
        (Budget(currency="usd", amount=5), Cost(credits=2), 0.0),  # no estimate in the budget's currency
    ],
)
def test_what_a_job_reserves_within_the_budget(budget: Budget, cost: Cost, expected: float) -> None:
    assert rules.estimate(batch(budget=budget), held_job(cost=cost)) == expected


def ended(outcome: str | None, **fields: object) -> Job:
    job = held_job(
        status=JobStatus.FAILED if outcome == "failed" else JobStatus.SUCCEEDED,
        provider_task_id="t1",
        charge=Charge(estimate=Cost(credits=2), reported=Cost(credits=2), dialect="veogen", vendor_outcome=outcome),
        **fields,
    )
    return job


def test_an_ended_job_is_settled_at_what_it_was_charged() -> None:
    assert rules.settlement(BUDGET, ended("succeeded")) == rules.Settlement(credits=2.0, usd=0.0, counted=2.0)
    assert rules.settlement(BUDGET, ended("failed")) == rules.Settlement(credits=0.0, usd=0.0, counted=0.0)
    assert rules.settlement(batch(), ended("succeeded")).counted is None  # no budget: nothing to replace


def test_a_canceled_job_the_vendor_still_renders_is_settled_later() -> None:
    canceled = lifecycle.cancel(
        held_job(status=JobStatus.SUBMITTED, provider_task_id="t1", charge=Charge(dialect="veogen")), NOW
    )
    assert canceled is not None and not rules.settles_now(canceled)
    assert rules.settles_now(None) and rules.settles_now(ended("succeeded"))


@pytest.mark.parametrize(
    ("job", "orphan"),
    [
        (held_job(), True),
        (held_job(step=lifecycle.new_step("submit", NOW)), False),  # released, waiting for a submit worker
        (held_job(status=JobStatus.SUBMITTED), False),
        (held_job(status=JobStatus.CANCELED), False),
    ],
    ids=["queued with no step", "released", "submitted", "ended"],
)
def test_an_orphan_is_a_queued_job_with_no_step(job: Job, orphan: bool) -> None:
    assert rules.is_orphan(job) is orphan
