"""A running step's lease is renewed while it runs and left alone once the step has moved on."""

from __future__ import annotations

import time
from datetime import timedelta

import fakeredis
import pytest

from shared import lifecycle
from shared.models import GenerationRequest, Job, utcnow
from shared.store import JobStore
from workers import context, leases


def leased_job(lease_seconds: float) -> tuple[Job, str]:
    now = utcnow()
    job = Job(
        id="job_l",
        provider="sandbox",
        request=GenerationRequest(model="sandbox-image"),
        deadline_at=now + timedelta(hours=1),
        step=lifecycle.new_step("finalize", now),
    )
    _, leased = lifecycle.claim(job, "finalize", job.step.task_id, now, lease_seconds)  # type: ignore[union-attr]
    assert leased is not None
    return leased, leased.step.task_id  # type: ignore[union-attr]


def test_renew_lease_only_for_the_owner() -> None:
    job, task_id = leased_job(10)
    later = utcnow() + timedelta(seconds=8)
    renewed = lifecycle.renew_lease(job, task_id, later, 10)
    assert renewed is not None and renewed.step is not None
    assert renewed.step.lease_until == later + timedelta(seconds=10)
    assert lifecycle.renew_lease(job, "someone-else", later, 10) is None
    assert lifecycle.renew_lease(job.model_copy(update={"step": None}), task_id, later, 10) is None


def test_a_renewal_never_shortens_a_longer_lease() -> None:
    """A submit's intent holds the vendor call's lease; the keeper's short renewals leave it until it runs low."""
    job, task_id = leased_job(120)
    assert lifecycle.renew_lease(job, task_id, utcnow() + timedelta(seconds=8), 10) is None
    late = utcnow() + timedelta(seconds=115)
    renewed = lifecycle.renew_lease(job, task_id, late, 10)
    assert renewed is not None and renewed.step is not None
    assert renewed.step.lease_until == late + timedelta(seconds=10)


def test_the_keeper_renews_while_the_step_runs_and_stops_after(monkeypatch: pytest.MonkeyPatch) -> None:
    store = JobStore(fakeredis.FakeRedis())
    monkeypatch.setattr(context, "store", lambda: store)
    monkeypatch.setattr(leases, "TICK_SECONDS", 0.05)
    job, task_id = leased_job(1.0)
    store.create(job)
    keeper = leases.LeaseKeeper()
    with keeper.keep(job.id, task_id, 1.0):
        time.sleep(2.2)  # two lease lengths: without renewals the lease would have run out
        during = store.get(job.id)
        assert during is not None and during.step is not None and during.step.lease_until is not None
        assert during.step.lease_until > utcnow()
    time.sleep(0.2)
    settled = store.get(job.id)
    assert settled is not None and settled.step is not None and settled.step.lease_until is not None
    time.sleep(0.8)
    after = store.get(job.id)
    assert after is not None and after.step is not None and after.step.lease_until == settled.step.lease_until
