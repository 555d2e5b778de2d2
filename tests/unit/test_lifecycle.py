"""The state machine: who may run a step, and transitions that never go backwards or run twice."""

from __future__ import annotations

import random
from datetime import timedelta

import fakeredis
import pytest

from shared import lifecycle
from shared.batch.models import BatchStep
from shared.errors import GenerationFailed
from shared.lifecycle import Decision
from shared.models import GenerationRequest, Job, JobStatus, Step, utcnow
from shared.settings import Settings
from shared.store import JobStore


def make_job(webhook: str | None = "https://example.com/hook") -> Job:
    now = utcnow()
    return Job(
        id="job_1",
        provider="sandbox",
        request=GenerationRequest(model="sandbox-video"),
        webhook_url=webhook,
        deadline_at=now + timedelta(hours=1),
        step=lifecycle.new_step("submit", now),
    )


@pytest.fixture
def store() -> JobStore:
    return JobStore(fakeredis.FakeRedis())


def test_only_the_named_task_runs_a_step() -> None:
    job = make_job()
    assert job.step is not None
    now = utcnow()
    claim, leased = lifecycle.claim(job, "submit", job.step.task_id, now, 60)
    assert claim.decision is Decision.RUN and leased is not None
    other, _ = lifecycle.claim(job, "submit", "someone-else", now, 60)
    assert other.decision is Decision.DROP
    wrong_step, _ = lifecycle.claim(job, "poll", job.step.task_id, now, 60)
    assert wrong_step.decision is Decision.DROP


def test_a_duplicate_delivery_waits_for_the_lease_then_runs() -> None:
    job = make_job()
    assert job.step is not None
    now = utcnow()
    _, leased = lifecycle.claim(job, "submit", job.step.task_id, now, 60)
    assert leased is not None
    duplicate, _ = lifecycle.claim(leased, "submit", job.step.task_id, now + timedelta(seconds=1), 60)
    assert duplicate.decision is Decision.WAIT and 58 < duplicate.delay <= 59
    after_lease, _ = lifecycle.claim(leased, "submit", job.step.task_id, now + timedelta(seconds=61), 60)
    assert after_lease.decision is Decision.RUN


def test_a_step_not_yet_due_waits() -> None:
    job = make_job()
    job.step = lifecycle.new_step("poll", utcnow() + timedelta(seconds=30))
    claim, _ = lifecycle.claim(job, "poll", job.step.task_id, utcnow(), 60)
    assert claim.decision is Decision.WAIT and 28 < claim.delay <= 30


def test_advance_never_moves_backwards_and_needs_the_step() -> None:
    job = make_job()
    assert job.step is not None
    task = job.step.task_id
    now = utcnow()
    running = lifecycle.advance(job, task, now, status=JobStatus.RUNNING, step=lifecycle.new_step("poll", now))
    assert running is not None and running.status is JobStatus.RUNNING
    assert lifecycle.advance(running, task, now, status=JobStatus.SUBMITTED) is None  # old task id
    assert running.step is not None
    back = lifecycle.advance(running, running.step.task_id, now, status=JobStatus.SUBMITTED)
    assert back is None


def test_finish_happens_once_and_schedules_the_webhook() -> None:
    job = make_job()
    assert job.step is not None
    failed = lifecycle.fail_owned(job, job.step.task_id, GenerationFailed("nsfw"), utcnow())
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error.code == "generation_failed"
    assert failed.webhook is not None and failed.webhook.event_type == "job.failed"
    assert failed.step is not None and failed.step.name == "deliver_webhook"
    assert lifecycle.cancel(failed) is None
    no_hook = make_job(webhook=None)
    canceled = lifecycle.cancel(no_hook)
    assert canceled is not None and canceled.step is None and canceled.webhook is None


