"""The store's index of every job by its minute of creation (JobStore.created_jobs): the operator's listing,
newest first, paged by position, without reading the jobs it does not show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import fakeredis

from shared.constants import CREATED_JOBS_KEY, CREATED_MINUTES_KEY, JOB_KEY
from shared.models import GenerationRequest, Job
from shared.store import JobStore, created_minute

START = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)


def made(n: int, at: datetime, tenant: str | None = None) -> Job:
    return Job(
        id=f"job_{n:02d}",
        provider="sandbox",
        request=GenerationRequest(model="sandbox-image"),
        tenant=tenant,
        created_at=at,
        updated_at=at,
        deadline_at=at + timedelta(hours=1),
    )


def test_every_job_is_listed_once_newest_first_across_minutes_and_pages() -> None:
    store = JobStore(fakeredis.FakeRedis(), retention_seconds=3600)
    # 3 in one minute, 2 two minutes later, 1 of a tenant ten minutes later
    times = [START, START + timedelta(seconds=5), START + timedelta(seconds=50)]
    times += [START + timedelta(minutes=2), START + timedelta(minutes=2, seconds=1), START + timedelta(minutes=10)]
    for n, at in enumerate(times):
        store.create(made(n, at, tenant="acme" if n == 5 else None))
    seen: list[str] = []
    before = None
    while page := store.created_jobs(before, 2):
        seen += [job.id for _, job in page]
        before = page[-1][0]
    assert seen == ["job_05", "job_04", "job_03", "job_02", "job_01", "job_00"]
    assert [job.id for _, _, job in store.tenant_jobs("acme", None, 10)] == ["job_05"]  # the tenant's own index too


def test_a_job_that_expired_is_skipped_and_an_expired_minute_is_forgotten() -> None:
    client = fakeredis.FakeRedis()
    store = JobStore(client, retention_seconds=3600)
    for n in range(3):
        store.create(made(n, START + timedelta(minutes=n)))
    client.delete(JOB_KEY.format(job_id="job_01"))  # as its retention ran out
    assert [job.id for _, job in store.created_jobs(None, 10)] == ["job_02", "job_00"]
    old = created_minute(made(0, START))
    assert client.ttl(CREATED_JOBS_KEY.format(minute=old)) > 3600  # the list outlives its jobs' retention
    client.delete(CREATED_JOBS_KEY.format(minute=old))  # as the minute's list expired
    assert [job.id for _, job in store.created_jobs(None, 10)] == ["job_02"]
    assert str(old).encode() not in client.zrange(CREATED_MINUTES_KEY, 0, -1)


def test_a_rewrite_does_not_index_a_job_twice() -> None:
    store = JobStore(fakeredis.FakeRedis())
    job = made(0, START)
    store.create(job)
    store.update(job.id, lambda current: current.model_copy(update={"metadata": {"k": "v"}}))
    assert [found.id for _, found in store.created_jobs(None, 10)] == ["job_00"]
