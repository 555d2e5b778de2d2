"""Counters counted when things happen: what each job-store write adds (pure), that the store adds it once with
the write it belongs to, and that nothing counted is taken back when a job expires."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import fakeredis
import pytest

from shared import counters
from shared.constants import JOB_KEY
from shared.counters import BUCKETS, COUNTERS_KEY, Before, field, of_write
from shared.models import (
    Cost,
    GenerationRequest,
    Job,
    JobError,
    JobStatus,
    Output,
    Route,
    WebhookAttempt,
    WebhookState,
)
from shared.store import JobStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new_job(job_id: str = "job_a") -> Job:
    return Job(
        id=job_id,
        provider="sandbox",
        request=GenerationRequest(model="sandbox-video", prompt="a flower opening"),
        created_at=T0,
        deadline_at=T0 + timedelta(hours=1),
        entered_at={"queued": T0},
    )


def moved(job: Job, status: JobStatus, seconds: float, **fields: object) -> Job:
    entered = {**job.entered_at, status.value: at(seconds)}
    return job.model_copy(update={"status": status, "entered_at": entered, **fields})


def bucket_of(seconds: float) -> str:
    return str(next(i for i, bound in enumerate(BUCKETS) if seconds <= bound))


def test_creating_a_job_counts_it_and_puts_it_in_the_queued_gauge() -> None:
    assert of_write(None, new_job(), T0) == {field("jobs_created", "sandbox"): 1, field("jobs", "sandbox", "queued"): 1}


def test_leaving_a_status_moves_the_gauge_and_observes_the_time_spent_in_it() -> None:
    queued = new_job()
    submitted = moved(queued, JobStatus.SUBMITTED, 4)
    counts = of_write(Before.of(queued), submitted, at(4))
    assert counts == {
        field("jobs", "sandbox", "queued"): -1,
        field("jobs", "sandbox", "submitted"): 1,
        field("job_status_seconds", "sandbox", "queued", bucket_of(4)): 1,
        field("job_status_seconds:sum", "sandbox", "queued"): 4.0,
        field("job_status_seconds:count", "sandbox", "queued"): 1,
    }


def test_ending_counts_the_end_its_code_cost_bytes_and_polls_once() -> None:
    running = moved(new_job(), JobStatus.RUNNING, 5, poll_count=3)
    output = Output(bucket="b", key="k", size=1000, sha256="0" * 64, content_type="video/mp4", url="https://x/k")
    done = moved(running, JobStatus.SUCCEEDED, 65, poll_count=5, outputs=[output], cost=Cost(usd=0.18))
    counts = of_write(Before.of(running), done, at(65))
    assert counts[field("jobs_ended", "sandbox", "succeeded", "none")] == 1
    assert counts[field("cost_usd", "sandbox")] == pytest.approx(0.18)
    assert counts[field("output_bytes", "sandbox")] == 1000
    assert counts[field("polls", "sandbox")] == 2  # the polls since the last write, not all five
    assert field("jobs", "sandbox", "succeeded") not in counts  # terminal statuses are counters, not a gauge
    # a later write of the ended job (its webhook, a redelivery) does not count the end again
    assert field("jobs_ended", "sandbox", "succeeded", "none") not in of_write(Before.of(done), done, at(70))


def test_a_failed_job_counts_under_its_error_code() -> None:
    failed = moved(new_job(), JobStatus.FAILED, 30, error=JobError(code="provider_error", message="boom"))
    assert of_write(Before.of(new_job()), failed, at(30))[field("jobs_ended", "sandbox", "failed", "provider_error")]


def test_webhook_attempts_count_by_outcome_and_the_first_observes_ready_to_webhook() -> None:
    finalizing = moved(moved(new_job(), JobStatus.RUNNING, 5), JobStatus.FINALIZING, 60)
    done = moved(finalizing, JobStatus.SUCCEEDED, 61)
    hook = WebhookState(event_id="evt", event_type="job.succeeded", timestamp=at(61))
    first = done.model_copy(
        update={"webhook": hook.model_copy(update={"attempts": [WebhookAttempt(at=at(62), status_code=503)]})}
    )
    counts = of_write(Before.of(done), first, at(62))
    assert counts[field("webhook_attempts", "failed")] == 1
    assert counts[field("ready_to_webhook_seconds:sum", "sandbox")] == 2.0  # finalizing entered at 60, sent at 62
    second = first.model_copy(deep=True)
    assert second.webhook is not None
    second.webhook.attempts.append(WebhookAttempt(at=at(70), status_code=200))
    again = of_write(Before.of(first), second, at(70))
    assert again == {field("webhook_attempts", "delivered"): 1}  # observed once, at the first attempt


def test_the_store_adds_a_writes_counts_with_the_write_and_only_once_per_commit() -> None:
    client = fakeredis.FakeRedis()
    store = JobStore(client)
    store.create(new_job())
    raced = {"done": False}

    def change(job: Job) -> Job:
        if not raced["done"]:  # another worker writes first: this try loses its compare-and-set
            raced["done"] = True
            store.update(job.id, lambda other: other.model_copy(update={"poll_count": 1}))
        return moved(job, JobStatus.SUBMITTED, 1)

    store.update("job_a", change)
    values = {key.decode(): float(value) for key, value in client.hgetall(COUNTERS_KEY).items()}
    assert values[field("jobs_created", "sandbox")] == 1
    assert values[field("jobs", "sandbox", "queued")] == 0
    assert values[field("jobs", "sandbox", "submitted")] == 1
    assert values[field("polls", "sandbox")] == 1  # the other worker's write, counted once
    assert values[field("job_status_seconds:count", "sandbox", "queued")] == 1


def test_counters_never_decrease_when_ended_jobs_expire() -> None:
    client = fakeredis.FakeRedis()
    store = JobStore(client, retention_seconds=0.2)
    for n in range(3):
        store.create(new_job(f"job_{n}"))
        store.update(f"job_{n}", lambda job: moved(job, JobStatus.SUCCEEDED, 9, cost=Cost(usd=0.5)))
    before = {
        sample.family + str(sample.labels): sample.value for sample in counters.parse(client.hgetall(COUNTERS_KEY))
    }
    deadline = time.monotonic() + 5
    while any(client.exists(JOB_KEY.format(job_id=f"job_{n}")) for n in range(3)):
        assert time.monotonic() < deadline, "the ended jobs did not expire"
        time.sleep(0.05)
    after = {
        sample.family + str(sample.labels): sample.value for sample in counters.parse(client.hgetall(COUNTERS_KEY))
    }
    assert after == before
    assert after["jobs_ended('sandbox', 'succeeded', 'none')"] == 3
    assert after["cost_usd('sandbox',)"] == pytest.approx(1.5)


def test_parse_skips_what_it_cannot_read_and_makes_buckets_cumulative() -> None:
    raw = {
        b"polls|sandbox": b"7",
        b"polls|sandbox|extra": b"1",  # wrong number of labels
        b"nonsense": b"x",
        b"unknown|a": b"1",
        b"job_status_seconds|sandbox|queued|0": b"2",
        b"job_status_seconds|sandbox|queued|3": b"1",
        b"job_status_seconds:sum|sandbox|queued": b"4.5",
        b"job_status_seconds:count|sandbox|queued": b"3",
        b"jobs|sandbox|queued": b"-2",  # a gauge below zero (jobs from before counting began) shows 0
    }
    samples = {(sample.family, sample.labels): sample for sample in counters.parse(raw)}
    assert samples[("polls", ("sandbox",))].value == 7
    assert samples[("jobs", ("sandbox", "queued"))].value == 0
    histogram = samples[("job_status_seconds", ("sandbox", "queued"))]
    assert histogram.buckets[:5] == (2.0, 2.0, 2.0, 3.0, 3.0) and histogram.buckets[-1] == 3.0
    assert (histogram.value, histogram.total) == (3.0, 4.5)
    assert len(samples) == 3


def test_a_routed_job_counts_for_its_route_and_its_render_time_for_its_provider_and_model() -> None:
    """What `fastest` routes by: render time from the vendor taking the job to its reporting it done."""
    route = Route(model="sora-2", providers=["vicsee", "veogen"], chosen="veogen")
    queued = new_job().model_copy(update={"provider": "veogen", "route": route})
    submitted = moved(queued, JobStatus.SUBMITTED, 2)
    counts = of_write(Before.of(queued), submitted, at(2))
    assert counts[field("jobs_routed", "sora-2", "veogen")] == 1
    running = moved(submitted, JobStatus.RUNNING, 10)
    assert field("jobs_routed", "sora-2", "veogen") not in of_write(Before.of(submitted), running, at(10))
    finalizing = moved(running, JobStatus.FINALIZING, 47)
    counts = of_write(Before.of(running), finalizing, at(47))
    total, count = counters.render_fields("veogen", "sandbox-video")
    assert (counts[total], counts[count]) == (45.0, 1.0)  # submitted at 2, ready at 47
    assert counters.render_fields("veogen", "sandbox-video")[0] == field(
        "render_seconds:sum", "veogen", "sandbox-video"
    )


def test_a_writes_recent_vendor_answers_go_to_the_minutes_hash_and_expire_with_it() -> None:
    client = fakeredis.FakeRedis()
    store = JobStore(client)
    store.create(new_job())
    answers = {counters.recent_answer("sandbox", 200): 1.0, counters.recent_answer("sandbox", 429): 1.0}
    lasting = {counters.vendor_request("sandbox", "submit", 200): 1.0}
    store.update("job_a", lambda job: moved(job, JobStatus.SUBMITTED, 1), counts=answers | lasting)
    minute = counters.recent_key(time.time())
    assert 0 < client.ttl(minute) <= counters.RECENT_KEEP_SECONDS
    assert not any(key.startswith(counters.RECENT_PREFIX.encode()) for key in client.hkeys(COUNTERS_KEY))
    assert client.hget(COUNTERS_KEY, counters.vendor_request("sandbox", "submit", 200)) == b"1"
    recent = counters.recent_answers(client, time.time())
    assert recent["sandbox"] == counters.RecentAnswers(ok=1, errors=1) and recent["sandbox"].error_rate == 0.5
    client.hset(minute, "recent|sandbox|ok", "not a number")  # an unreadable field is skipped, not fatal
    assert counters.recent_answers(client, time.time())["sandbox"] == counters.RecentAnswers(ok=0, errors=1)
