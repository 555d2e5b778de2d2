"""Batches sent to a route, on fakeredis: held by route, released as fast as its providers' paces add up (a paused
or tripped provider adds nothing), reserved against a USD budget at the dearest candidate, settled in USD."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import fakeredis
import pytest

from shared import queueing
from shared.batch import Batch, BatchStore, pacing
from shared.batch.models import hold_of, route_hold
from shared.decisions import dispatch as dispatch_rules
from shared.models import Budget, Cost, GenerationRequest, Job, JobStatus, Route, RouteCandidate, utcnow
from shared.protection import BreakerState, ProviderGuard, ProviderStatus
from shared.settings import Settings
from shared.store import JobStore
from workers import context, dispatcher

LIMITS = {"dialect": "sandbox", "base_url": "http://sandbox.test", "api_key": "sk-test"}
ROUTE = Route(
    model="sora-2",
    providers=["vicsee", "veogen"],
    candidates=[
        RouteCandidate(provider="vicsee", model="sora-2", estimate=Cost(credits=20), estimate_usd=0.2),
        RouteCandidate(provider="veogen", model="sora-2", estimate=Cost(usd=0.15), estimate_usd=0.15),
    ],
    chosen="veogen",
)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    client = fakeredis.FakeRedis()
    store = JobStore(client)
    settings = Settings(
        providers={
            "vicsee": {**LIMITS, "rate_per_second": 2, "burst": 3, "usd_per_credit": 0.01},
            "veogen": {**LIMITS, "rate_per_second": 1, "burst": 2},
        }
    )
    published: list[str] = []
    monkeypatch.setattr(context, "store", lambda: store)
    monkeypatch.setattr(context, "settings", lambda: settings)
    monkeypatch.setattr(context, "guard", lambda: ProviderGuard(client))
    monkeypatch.setattr(dispatcher, "publish_step", lambda app, s, job_id, step, now: published.append(job_id))
    monkeypatch.setattr(queueing, "publish_step", lambda app, s, job_id, step, now: published.append(job_id))
    monkeypatch.setattr(dispatcher, "publish_batch_step", lambda batch_id, step, now: None)
    return {"store": store, "batches": BatchStore(client), "published": published, "guard": ProviderGuard(client)}


def routed_job(line: int) -> Job:
    return Job(
        id=f"job_{line}",
        provider="veogen",
        request=GenerationRequest(model="sora-2"),
        cost=Cost(usd=0.15),
        batch_id="batch_r",
        route=ROUTE,
        deadline_at=utcnow() + timedelta(hours=1),
    )


def make_batch(world: dict[str, Any], count: int, **fields: Any) -> Batch:
    batches: BatchStore = world["batches"]
    hold = route_hold(ROUTE)
    batch = Batch(id="batch_r", name="r", routes={hold: ROUTE.providers}, total=count, **fields)
    assert batches.create(batch)
    for line in range(1, count + 1):
        job = routed_job(line)
        world["store"].create(job)
        batches.hold(batch.id, hold_of(job), job.id, line)
    return batch


def test_a_routed_job_is_held_by_its_route_whatever_provider_it_is_planned_for() -> None:
    assert hold_of(routed_job(1)) == "route:sora-2:vicsee+veogen"
    assert hold_of(routed_job(1).model_copy(update={"route": None})) == "veogen"


def test_a_route_releases_what_its_providers_paces_add_up_to(world: dict[str, Any]) -> None:
    batch = make_batch(world, 20)
    # vicsee: burst 3 + 2/s over the 1 s interval - 1 kept back = 4; veogen: 2 + 1 - 1 = 2
    assert dispatcher.dispatch_pass(utcnow()) == 6
    assert world["published"] == [f"job_{n}" for n in range(1, 7)]
    assert dispatcher.dispatch_pass(utcnow()) == 0  # released, not started: they still hold the room
    assert world["batches"].held_count(batch.id, batch.holds) == 14


def test_a_provider_whose_credits_are_on_hold_adds_nothing_to_the_route(world: dict[str, Any]) -> None:
    make_batch(world, 20)
    world["guard"].pause_for_credits("vicsee", time.time(), "balance 0")
    assert dispatcher.dispatch_pass(utcnow()) == 2  # veogen's share alone


def status(breaker: BreakerState) -> ProviderStatus:
    return ProviderStatus(
        provider="p",
        tokens=3.0,
        burst=3,
        rate_per_second=2.0,
        in_flight=0,
        max_in_flight=50,
        breaker=breaker,
        breaker_until=None,
        consecutive_failures=0,
        credit_pause=None,
    )


def test_the_shares_of_a_route() -> None:
    closed = status(BreakerState.CLOSED)
    tripped, half_open = status(BreakerState.OPEN), status(BreakerState.HALF_OPEN)
    assert pacing.route_share(closed, 0, 1.0) == 4
    assert pacing.route_share(closed, 3, 1.0) == 1  # its own batch jobs released and not started count
    assert pacing.route_share(tripped, 0, 1.0) == 0 and pacing.route_share(half_open, 0, 1.0) == 0
    assert pacing.route_allowance([4, 2], 5) == 1 and pacing.route_allowance([4, 2], 9) == 0
    assert pacing.spread([4, 2], 5) == [4, 1] and pacing.spread([4, 2], 0) == [0, 0]


def test_a_usd_budget_reserves_the_dearest_candidate_and_settles_credits_in_usd(world: dict[str, Any]) -> None:
    batch = make_batch(world, 3, budget=Budget(currency="usd", amount=0.5))
    assert dispatch_rules.estimate(batch, routed_job(1)) == 0.2  # vicsee's $0.20, though veogen is planned
    assert dispatcher.dispatch_pass(utcnow()) == 2  # 2 x $0.20 reserved; a third would pass $0.50
    assert world["batches"].committed(batch.id) == pytest.approx(0.4)
    # job_1 went to vicsee and was charged its 20 credits: $0.20 at $0.01 a credit
    charged = Cost(credits=20)
    world["store"].update(
        "job_1",
        lambda job: job.model_copy(
            update={
                "status": JobStatus.SUCCEEDED,
                "step": None,
                "provider": "vicsee",
                "cost": charged,
                "charged": "yes",
            }
        ),
    )
    booked = dispatch_rules.settlement(batch, world["store"].get("job_1"), usd_per_credit=0.01)
    assert booked.counted == pytest.approx(0.2) and booked.credits == 20 and booked.usd == 0
    unpriced = dispatch_rules.settlement(batch, world["store"].get("job_1"), usd_per_credit=None)
    assert unpriced.counted == pytest.approx(0.2)  # no credit price any more: what was reserved


def test_a_route_none_of_whose_providers_is_configured_cancels_its_held_jobs(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_batch(world, 2)
    monkeypatch.setattr(context, "settings", lambda: Settings(providers={}))
    dispatcher.dispatch_pass(utcnow())
    job = world["store"].get("job_1")
    assert job.status is JobStatus.CANCELED and "no provider of route:sora-2:vicsee+veogen" in job.error.message
