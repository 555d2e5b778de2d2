"""Batch records on fakeredis: compare-and-set writes, the `batch.completed` delivery as a step (pure decisions,
the delivery task, the sweeper), and the dispatcher's heartbeat behind `batch status`'s warning."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import fakeredis
import httpx
import pytest
from typer.testing import CliRunner

from producer import cli_batch
from producer.api import Producer
from producer.cli import app as cli_app
from shared.batch import Batch, BatchStore
from shared.batch import lifecycle as batch_lifecycle
from shared.batch.models import BatchStep, dispatcher_health, dispatcher_stale_after
from shared.lifecycle import Decision
from shared.models import GenerationRequest, Job, JobStatus, utcnow
from shared.protection import ProviderGuard
from shared.settings import Settings
from shared.store import JobStore
from shared.webhooks.signing import generate_secret
from workers import batch_webhooks, context, dispatcher, sweeper
from workers.app import app as worker_app

DUE = "genqueue:batches:due"


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def batches(client: fakeredis.FakeRedis) -> BatchStore:
    return BatchStore(client)


def completed_batch(batch_id: str = "batch_c", **fields: Any) -> Batch:
    """A batch of 2 jobs that just completed, its event's delivery due now."""
    batch = Batch(id=batch_id, name=batch_id, total=2, webhook_url="https://hooks.example.com/b", **fields)
    completed = batch_lifecycle.complete(batch, ended=2, held=0, now=utcnow())
    assert completed is not None
    return completed


# --- compare-and-set


def test_a_concurrent_writers_change_is_not_lost(client: fakeredis.FakeRedis, batches: BatchStore) -> None:
    assert batches.create(Batch(id="batch_1", name="one", total=3))
    other = BatchStore(client)  # another process: a webhook attempt, `batch retry`, the dispatcher
    seen: list[int] = []

    def raise_total(batch: Batch) -> Batch:
        seen.append(batch.total)
        if len(seen) == 1:  # the other writer gets in between this read and this write
            other.update("batch_1", lambda b: b.model_copy(update={"providers": ["vicsee"]}))
        return batch.model_copy(update={"total": batch.total + 1})

    written = batches.update("batch_1", raise_total)
    assert written is not None and seen == [3, 3]  # the first write lost the race and decided again
    stored = batches.get("batch_1")
    assert stored is not None and stored.total == 4 and stored.providers == ["vicsee"]


def test_create_refuses_an_existing_batch_and_update_declines_or_finds_none(batches: BatchStore) -> None:
    assert batches.create(Batch(id="batch_1", name="one"))
    assert not batches.create(Batch(id="batch_1", name="other"))
    stored = batches.get("batch_1")
    assert stored is not None and stored.name == "one"
    assert batches.update("batch_1", lambda b: None) is None
    assert batches.update("batch_missing", lambda b: b) is None
    assert batches.get("batch_missing") is None


def test_a_record_written_before_versions_is_updated(client: fakeredis.FakeRedis, batches: BatchStore) -> None:
    client.hset("genqueue:batch:batch_old", "data", Batch(id="batch_old", name="old").model_dump_json())
    written = batches.update("batch_old", lambda b: b.model_copy(update={"total": 7}))
    assert written is not None and written.total == 7
    assert client.hget("genqueue:batch:batch_old", "version") == b"1"


def test_the_due_index_follows_the_batch_step(client: fakeredis.FakeRedis, batches: BatchStore) -> None:
    batch = completed_batch()
    assert batch.step is not None
    assert batches.create(batch)
    assert client.zscore(DUE, batch.id) == pytest.approx(batch.step.due_at.timestamp())
    assert batches.due_batch_ids(before=utcnow().timestamp() + 1) == [batch.id]
    batches.update(batch.id, lambda b: b.model_copy(update={"step": None}))
    assert batches.due_batch_ids(before=utcnow().timestamp() + 1) == []


def test_an_index_entry_is_dropped_only_once_its_batch_is_gone(
    client: fakeredis.FakeRedis, batches: BatchStore
) -> None:
    batches.create(completed_batch())
    assert not batches.unindex_if_gone("batch_c")
    client.delete("genqueue:batch:batch_c")  # expired after the retention
    assert batches.unindex_if_gone("batch_c") and client.zcard(DUE) == 0


# --- the pure decisions


