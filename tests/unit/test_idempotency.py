"""Idempotent enqueue when a submit dies between claiming its key and storing its job (a crash, Redis away)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fakeredis
import pytest

import shared.claims
from producer.api import Producer
from producer.batch import BatchOptions, BatchProducer
from producer.validate import build_request, fingerprint
from shared.batch import Batch, BatchStore
from shared.claims import ClaimTakenOver
from shared.errors import InvalidRequest
from shared.models import Job, utcnow
from shared.settings import Settings
from shared.store import JobStore, idempotency_slot


class Published:
    """Stands in for the Celery app: records what would be published."""

    def __init__(self) -> None:
        self.tasks: list[str] = []

    def send_task(self, name: str, args: list[str], **options: Any) -> None:
        self.tasks.append(args[0])


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> tuple[Producer, JobStore, Published]:
    monkeypatch.setattr(shared.claims, "TAKE_OVER_AFTER_SECONDS", 0.2)
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
    assert store.claims.claim(idempotency_slot("k2"), "job_died", request_fingerprint()) is None  # then it died
    job = client.submit("sandbox", "sandbox-image", "a cat", idempotency_key="k2")
    assert job.id != "job_died" and published.tasks == [job.id]
    assert client.submit("sandbox", "sandbox-image", "a cat", idempotency_key="k2").id == job.id


def test_a_stalled_submit_cannot_store_a_second_job_after_a_takeover(
    world: tuple[Producer, JobStore, Published],
) -> None:
    client, store, _ = world
    assert store.claims.claim(idempotency_slot("k3"), "job_slow", request_fingerprint()) is None  # then it stalls
    taker = client.submit("sandbox", "sandbox-image", "a cat", idempotency_key="k3")
    stalled = taker.model_copy(update={"id": "job_slow"})
    with pytest.raises(ClaimTakenOver):
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
    lines = BatchStore(store.redis)
    lines.claims.claim(lines.line_slot(batch.id, 1), "job_never_stored", plan.jobs[0].fingerprint)
    result = batches.enqueue(plan, options)
    assert result.enqueued == 1 and result.already == 0
    [(line, job_id)] = BatchStore(store.redis).line_jobs(batch.id)
    assert line == 1 and job_id != "job_never_stored" and store.get(job_id) is not None


def test_a_stalled_batch_run_cannot_store_a_second_job_for_its_line(
    world: tuple[Producer, JobStore, Published],
) -> None:
    _, store, _ = world
    batches = BatchStore(store.redis)
    slot = batches.line_slot("batch_x", 1)
    assert batches.claims.claim(slot, "job_slow", "fp") is None  # then the run stalls
    assert batches.claims.take_over(slot, "job_slow", "job_taker", "fp")  # a resumed run found no job and took over
    stalled = Job(
        id="job_slow",
        provider="sandbox",
        request=build_request("sandbox-image", "a", {}, []),
        batch_id="batch_x",
        deadline_at=utcnow(),
    )
    with pytest.raises(ClaimTakenOver):
        store.create(stalled, slot)
    assert store.get("job_slow") is None
