"""The next update of a job this process wrote a moment ago starts from the copy it wrote (no read), and is still
never written over a newer job: the compare-and-set fails and the job is read; a decline on the copy is asked
again with the job as stored."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import fakeredis
import pytest

from shared import counters, lifecycle
from shared import store as store_module
from shared.models import GenerationRequest, Job, utcnow
from shared.store import JobStore


class CountingRedis(fakeredis.FakeRedis):
    """Counts HMGETs, the read an update starts with."""

    reads = 0

    def hmget(self, *args: Any, **kwargs: Any) -> Any:
        CountingRedis.reads += 1
        return super().hmget(*args, **kwargs)


def stores() -> tuple[JobStore, JobStore]:
    """Two stores on one server: two worker processes."""
    server = fakeredis.FakeServer()
    return JobStore(CountingRedis(server=server)), JobStore(fakeredis.FakeRedis(server=server))


def new_job(job_id: str = "job_m") -> Job:
    now = utcnow()
    return Job(
        id=job_id,
        provider="sandbox",
        request=GenerationRequest(model="sandbox-image"),
        deadline_at=now + timedelta(hours=1),
        step=lifecycle.new_step("poll", now),
    )


def polled(job: Job) -> Job:
    return job.model_copy(update={"poll_count": job.poll_count + 1})


def test_the_update_after_a_write_reads_nothing_and_a_first_update_reads_once() -> None:
    ours, _ = stores()
    ours.create(new_job())
    CountingRedis.reads = 0
    ours.update("job_m", polled)
    assert CountingRedis.reads == 1  # the job was created, not written by an update: read
    ours.update("job_m", polled)
    ours.update("job_m", polled)
    assert CountingRedis.reads == 1
    stored = ours.get("job_m")
    assert stored is not None and stored.poll_count == 3


def test_a_copy_another_write_overtook_is_never_written_over() -> None:
    ours, theirs = stores()
    ours.create(new_job())
    ours.update("job_m", polled)
    theirs.update("job_m", lambda job: job.model_copy(update={"metadata": {"by": "them"}}))
    CountingRedis.reads = 0
    written = ours.update("job_m", polled)
    assert CountingRedis.reads == 1  # the compare-and-set on the copy failed; the job was read
    assert written is not None and written.poll_count == 2 and written.metadata == {"by": "them"}


def test_a_decline_on_the_copy_is_asked_again_of_the_stored_job() -> None:
    """The sweeper gave the step a fresh task id after this thread's last write: the task it sent must run, not
    drop itself on this thread's older copy."""
    ours, theirs = stores()
    ours.create(new_job())
    ours.update("job_m", polled)
    fresh = lifecycle.new_step("poll", utcnow())
    theirs.update("job_m", lambda job: job.model_copy(update={"step": fresh}))

    def only_for_the_fresh_task(job: Job) -> Job | None:
        return polled(job) if job.step is not None and job.step.task_id == fresh.task_id else None

    written = ours.update("job_m", only_for_the_fresh_task)
    assert written is not None and written.poll_count == 2


def test_a_write_by_another_thread_is_remembered_too_and_a_copy_is_used_once() -> None:
    ours, _ = stores()
    ours.create(new_job())
    ours.update("job_m", polled)  # read once: created, not yet written by an update
    other = threading.Thread(target=ours.update, args=("job_m", polled))
    other.start()
    other.join()
    CountingRedis.reads = 0
    ours.update("job_m", polled)  # the next step's claim, on another thread of the same process
    assert CountingRedis.reads == 0
    stored = ours.get("job_m")
    assert stored is not None and stored.poll_count == 3


def test_a_copy_older_than_the_remembering_window_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    ours, _ = stores()
    ours.create(new_job())
    ours.update("job_m", polled)
    monkeypatch.setattr(store_module, "REMEMBER_SECONDS", 0.0)
    CountingRedis.reads = 0
    ours.update("job_m", polled)
    assert CountingRedis.reads == 1


def test_at_most_remember_jobs_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "REMEMBER_JOBS", 2)
    ours, _ = stores()
    for job_id in ("job_a", "job_b", "job_c"):
        ours.create(new_job(job_id))
        ours.update(job_id, polled)
    CountingRedis.reads = 0
    ours.update("job_a", polled)  # the oldest, forgotten
    ours.update("job_c", polled)
    assert CountingRedis.reads == 1


def test_counts_given_to_an_update_are_added_by_its_write_only_if_it_commits() -> None:
    ours, _ = stores()
    ours.create(new_job())
    field = counters.vendor_request("sandbox", "poll", 200)
    ours.update("job_m", polled, counts={field: 1})
    ours.update("job_m", lambda job: None, counts={field: 1})  # declined: nothing written, nothing counted
    assert float(ours.redis.hget(counters.COUNTERS_KEY, field) or 0) == 1.0