def test_a_batch_completes_once_when_every_job_ended_and_none_is_held() -> None:
    now = utcnow()
    batch = Batch(id="b", name="b", total=3, webhook_url="https://hooks.example.com/b")
    assert batch_lifecycle.complete(batch, ended=2, held=0, now=now) is None
    assert batch_lifecycle.complete(batch, ended=3, held=1, now=now) is None
    assert batch_lifecycle.complete(batch.model_copy(update={"total": 0}), ended=0, held=0, now=now) is None
    completed = batch_lifecycle.complete(batch, ended=3, held=0, now=now)
    assert completed is not None and completed.completed_at == now
    assert completed.webhook is not None and completed.webhook.event_type == "batch.completed"
    assert completed.step is not None and completed.step.due_at == now and completed.step.lease_until is None
    assert batch_lifecycle.complete(completed, ended=3, held=0, now=now) is None  # once
    quiet = batch_lifecycle.complete(batch.model_copy(update={"webhook_url": None}), ended=3, held=0, now=now)
    assert quiet is not None and quiet.webhook is None and quiet.step is None


def test_only_the_task_the_step_names_runs_it_and_not_while_leased_or_early() -> None:
    now = utcnow()
    batch = completed_batch()
    assert batch.step is not None
    own = batch.step.task_id
    assert batch_lifecycle.claim(batch, "someone_else", now, 60)[0].decision is Decision.DROP
    done = batch.model_copy(update={"step": None})
    assert batch_lifecycle.claim(done, own, now, 60)[0].decision is Decision.DROP
    later = batch.model_copy(update={"step": batch.step.model_copy(update={"due_at": now + timedelta(minutes=5)})})
    early = batch_lifecycle.claim(later, own, now, 60)[0]
    assert early.decision is Decision.WAIT and early.delay == pytest.approx(300)
    run, leased = batch_lifecycle.claim(batch, own, now, 60)
    assert run.decision is Decision.RUN and leased is not None and leased.step is not None
    assert leased.step.lease_until == now + timedelta(seconds=60)
    again = batch_lifecycle.claim(leased, own, now + timedelta(seconds=1), 60)[0]  # a redelivered copy of it
    assert again.decision is Decision.WAIT and again.delay == pytest.approx(59)


def test_an_attempt_is_recorded_only_by_its_steps_owner_and_a_retry_gets_a_new_task_id() -> None:
    now = utcnow()
    batch = completed_batch()
    assert batch.step is not None and batch.webhook is not None
    own = batch.step.task_id
    failed = batch.webhook.model_copy(update={"attempts": []})
    assert batch_lifecycle.record_attempt(batch, "stale", failed, 5.0, now) is None
    retry = batch_lifecycle.record_attempt(batch, own, failed, 5.0, now)
    assert retry is not None and retry.step is not None
    assert retry.step.task_id != own and retry.step.due_at == now + timedelta(seconds=5)
    assert retry.webhook is not None and retry.webhook.event_id == batch.webhook.event_id
    delivered = batch.webhook.model_copy(update={"delivered": True})
    done = batch_lifecycle.record_attempt(batch, own, delivered, None, now)
    assert done is not None and done.step is None and done.webhook is not None and done.webhook.delivered
    assert batch_lifecycle.finish_step(batch, "stale") is None
    finished = batch_lifecycle.finish_step(batch, own)
    assert finished is not None and finished.step is None


def test_resume_overdue_only_when_overdue_and_not_leased() -> None:
    now = utcnow()
    batch = completed_batch()
    assert batch.step is not None
    assert batch_lifecycle.resume_overdue(batch, now, grace_seconds=60) is None  # due just now
    lost = batch.model_copy(update={"step": batch.step.model_copy(update={"due_at": now - timedelta(minutes=5)})})
    assert lost.step is not None
    leased = lost.model_copy(update={"step": lost.step.model_copy(update={"lease_until": now + timedelta(seconds=9)})})
    assert batch_lifecycle.resume_overdue(leased, now, 60) is None  # its worker is still at it
    resumed = batch_lifecycle.resume_overdue(lost, now, 60)
    assert resumed is not None and resumed.step is not None
    assert resumed.step.task_id != lost.step.task_id and resumed.step.due_at == now
    # the lost task, should it turn up after all, is now stale and drops itself
    assert batch_lifecycle.claim(resumed, lost.step.task_id, now, 60)[0].decision is Decision.DROP


def test_reopening_for_a_retry_drops_the_event_and_a_resume_keeps_it() -> None:
    batch = completed_batch()
    resumed = batch_lifecycle.reopen(batch, 5, new_event=False)
    assert resumed.completed_at is None and resumed.total == 5 and resumed.webhook == batch.webhook
    retried = batch_lifecycle.reopen(batch, 6, new_event=True)
    assert retried.completed_at is None and retried.webhook is None and retried.step is None


