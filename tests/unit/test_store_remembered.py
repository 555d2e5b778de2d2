"""A thread's next update of the job it last wrote starts from the copy it wrote (no read), and is still never
written over a newer job: the compare-and-set fails and the job is read; a decline on the copy is asked again
with the job as stored."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import fakeredis

from shared import counters, lifecycle
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


def test_each_thread_remembers_its_own_write() -> None:
    ours, _ = stores()
    ours.create(new_job("job_a"))
    ours.create(new_job("job_b"))
    ours.update("job_a", polled)
    other = threading.Thread(target=ours.update, args=("job_b", polled))
    other.start()
    other.join()
    CountingRedis.reads = 0
    ours.update("job_a", polled)  # this thread's last write is still job_a's
    assert CountingRedis.reads == 0
    ours.update("job_b", polled)  # written by the other thread: read
    assert CountingRedis.reads == 1


def test_counts_given_to_an_update_are_added_by_its_write_only_if_it_commits() -> None:
    ours, _ = stores()
    ours.create(new_job())
    field = counters.vendor_request("sandbox", "poll", 200)
    ours.update("job_m", polled, counts={field: 1})
    ours.update("job_m", lambda job: None, counts={field: 1})  # declined: nothing written, nothing counted
    assert float(ours.redis.hget(counters.COUNTERS_KEY, field) or 0) == 1.0
