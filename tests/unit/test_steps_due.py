"""The steps-due gauge: the job store's writes keep a due index per queue, so the exporter's scrape counts what is
due on each queue (and what is overdue) without reading a job (shared/metrics.queue_due_commands and queue_steps,
in the exporter's one pipeline), and shows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import fakeredis
import pytest
import redis
from prometheus_client import generate_latest

from producer import metrics_exporter
from shared import lifecycle
from shared.batch.store import BatchStore
from shared.constants import JOB_KEY, QUEUE_DUE_KEY
from shared.metrics import DUE_COMMANDS, OVERDUE_AFTER_SECONDS, QueueSteps, queue_due_commands, queue_steps
from shared.models import GenerationRequest, Job, JobStatus, StepName
from shared.quarantine import Quarantine
from shared.store import JobStore

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store() -> JobStore:
    return JobStore(fakeredis.FakeRedis())


def steps_due(client: redis.Redis, now: datetime) -> dict[str, QueueSteps]:
    """The steps-due figures exactly as a scrape reads them."""
    return metrics_exporter.read_figures(client, [], now.timestamp()).steps


def job_with_step(job_id: str, step: StepName, due_in: float) -> Job:
    job = Job(
        id=job_id,
        provider="sandbox",
        request=GenerationRequest(model="sandbox-image", prompt="a flower"),
        created_at=NOW,
        deadline_at=NOW + timedelta(hours=1),
    )
    return job.model_copy(update={"step": lifecycle.new_step(step, NOW + timedelta(seconds=due_in))})


def test_each_queue_counts_its_due_and_overdue_steps(store: JobStore) -> None:
    store.create(job_with_step("job_a", "submit", due_in=-1))
    store.create(job_with_step("job_b", "submit", due_in=-(OVERDUE_AFTER_SECONDS + 5)))
    store.create(job_with_step("job_c", "poll", due_in=-3))
    store.create(job_with_step("job_d", "poll", due_in=+30))  # a countdown still running: not due
    store.create(job_with_step("job_e", "deliver_webhook", due_in=-2))

    figures = steps_due(store.redis, NOW)

    assert list(figures) == ["submit", "poll", "finalize", "webhooks"]
    assert figures["submit"] == QueueSteps(due=2, overdue=1)
    assert figures["poll"] == QueueSteps(due=1, overdue=0)
    assert figures["finalize"] == QueueSteps()
    assert figures["webhooks"] == QueueSteps(due=1, overdue=0)


def test_a_step_moves_between_queues_and_leaves_when_the_job_has_none(store: JobStore) -> None:
    store.create(job_with_step("job_a", "submit", due_in=-1))
    store.update("job_a", lambda job: job.model_copy(update={"step": lifecycle.new_step("poll", NOW)}))
    assert store.redis.zscore(QUEUE_DUE_KEY.format(queue="submit"), "job_a") is None
    assert steps_due(store.redis, NOW)["poll"].due == 1

    store.update("job_a", lambda job: job.model_copy(update={"step": None, "status": JobStatus.SUCCEEDED}))
    assert all(figure == QueueSteps() for figure in steps_due(store.redis, NOW).values())


def test_a_job_written_before_its_queue_was_kept_leaves_every_queue_index(store: JobStore) -> None:
    """A job record from before the hash kept its queue (`queue`): its next write takes it off all four."""
    store.create(job_with_step("job_a", "submit", due_in=-1))
    store.redis.hdel(JOB_KEY.format(job_id="job_a"), "queue")
    store.redis.zadd(QUEUE_DUE_KEY.format(queue="finalize"), {"job_a": NOW.timestamp()})  # as if left behind
    store.update("job_a", lambda job: job.model_copy(update={"step": lifecycle.new_step("poll", NOW)}))
    figures = steps_due(store.redis, NOW)
    assert figures["poll"].due == 1
    assert figures["submit"] == figures["finalize"] == QueueSteps()


def test_a_quarantined_job_leaves_every_due_index(store: JobStore) -> None:
    store.create(job_with_step("job_a", "finalize", due_in=-1))
    store.redis.hset(JOB_KEY.format(job_id="job_a"), "data", "{not json")
    Quarantine(store.redis).add("job", "job_a", "broken JSON")
    assert steps_due(store.redis, NOW)["finalize"] == QueueSteps()


def test_batch_completion_deliveries_count_on_the_webhooks_queue(store: JobStore) -> None:
    store.redis.zadd("genqueue:batches:due", {"batch_x": (NOW - timedelta(seconds=90)).timestamp()})
    assert BatchStore(store.redis).due_batch_ids(before=NOW.timestamp()) == ["batch_x"]
    assert steps_due(store.redis, NOW)["webhooks"] == QueueSteps(due=1, overdue=1)


def test_the_due_commands_and_their_reading_agree_on_the_replies(store: JobStore) -> None:
    store.create(job_with_step("job_a", "poll", due_in=-1))
    pipe = store.redis.pipeline(transaction=False)
    queue_due_commands(pipe, NOW.timestamp())
    replies = pipe.execute()
    assert len(replies) == DUE_COMMANDS
    assert queue_steps(replies)["poll"] == QueueSteps(due=1, overdue=0)
    with pytest.raises(ValueError, match=f"expected {DUE_COMMANDS} due counts"):
        queue_steps(replies[:-1])


def test_the_exporter_shows_the_gauges(store: JobStore) -> None:
    store.create(job_with_step("job_a", "poll", due_in=-120))
    text = generate_latest(metrics_exporter.registry_for(store.redis)).decode()
    assert 'genqueue_steps_due{queue="poll"} 1.0' in text
    assert 'genqueue_steps_overdue{queue="poll"} 1.0' in text
    assert 'genqueue_steps_due{queue="submit"} 0.0' in text
    assert "genqueue_batches_active 0.0" in text
    store.redis.sadd("genqueue:batches:active", "batch_x")
    assert "genqueue_batches_active 1.0" in generate_latest(metrics_exporter.registry_for(store.redis)).decode()
