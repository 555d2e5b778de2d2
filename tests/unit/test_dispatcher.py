"""The dispatcher's pass on fakeredis: releases at the provider's pace, holds until not-before, cancels past the
deadline or the budget, settles what ended, completes the batch."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import fakeredis
import pytest

from shared import costs, lifecycle, queueing
from shared.batch import Batch, BatchStore
from shared.constants import BATCH_KEY, JOB_KEY
from shared.models import Budget, Charge, Cost, GenerationRequest, Job, JobStatus, utcnow
from shared.protection import ProviderGuard
from shared.settings import Settings
from shared.store import JobStore
from workers import context, dispatcher


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    client = fakeredis.FakeRedis()
    store = JobStore(client)
    settings = Settings(
        providers={"slow": {"dialect": "sandbox", "base_url": "http://sandbox.test", "rate_per_second": 2, "burst": 3}}
    )
    published: list[str] = []
    monkeypatch.setattr(context, "store", lambda: store)
    monkeypatch.setattr(context, "settings", lambda: settings)
    monkeypatch.setattr(context, "guard", lambda: ProviderGuard(client))
    monkeypatch.setattr(dispatcher, "publish_step", lambda app, s, job_id, step, now: published.append(job_id))
    monkeypatch.setattr(queueing, "publish_step", lambda app, s, job_id, step, now: published.append(job_id))
    batch_steps: list[str] = []
    monkeypatch.setattr(dispatcher, "publish_batch_step", lambda batch_id, step, now: batch_steps.append(batch_id))
    return {"store": store, "batches": BatchStore(client), "published": published, "batch_steps": batch_steps}


BATCH_ID = "batch_t"


def make_batch(world: dict[str, Any], count: int, **fields: Any) -> Batch:
    batches: BatchStore = world["batches"]
    batch = Batch(id="batch_t", name="t", providers=["slow"], total=count, **fields)
    assert batches.create(batch)
    now = utcnow()
    for line in range(1, count + 1):
        job = Job(
            id=f"job_{line}",
            provider="slow",
            request=GenerationRequest(model="sandbox-image"),
            cost=Cost(credits=1),
            batch_id=batch.id,
            deadline_at=now + timedelta(hours=1),
        )
        world["store"].create(job)
        batches.hold(batch.id, "slow", job.id, line)
    return batch


def test_a_pass_releases_what_the_rate_allows_keeping_a_token_back(world: dict[str, Any]) -> None:
    make_batch(world, 10)
    released = dispatcher.dispatch_pass(utcnow())
    assert released == 3 + 2 - 1  # burst 3, plus 2/s for the 1 s interval, minus the interactive token
    assert world["published"] == ["job_1", "job_2", "job_3", "job_4"]  # in line order
    assert dispatcher.dispatch_pass(utcnow()) == 0  # released, not started yet: they still hold the room
    job = world["store"].get("job_1")
    assert job.step is not None and job.step.name == "submit" and job.status is JobStatus.QUEUED


def test_nothing_goes_before_not_before(world: dict[str, Any]) -> None:
    make_batch(world, 3, not_before=utcnow() + timedelta(minutes=5))
    assert dispatcher.dispatch_pass(utcnow()) == 0
    assert dispatcher.dispatch_pass(utcnow() + timedelta(minutes=6)) == 3


def test_held_jobs_past_the_deadline_are_canceled_with_the_reason(world: dict[str, Any]) -> None:
    batch = make_batch(world, 3, deadline=utcnow() + timedelta(minutes=1))
    dispatcher.dispatch_pass(utcnow() + timedelta(minutes=2))
    for line in range(1, 4):
        job = world["store"].get(f"job_{line}")
        assert job.status is JobStatus.CANCELED and "deadline" in job.error.message
    assert world["published"] == []
    dispatcher.dispatch_pass(utcnow() + timedelta(minutes=2))  # the next pass sees them ended: batch complete
    assert world["batches"].get(batch.id).completed_at is not None
    assert world["batches"].active() == []


def test_the_budget_is_never_passed(world: dict[str, Any]) -> None:
    batch = make_batch(world, 5, budget=Budget(currency="credits", amount=2))
    assert dispatcher.dispatch_pass(utcnow()) == 2
    assert dispatcher.dispatch_pass(utcnow() + timedelta(seconds=5)) == 0  # two running jobs hold the budget
    assert world["store"].get("job_3").status is JobStatus.QUEUED  # waits: a reservation may come back
    # the vendor refused job_1 (no task id, nothing charged): its credit comes back and job_3 may go
    world["store"].update("job_1", lambda job: job.model_copy(update={"status": JobStatus.FAILED, "step": None}))
    world["published"].clear()
    world["batches"].mark_started("slow", "job_2")
    assert dispatcher.dispatch_pass(utcnow() + timedelta(seconds=10)) == 1
    assert world["published"] == ["job_3"]
    # job_2 and job_3 are charged 1 credit each: nothing fits any more, the rest is canceled
    for job_id in ("job_2", "job_3"):
        world["store"].update(
            job_id, lambda job: job.model_copy(update={"status": JobStatus.SUCCEEDED, "provider_task_id": "t"})
        )
    dispatcher.dispatch_pass(utcnow() + timedelta(seconds=15))
    for job_id in ("job_4", "job_5"):
        job = world["store"].get(job_id)
        assert job.status is JobStatus.CANCELED and job.error.message.startswith("budget_exhausted")
    assert world["batches"].committed(batch.id) == 2.0


def test_a_job_whose_hold_was_lost_is_held_again(world: dict[str, Any]) -> None:
    batch = make_batch(world, 2)
    world["batches"].unhold(batch.id, "slow", "job_2")  # as if Redis lost the hold's write
    for line in (1, 2):
        world["batches"].claims.claim(world["batches"].line_slot(batch.id, line), f"job_{line}", "fp")
    dispatcher.dispatch_pass(utcnow())
    assert world["published"] == ["job_1"]
    dispatcher.dispatch_pass(utcnow())  # nothing held, job_2 queued with no step: found and held again
    dispatcher.dispatch_pass(utcnow())
    assert world["published"] == ["job_1", "job_2"]


def test_jobs_of_a_provider_no_longer_configured_are_canceled(world: dict[str, Any]) -> None:
    batch = make_batch(world, 2)
    world["batches"].update(batch.id, lambda current: current.model_copy(update={"providers": ["slow", "gone"]}))
    world["batches"].hold(batch.id, "gone", "job_2", 2)
    world["batches"].unhold(batch.id, "slow", "job_2")
    dispatcher.dispatch_pass(utcnow())
    job = world["store"].get("job_2")
    assert job.status is JobStatus.CANCELED and job.error.message == "provider gone is no longer configured"
    assert world["published"] == ["job_1"]


def test_one_task_runs_passes_for_its_span_and_a_second_one_stands_aside(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(dispatch_interval_seconds=0.05, dispatch_task_seconds=0.3)
    monkeypatch.setattr(context, "settings", lambda: settings)
    passes: list[int] = []
    monkeypatch.setattr(dispatcher, "dispatch_pass", lambda now: passes.append(1) or 1)
    assert dispatcher.dispatch() == len(passes) >= 4  # about 0.3 s / 0.05 s passes, each "released" one
    lock = world["store"].redis.lock("genqueue:dispatch:lock", timeout=5)
    assert lock.acquire(blocking=False)  # the finished task let go of the lock
    passes.clear()
    assert dispatcher.dispatch() == 0 and passes == []  # another holds it: stand aside
    lock.release()


def corrupt(world: dict[str, Any], key: str) -> None:
    """Overwrite a stored record's JSON with text no reader can parse, as a bug or a hand edit could."""
    world["store"].redis.hset(key, "data", '{"id": "broken", ')


