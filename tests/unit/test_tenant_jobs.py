"""A tenant's job index (shared/store.py): written with the job, paged newest first, pruned of expired jobs; and
every committed write published on the job's channel."""

from __future__ import annotations

from datetime import timedelta

import fakeredis
import pytest

from shared import lifecycle
from shared.constants import JOB_EVENTS_CHANNEL, JOB_KEY
from shared.models import GenerationRequest, Job, JobStatus, utcnow
from shared.store import JobStore

T0 = utcnow().replace(microsecond=0)


@pytest.fixture
def store() -> JobStore:
    return JobStore(fakeredis.FakeRedis())


def make(store: JobStore, job_id: str, tenant: str | None, seconds: float) -> Job:
    job = Job(
        id=job_id,
        provider="sandbox",
        request=GenerationRequest(model="sandbox-image"),
        tenant=tenant,
        created_at=T0 + timedelta(seconds=seconds),
        deadline_at=T0 + timedelta(hours=1),
    )
    store.create(job)
    return job


def pages(store: JobStore, tenant: str, count: int) -> list[list[str]]:
    result, before = [], None
    while page := store.tenant_jobs(tenant, before, count):
        result.append([job_id for _, job_id, _ in page])
        before = page[-1][0], page[-1][1]
    return result


def test_a_tenants_jobs_page_newest_first_and_only_its_own(store: JobStore) -> None:
    for n in range(5):
        make(store, f"job_a{n}", "acme", n)
    make(store, "job_b0", "globex", 10)
    make(store, "job_op", None, 11)  # the operator's own: in no tenant's index
    assert pages(store, "acme", 2) == [["job_a4", "job_a3"], ["job_a2", "job_a1"], ["job_a0"]]
    assert pages(store, "globex", 10) == [["job_b0"]]


def test_jobs_made_in_the_same_millisecond_are_each_listed_once(store: JobStore) -> None:
    for n in range(7):
        make(store, f"job_{n}", "acme", 0)
    listed = [job_id for page in pages(store, "acme", 3) for job_id in page]
    assert sorted(listed) == [f"job_{n}" for n in range(7)] and len(listed) == 7


def test_an_expired_job_is_taken_off_the_index(store: JobStore) -> None:
    make(store, "job_old", "acme", 0)
    make(store, "job_new", "acme", 1)
    store.redis.delete(JOB_KEY.format(job_id="job_old"))  # what retention does
    assert pages(store, "acme", 5) == [["job_new"]]
    assert store.redis.zcard("genqueue:tenant:acme:jobs") == 1


def test_every_committed_write_is_published_on_the_jobs_channel(store: JobStore) -> None:
    listener = store.redis.pubsub()
    listener.subscribe(JOB_EVENTS_CHANNEL.format(job_id="job_e"))
    assert listener.get_message(timeout=1)["type"] == "subscribe"  # type: ignore[index]
    job = make(store, "job_e", "acme", 0)
    store.update(job.id, lambda j: lifecycle.cancel(j, utcnow()))
    store.update(job.id, lambda j: lifecycle.cancel(j, utcnow()))  # no change: nothing written, nothing published
    messages = []
    while (message := listener.get_message(timeout=0.2)) is not None:
        messages.append(message["data"])
    assert messages == [b"1 queued", f"2 {JobStatus.CANCELED.value}".encode()]


def test_producer_wait_is_woken_by_the_jobs_notice_not_its_interval(store: JobStore) -> None:
    """With a read interval of an hour, `wait` still returns the canceled job: the write's notice woke it."""
    import threading

    from producer.api import Producer
    from shared.settings import Settings

    producer = Producer(Settings(wait_interval_seconds=3600), store=store, celery=object())  # type: ignore[arg-type]
    job = make(store, "job_w", None, 0)
    seen: list[JobStatus] = []
    threading.Timer(0.3, lambda: store.update(job.id, lambda j: lifecycle.cancel(j, utcnow()))).start()
    ended = producer.wait(job.id, timeout=20, on_change=lambda j: seen.append(j.status))
    assert ended.status is JobStatus.CANCELED and seen == [JobStatus.QUEUED, JobStatus.CANCELED]


def test_a_tenants_budget_is_checked_with_the_write_and_its_spend_follows_each_jobs_cost(store: JobStore) -> None:
    from shared.models import Budget, Cost
    from shared.store import BudgetExceeded

    budget = Budget(currency="usd", amount=1.0)

    def priced(job_id: str, usd: float) -> Job:
        return Job(
            id=job_id,
            provider="veogen",
            request=GenerationRequest(model="grok-video-1"),
            tenant="acme",
            cost=Cost(usd=usd),
            deadline_at=T0 + timedelta(hours=1),
        )

    store.create(priced("job_1", 0.4), budget=budget)
    store.create(priced("job_2", 0.4), budget=budget)
    with pytest.raises(BudgetExceeded, match=r"budget_exhausted: .*0\.4 usd .* budget of 1 usd \(0\.8 committed\)"):
        store.create(priced("job_3", 0.4), budget=budget)
    assert store.get("job_3") is None and pages(store, "acme", 10) == [["job_2", "job_1"]]  # nothing stored
    # job_1 failed at a vendor that charges nothing for that: its cost, and the tenant's spend, drop by 0.4
    store.update("job_1", lambda j: j.model_copy(update={"cost": Cost(usd=0.0), "charged": "no"}))
    assert store.tenant_spend("acme") == Cost(credits=None, usd=0.4)
    store.create(priced("job_3", 0.4), budget=budget)
    assert store.tenant_spend("acme").usd == pytest.approx(0.8)
    assert store.tenant_spend("nobody") == Cost()
