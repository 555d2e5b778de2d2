"""Idempotent enqueue when a submit dies between claiming its key and storing its job (a crash, Redis away)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fakeredis
import pytest

import producer.api
from producer.api import Producer
from producer.batch import BatchOptions, BatchProducer
from producer.validate import build_request, fingerprint
from shared.batch import Batch, BatchStore
from shared.errors import InvalidRequest
from shared.settings import Settings
from shared.store import IdempotencyKeyTaken, JobStore


class Published:
    """Stands in for the Celery app: records what would be published."""

    def __init__(self) -> None:
        self.tasks: list[str] = []

    def send_task(self, name: str, args: list[str], **options: Any) -> None:
        self.tasks.append(args[0])


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> tuple[Producer, JobStore, Published]:
    monkeypatch.setattr(producer.api, "CREATION_WAIT_SECONDS", 0.2)
    store = JobStore(fakeredis.FakeRedis())
    published = Published()
    return Producer(Settings(), store=store, celery=published), store, published  # type: ignore[arg-type]


def request_fingerprint() -> str:
    return fingerprint("sandbox", build_request("sandbox-image", "a cat", {}, []), None, {})


def test_the_same_key_gives_back_the_same_job(world: tuple[Producer, JobStore, Published]) -> None:
    client, _, published = world
    first = client.submit("sandbox", "sandbox-image", "a cat", idempotency_key="k1")
    again = client.submit("sandbox", "sandbox-image", "a cat", idempotency_key="k1")
    assert again.id == first.id and published.tasks == [first.id]
    with pytest.raises(InvalidRequest, match="different request"):
        client.submit("sandbox", "sandbox-image", "a dog", idempotency_key="k1")


def test_a_claim_whose_job_never_appeared_is_taken_over(world: tuple[Producer, JobStore, Published]) -> None:
    client, store, published = world
    assert store.claim_idempotency_key("k2", "job_died", request_fingerprint()) is None  # then the submit died
    job = client.submit("sandbox", "sandbox-image", "a cat", idempotency_key="k2")
    assert job.id != "job_died" and published.tasks == [job.id]
    assert client.submit("sandbox", "sandbox-image", "a cat", idempotency_key="k2").id == job.id


def test_a_stalled_submit_cannot_store_a_second_job_after_a_takeover(
    world: tuple[Producer, JobStore, Published],
) -> None:
    client, store, _ = world
    assert store.claim_idempotency_key("k3", "job_slow", request_fingerprint()) is None  # then it stalls
    taker = client.submit("sandbox", "sandbox-image", "a cat", idempotency_key="k3")
    stalled = taker.model_copy(update={"id": "job_slow"})
    with pytest.raises(IdempotencyKeyTaken):
        store.create(stalled)  # the stalled submit wakes up: its job is refused
    assert store.get("job_slow") is None


def test_a_batch_line_claimed_by_a_run_that_died_is_stored_on_resume(
    world: tuple[Producer, JobStore, Published], tmp_path: Path
) -> None:
    client, store, _ = world
    batches = BatchProducer(client)
    path = tmp_path / "b.jsonl"
    path.write_text('{"provider": "sandbox", "model": "sandbox-image", "prompt": "a"}\n')
    options = BatchOptions(name="resume-after-death")
    plan = batches.plan(path, options)
    batch, _ = BatchStore(store.redis).open(options.name, lambda batch_id: Batch(id=batch_id, name=options.name))
    BatchStore(store.redis).claim_line(batch.id, 1, "job_never_stored", plan.jobs[0].fingerprint)
    result = batches.enqueue(plan, options)
    assert result.enqueued == 1 and result.already == 0
    [(line, job_id)] = BatchStore(store.redis).line_jobs(batch.id)
    assert line == 1 and job_id != "job_never_stored" and store.get(job_id) is not None