def test_a_poison_held_job_is_set_aside_and_the_rest_released(world: dict[str, Any]) -> None:
    make_batch(world, 4)
    corrupt(world, JOB_KEY.format(job_id="job_1"))  # first in line
    assert dispatcher.dispatch_pass(utcnow()) == 3
    assert world["published"] == ["job_2", "job_3", "job_4"]
    assert world["store"].quarantine.contains("job", "job_1")
    assert world["batches"].held(BATCH_ID, "slow", 10) == []  # no longer held: not met again


def test_a_poison_batch_does_not_stop_the_other_batches(world: dict[str, Any]) -> None:
    make_batch(world, 2)
    broken = Batch(id="batch_broken", name="broken", providers=["slow"], total=1)
    world["batches"].create(broken)
    world["batches"].activate(broken.id)
    world["batches"].activate(BATCH_ID)
    corrupt(world, BATCH_KEY.format(batch_id=broken.id))
    assert dispatcher.dispatch_pass(utcnow()) == 2
    assert world["batches"].quarantine.contains("batch", broken.id)
    assert dispatcher.dispatch_pass(utcnow()) == 0  # and the next pass carries on too


def test_an_unreadable_ended_job_keeps_its_reservation_as_spent(world: dict[str, Any]) -> None:
    batch = make_batch(world, 3, budget=Budget(currency="credits", amount=2))
    assert dispatcher.dispatch_pass(utcnow()) == 2
    world["store"].update("job_1", lambda job: job.model_copy(update={"status": JobStatus.SUCCEEDED, "step": None}))
    corrupt(world, JOB_KEY.format(job_id="job_1"))  # ended, then unreadable: what it cost cannot be known
    dispatcher.dispatch_pass(utcnow() + timedelta(seconds=5))
    assert world["batches"].outstanding(batch.id) == 1  # job_2's; job_1's is settled, so the batch is not stuck
    assert world["batches"].committed(batch.id) == 2.0  # job_1 counts as spent: the budget is never passed


def test_a_job_canceled_while_the_vendor_renders_it_is_settled_when_the_vendor_ends_it(world: dict[str, Any]) -> None:
    batch = make_batch(world, 1, budget=Budget(currency="credits", amount=5))
    assert dispatcher.dispatch_pass(utcnow()) == 1
    store: JobStore = world["store"]
    batches: BatchStore = world["batches"]
    submitted = store.update(
        "job_1",
        lambda job: job.model_copy(
            update={
                "status": JobStatus.SUBMITTED,
                "provider_task_id": "t1",
                "charge": Charge(estimate=Cost(credits=1), reported=Cost(credits=1), dialect="veogen"),
            }
        ),
    )
    assert submitted is not None
    canceled = store.update("job_1", lambda job: lifecycle.cancel(job, utcnow()))
    assert canceled is not None and canceled.step is not None and canceled.step.name == "poll"
    dispatcher.dispatch_pass(utcnow())
    assert batches.outstanding(batch.id) == 1 and batches.unsettled(batch.id) == ["job_1"]  # reservation kept
    assert batches.get(batch.id).completed_at is None  # its charge is not known yet
    task_id = canceled.step.task_id
    store.update("job_1", lambda job: lifecycle.ended_at_vendor(job, task_id, costs.Outcome.FAILED, utcnow()))
    dispatcher.dispatch_pass(utcnow())
    assert batches.outstanding(batch.id) == 0 and batches.unsettled(batch.id) == []
    assert batches.ledger(batch.id) == {"committed": 0.0, "spent_credits": 0.0, "spent_usd": 0.0}  # veogen: failed
    assert batches.get(batch.id).completed_at is not None