def test_store_create_get_update_and_due_index(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    with pytest.raises(ValueError):
        store.create(job)
    assert store.get("job_1") == job
    assert store.due_job_ids(before=utcnow().timestamp() + 1) == ["job_1"]
    canceled = store.update("job_1", lambda j: lifecycle.cancel(j))
    assert canceled is not None and canceled.status is JobStatus.CANCELED
    assert store.update("job_1", lambda j: lifecycle.cancel(j)) is None
    assert store.get("nosuch") is None


def test_store_update_is_compare_and_set(store: JobStore) -> None:
    """A writer whose read went stale re-reads and re-decides: only one of two racing transitions lands."""
    job = make_job()
    store.create(job)
    assert job.step is not None
    task = job.step.task_id
    calls = []

    def racing(current: Job) -> Job | None:
        calls.append(current.status)
        if len(calls) == 1:  # another worker ends the job between our read and our write
            store.update("job_1", lambda j: lifecycle.cancel(j))
        return lifecycle.advance(current, task, utcnow(), status=JobStatus.SUBMITTED, step=None)

    assert store.update("job_1", racing) is None
    assert calls == [JobStatus.QUEUED, JobStatus.CANCELED]
    stored = store.get("job_1")
    assert stored is not None and stored.status is JobStatus.CANCELED


def test_poll_delays_grow_with_jitter_and_cap() -> None:
    settings = Settings(poll_initial_seconds=1, poll_backoff_factor=2, poll_max_interval_seconds=10, poll_jitter=0.1)
    rng = random.Random(7)
    delays = [lifecycle.poll_delay_seconds(settings, n, rng) for n in range(8)]
    assert 0.9 <= delays[0] <= 1.1 and 1.8 <= delays[1] <= 2.2
    assert all(9 <= d <= 11 for d in delays[5:])
    assert lifecycle.first_poll_delay_seconds(settings, 45.0) == 10
    assert lifecycle.first_poll_delay_seconds(settings, None) == 1


def test_backoff_honours_retry_after_and_stays_below_half_the_visibility_timeout() -> None:
    settings = Settings(retry_base_seconds=1, visibility_timeout=600)
    rng = random.Random(1)
    assert 0.75 <= lifecycle.backoff_seconds(settings, 1, None, rng) <= 1.25
    assert lifecycle.backoff_seconds(settings, 1, 20, rng) == 20
    assert lifecycle.backoff_seconds(settings, 1, 10_000, rng) == settings.max_countdown_seconds < 300


def test_settings_refuse_poll_interval_past_half_visibility_timeout() -> None:
    with pytest.raises(ValueError, match="half of visibility_timeout"):
        Settings(visibility_timeout=100, poll_max_interval_seconds=60)


def test_every_error_can_be_reworded_keeping_its_class_and_fields() -> None:
    """A spent retry budget rewords the error; SendFailed takes two arguments, and copy.copy once broke on it."""
    from shared.providers.client import SendFailed

    error = SendFailed("could not connect to vendor.test", sent=False)
    reworded = error.reworded("vendor submit: could not connect (gave up after 5 retries)")
    assert type(reworded) is SendFailed and reworded.sent is False and reworded.code == "provider_error"
    assert reworded.message == reworded.args[0] == "vendor submit: could not connect (gave up after 5 retries)"
    assert error.message == "could not connect to vendor.test"


def test_one_rule_decides_a_jobs_step_and_a_batchs_step() -> None:
    """lifecycle.step_decision: the same answer for a Step and a BatchStep in the same position."""
    td = timedelta
    now = utcnow()
    cases = [
        (dict(due_at=now), "t1", (Decision.RUN, 0.0)),
        (dict(due_at=now), "other", (Decision.DROP, 0.0)),
        (dict(due_at=now + td(seconds=30)), "t1", (Decision.WAIT, 30.0)),
        (dict(due_at=now, lease_until=now + td(seconds=12)), "t1", (Decision.WAIT, 12.0)),
        (dict(due_at=now, lease_until=now - td(seconds=1)), "t1", (Decision.RUN, 0.0)),  # a lease run out
    ]
    for fields, asking, expected in cases:
        job_step = Step(name="poll", task_id="t1", **fields)
        batch_step = BatchStep(task_id="t1", **fields)
        decided = lifecycle.step_decision(job_step, asking, now)
        assert decided == lifecycle.step_decision(batch_step, asking, now) == expected
    assert lifecycle.step_decision(None, "t1", now) == (Decision.DROP, 0.0)


def test_transitions_leave_the_job_they_were_given_as_it_was() -> None:
    """claim, renew_lease and advance copy only what they change and share the rest: the job given stays as it
    was, nested parts included."""
    now = utcnow()
    job = Job(
        id="job_pure",
        provider="sandbox",
        request=GenerationRequest(model="sandbox-image"),
        deadline_at=now + timedelta(hours=1),
        step=lifecycle.new_step("poll", now),
        metadata={"k": "v"},
    )
    before = job.model_dump()
    assert job.step is not None
    _, leased = lifecycle.claim(job, "poll", job.step.task_id, now, 30)
    assert leased is not None and leased.step is not None and leased.step.lease_until is not None
    renewed = lifecycle.renew_lease(leased, job.step.task_id, now + timedelta(seconds=25), 30)
    advanced = lifecycle.advance(leased, job.step.task_id, now, status=JobStatus.RUNNING, poll_count=1)
    assert renewed is not None and advanced is not None and advanced.status is JobStatus.RUNNING
    assert job.model_dump() == before
    assert leased.step.lease_until == now + timedelta(seconds=30) and leased.poll_count == 0