def test_held_jobs_are_stale_only_without_a_recent_dispatcher_pass() -> None:
    now = utcnow()
    assert dispatcher_stale_after(1.0, 10.0) == 30.0  # the defaults: 30 s, a few 10 s task spans
    just_submitted = now - timedelta(seconds=5)
    assert not dispatcher_health(None, held=3, now=now, stale_after=30, held_since=just_submitted).stale
    waited = now - timedelta(seconds=40)
    assert dispatcher_health(None, held=3, now=now, stale_after=30, held_since=waited).stale
    assert dispatcher_health(waited, held=3, now=now, stale_after=30, held_since=now - timedelta(hours=1)).stale
    assert not dispatcher_health(None, held=0, now=now, stale_after=30).stale  # nothing waits
    assert dispatcher_health(None, held=3, now=now, stale_after=30).stale  # never ran
    assert not dispatcher_health(now - timedelta(seconds=10), held=3, now=now, stale_after=30).stale
    old = dispatcher_health(now - timedelta(minutes=5), held=3, now=now, stale_after=30)
    assert old.stale and old.last_run == now - timedelta(minutes=5)


# --- the delivery task


@pytest.fixture
def world(client: fakeredis.FakeRedis, batches: BatchStore, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Workers' context on fakeredis; webhook POSTs answered by `answers` (200 once it is empty); published batch
    steps and tasks that publish themselves again recorded instead of sent."""
    store = JobStore(client)
    settings = Settings(webhook_retry_delays=[5, 300], sweep_grace_seconds=60, webhook_secret=generate_secret())
    answers: list[int] = []
    posts: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        posts.append(request)
        return httpx.Response(answers.pop(0) if answers else 200)

    http = httpx.Client(transport=httpx.MockTransport(receiver))
    published: list[tuple[str, BatchStep]] = []
    monkeypatch.setattr(context, "store", lambda: store)
    monkeypatch.setattr(context, "settings", lambda: settings)
    monkeypatch.setattr(context, "webhook_http", lambda: http)
    monkeypatch.setattr(context, "guard", lambda: ProviderGuard(client))

    def publish(batch_id: str, step: BatchStep, now: object = None) -> None:
        published.append((batch_id, step))

    for module in (batch_webhooks, sweeper, dispatcher):
        monkeypatch.setattr(module, "publish_batch_step", publish)
    republished: list[str | None] = []
    monkeypatch.setattr(
        worker_app, "send_task", lambda name, args, task_id=None, **options: republished.append(task_id)
    )
    return {
        "batches": batches,
        "store": store,
        "answers": answers,
        "posts": posts,
        "published": published,
        "republished": republished,
    }


def run_delivery(batch_id: str, task_id: str) -> None:
    batch_webhooks.deliver_batch_webhook.apply(args=[batch_id], task_id=task_id, throw=True)


def version(batches: BatchStore, batch_id: str) -> object:
    return batches.redis.hget(f"genqueue:batch:{batch_id}", "version")


def test_a_failed_attempt_schedules_one_retry_and_a_stale_copy_does_nothing(world: dict[str, Any]) -> None:
    batches: BatchStore = world["batches"]
    batch = completed_batch()
    assert batch.step is not None and batch.webhook is not None
    batches.create(batch)
    first = batch.step.task_id
    world["answers"].append(500)
    run_delivery(batch.id, first)
    [(_, retry)] = world["published"]
    assert retry.task_id != first
    stored = batches.get(batch.id)
    assert stored is not None and stored.step == retry and stored.webhook is not None
    assert len(stored.webhook.attempts) == 1 and stored.webhook.attempts[0].status_code == 500
    before = version(batches, batch.id)
    run_delivery(batch.id, first)  # the first task again (an acks_late redelivery): not its step any more
    run_delivery(batch.id, "task_unknown")
    assert len(world["posts"]) == 1 and len(world["published"]) == 1 and version(batches, batch.id) == before
    assert world["republished"] == []  # nor did either wait around to try later
    batches.update(batch.id, lambda b: b.model_copy(update={"step": retry.model_copy(update={"due_at": utcnow()})}))
    run_delivery(batch.id, retry.task_id)
    ids = {request.headers["webhook-id"] for request in world["posts"]}
    assert ids == {batch.webhook.event_id} and len(world["posts"]) == 2
    done = batches.get(batch.id)
    assert done is not None and done.step is None and done.webhook is not None and done.webhook.delivered
    assert batches.due_batch_ids(before=utcnow().timestamp() + 3600) == []


def test_the_event_carries_the_summary(world: dict[str, Any]) -> None:
    batch = completed_batch()
    assert batch.step is not None
    world["batches"].create(batch)
    run_delivery(batch.id, batch.step.task_id)
    [request] = world["posts"]
    data = httpx.Response(200, content=request.content).json()["data"]
    assert data["id"] == batch.id and data["dispatcher"] == {"last_run": None, "stale": False}


# --- the sweeper


def test_the_sweeper_resumes_an_overdue_batch_step_under_a_fresh_task_id(world: dict[str, Any]) -> None:
    batches: BatchStore = world["batches"]
    now = utcnow()
    lost = completed_batch("batch_lost")
    leased = completed_batch("batch_leased")
    fresh = completed_batch("batch_fresh")
    assert lost.step is not None and leased.step is not None
    lost.step.due_at = leased.step.due_at = now - timedelta(minutes=10)
    leased.step.lease_until = now + timedelta(seconds=30)
    for batch in (lost, leased, fresh):
        batches.create(batch)
    batches.create(completed_batch("batch_expired"))
    batches.update("batch_expired", lambda b: b.model_copy(update={"step": lost.step}))
    batches.redis.delete("genqueue:batch:batch_expired")
    assert sweeper.sweep_overdue_batches() == 1
    [(batch_id, step)] = world["published"]
    assert batch_id == "batch_lost" and step.task_id != lost.step.task_id
    stored = batches.get("batch_lost")
    assert stored is not None and stored.step == step
    assert "batch_expired" not in batches.due_batch_ids(before=now.timestamp())
    assert sweeper.sweep_overdue_batches() == 0  # its new step is due now, not overdue
    run_delivery("batch_lost", lost.step.task_id)  # the lost task turns up after all: it drops itself
    assert world["posts"] == []
    run_delivery("batch_lost", step.task_id)
    assert len(world["posts"]) == 1


# --- the dispatcher


def batch_job(job_id: str, batch_id: str, status: JobStatus) -> Job:
    return Job(
        id=job_id,
        status=status,
        provider="sandbox",
        request=GenerationRequest(model="sandbox-image"),
        batch_id=batch_id,
        deadline_at=utcnow() + timedelta(hours=1),
    )


def test_the_dispatcher_completes_a_batch_once_and_publishes_its_delivery_once(world: dict[str, Any]) -> None:
    batches: BatchStore = world["batches"]
    batch = Batch(id="batch_d", name="d", total=2, webhook_url="https://hooks.example.com/d")
    batches.create(batch)
    batches.activate(batch.id)
    for job_id in ("j1", "j2"):
        world["store"].create(batch_job(job_id, batch.id, JobStatus.SUCCEEDED))
    now = utcnow()
    dispatcher.dispatch_pass(now)
    dispatcher.complete_if_done(batches, batch, now)  # a second pass that read the batch before it completed
    [(batch_id, step)] = world["published"]
    stored = batches.get(batch.id)
    assert batch_id == batch.id and stored is not None and stored.step == step and stored.completed_at == now
    assert batches.active() == [] and batches.dispatcher_last_run() == now


def test_a_batch_resumed_while_it_completes_stays_open(world: dict[str, Any]) -> None:
    batches: BatchStore = world["batches"]
    batch = Batch(id="batch_r", name="r", total=1, webhook_url="https://hooks.example.com/r")
    batches.create(batch)
    world["store"].create(batch_job("j1", batch.id, JobStatus.SUCCEEDED))
    # `batch submit` of the same name raised the total after the dispatcher read the batch
    batches.update(batch.id, lambda b: b.model_copy(update={"total": 2}))
    dispatcher.complete_if_done(batches, batch, utcnow())
    stored = batches.get(batch.id)
    assert stored is not None and stored.completed_at is None and stored.webhook is None
    assert world["published"] == []


# --- `batch status`


def status(client: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    settings = Settings()
    monkeypatch.setattr(cli_batch, "producer", lambda: Producer(settings, store=JobStore(client)))
    return CliRunner().invoke(cli_app, ["batch", "status", "held-back", *args])


def test_batch_status_says_why_held_jobs_do_not_start(
    client: fakeredis.FakeRedis, batches: BatchStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch, _ = batches.open("held-back", lambda batch_id: Batch(id=batch_id, name="held-back", providers=["sandbox"]))
    batches.update(batch.id, lambda b: b.model_copy(update={"total": 1}))
    batches.hold(batch.id, "sandbox", "job_1", 1)
    ran_at = utcnow() - timedelta(minutes=10)
    batches.record_dispatcher_run(ran_at)
    result = status(client, monkeypatch)
    assert result.exit_code == 0 and result.stdout.startswith("held-back: 0/1 ended")
    assert result.stderr.strip().startswith("genqueue: warning: jobs are held but no dispatcher has run for 10m0")
    assert result.stderr.strip().endswith("start `celery -A workers beat`")
    as_json = status(client, monkeypatch, "--json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout)["dispatcher"] == {"last_run": ran_at.isoformat(), "stale": True}
    batches.record_dispatcher_run(utcnow())
    result = status(client, monkeypatch)
    assert result.exit_code == 0 and result.stderr == ""
    assert json.loads(status(client, monkeypatch, "--json").stdout)["dispatcher"]["stale"] is False
