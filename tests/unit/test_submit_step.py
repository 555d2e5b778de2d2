"""The submit step's money-safety rules, with the job store on fakeredis and the vendor behind MockTransport."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace

import fakeredis
import httpx
import pytest

from shared import counters, lifecycle, queueing
from shared.constants import SUBMIT_TASK
from shared.models import Charge, Cost, GenerationRequest, Job, JobStatus, utcnow
from shared.protection import ProviderGuard
from shared.providers import gateway
from shared.settings import Settings
from shared.store import JobStore
from workers import context, poll, steps, submit


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> JobStore:
    job_store = JobStore(fakeredis.FakeRedis())
    settings = Settings(providers={"sandbox": {"base_url": "http://vendor.test/sandbox", "api_key": "sk-secret-1"}})
    monkeypatch.setattr(context, "store", lambda: job_store)
    monkeypatch.setattr(context, "settings", lambda: settings)
    guard = ProviderGuard(job_store.redis)
    monkeypatch.setattr(context, "guard", lambda: guard)
    return job_store


def use_vendor(monkeypatch: pytest.MonkeyPatch, handler: Callable[[httpx.Request], httpx.Response]) -> list[int]:
    calls: list[int] = []

    def counting(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return handler(request)

    client = httpx.Client(transport=httpx.MockTransport(counting))
    monkeypatch.setattr(context, "http", lambda: client)
    return calls


def queued_job(store: JobStore) -> tuple[Job, str]:
    now = utcnow()
    job = Job(
        id="job_s",
        provider="sandbox",
        request=GenerationRequest(model="sandbox-image", prompt="p"),
        deadline_at=now + timedelta(hours=1),
        step=lifecycle.new_step("submit", now),
    )
    store.create(job)
    assert job.step is not None
    return job, job.step.task_id


def test_unreadable_2xx_fails_as_outcome_unknown_without_resubmitting(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = use_vendor(monkeypatch, lambda request: httpx.Response(200, text="<html>ok</html>"))
    job, task_id = queued_job(store)
    submit.submit_job(job, task_id)
    final = store.get(job.id)
    assert final is not None and final.status is JobStatus.FAILED
    assert final.error is not None and final.error.code == "submit_outcome_unknown"
    assert calls == [1]


def test_lost_answer_fails_as_outcome_unknown(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def lost(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    use_vendor(monkeypatch, lost)
    job, task_id = queued_job(store)
    submit.submit_job(job, task_id)
    final = store.get(job.id)
    assert final is not None and final.error is not None and final.error.code == "submit_outcome_unknown"


def test_a_second_submit_after_an_unanswered_intent_does_not_post(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = use_vendor(monkeypatch, lambda request: httpx.Response(200, json={"id": "t1", "status": "queued"}))
    job, task_id = queued_job(store)
    job.submit_started_at = utcnow() - timedelta(minutes=5)  # a worker died mid-POST
    submit.submit_job(job, task_id)
    assert calls == []
    final = store.get(job.id)
    assert final is not None and final.error is not None and final.error.code == "submit_outcome_unknown"


def test_vendor_errors_never_carry_the_key(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"error": {"code": "unauthorized", "message": "bad key sk-secret-1"}}
    use_vendor(monkeypatch, lambda request: httpx.Response(401, json=body))
    job, task_id = queued_job(store)
    submit.submit_job(job, task_id)
    final = store.get(job.id)
    assert final is not None and final.error is not None
    assert final.error.code == "auth_failed"
    assert "sk-secret-1" not in final.error.message and "[redacted]" in final.error.message


def test_the_gateway_polls_under_the_scope_it_submitted_with(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queueing, "publish_step", lambda *args, **kwargs: None)
    settings = Settings(providers={"gateway": {"base_url": "http://vendor.test/gateway", "api_key": "sk-secret-1"}})
    monkeypatch.setattr(context, "settings", lambda: settings)
    paths: list[str] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.method == "POST":
            return httpx.Response(200, json={"task_id": "t-1"})
        return httpx.Response(200, json={"task_id": "t-1", "status": "IN_PROGRESS", "progress": "10%"})

    use_vendor(monkeypatch, vendor)
    now = utcnow()
    job = Job(
        id="job_g",
        provider="gateway",
        request=GenerationRequest(model="nano-banana-pro", prompt="p"),
        deadline_at=now + timedelta(hours=1),
        step=lifecycle.new_step("submit", now),
    )
    store.create(job)
    assert job.step is not None
    submit.submit_job(job, job.step.task_id)
    submitted = store.get(job.id)
    assert submitted is not None and submitted.provider_task_scope == "images" and submitted.step is not None
    # the catalog changes between submit and poll: the poll still goes where the submit went
    monkeypatch.setattr(gateway, "model_kind", lambda provider, model: None)
    poll.poll_job(submitted, submitted.step.task_id)
    assert paths == ["/gateway/v2/images/generations", "/gateway/v2/images/generations/t-1"]


def test_a_lost_answer_counts_as_charged_at_the_estimate(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def lost(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    use_vendor(monkeypatch, lost)
    job, task_id = queued_job(store)
    store.update(job.id, lambda j: j.model_copy(update={"charge": Charge(estimate=Cost(credits=1))}))
    submit.submit_job(store.get(job.id) or job, task_id)
    final = store.get(job.id)
    assert final is not None and final.charged == "unknown" and final.cost == Cost(credits=1)
    assert final.charge.dialect == "sandbox"  # recorded with the intent, before the POST


def accepting_after_a_cancel(store: JobStore) -> Callable[[httpx.Request], httpx.Response]:
    """A vendor that takes the job (task t1, 1 credit) after the job was canceled during its POST."""

    def accept(request: httpx.Request) -> httpx.Response:
        store.update("job_s", lambda j: lifecycle.cancel(j, utcnow()))
        return httpx.Response(200, json={"id": "t1", "status": "queued", "cost_credits": 1})

    return accept


def test_a_cancel_during_the_post_holds_the_slot_and_follows_the_task_the_vendor_took(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    accept_after_a_cancel = accepting_after_a_cancel(store)
    published: list[str] = []
    monkeypatch.setattr(submit, "publish_step", lambda app, settings, job_id, step, now: published.append(step.name))
    use_vendor(monkeypatch, accept_after_a_cancel)
    job, task_id = queued_job(store)
    submit.submit_job(job, task_id)
    final = store.get(job.id)
    assert final is not None and final.status is JobStatus.CANCELED and final.provider_task_id == "t1"
    assert final.charged is None and final.cost == Cost(credits=1)  # decided once the vendor ends the task
    assert published == ["poll"]  # the quiet poll that follows it
    [status] = context.guard().status([context.settings().provider("sandbox")], time.time())
    assert status.in_flight == 1


def test_a_cancel_during_a_post_the_vendor_refuses_frees_the_slot_and_is_not_charged(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse_after_a_cancel(request: httpx.Request) -> httpx.Response:
        store.update("job_s", lambda j: lifecycle.cancel(j, utcnow()))
        return httpx.Response(422, json={"error": {"code": "invalid_request", "message": "no"}})

    use_vendor(monkeypatch, refuse_after_a_cancel)
    job, task_id = queued_job(store)
    submit.submit_job(job, task_id)
    final = store.get(job.id)
    assert final is not None and final.status is JobStatus.CANCELED and final.charged == "no"
    [status] = context.guard().status([context.settings().provider("sandbox")], time.time())
    assert status.in_flight == 0


class FakeTask:
    """What run_step reads of a Celery task: its name and the id of the message it runs."""

    name = SUBMIT_TASK

    def __init__(self, task_id: str) -> None:
        self.request = SimpleNamespace(id=task_id)


def vendor_requests(store: JobStore) -> float:
    return float(store.redis.hget(counters.COUNTERS_KEY, counters.vendor_request("sandbox", "submit", 200)) or 0)


def test_a_runs_vendor_request_is_counted_by_its_outcomes_write(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queueing, "publish_step", lambda *args, **kwargs: None)
    use_vendor(monkeypatch, lambda request: httpx.Response(200, json={"id": "t1", "status": "queued"}))
    counted: list[dict[str, float]] = []
    monkeypatch.setattr(steps, "add_counts", counted.append)  # the separate round trip, were it taken
    job, task_id = queued_job(store)
    steps.run_step(FakeTask(task_id), job.id, "submit", 10, submit.submit_job)  # type: ignore[arg-type]
    final = store.get(job.id)
    assert final is not None and final.status is JobStatus.SUBMITTED
    assert vendor_requests(store) == 1 and counted == []


def test_a_request_whose_write_declined_is_counted_on_its_own_when_the_run_ends(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queueing, "publish_step", lambda *args, **kwargs: None)
    monkeypatch.setattr(submit, "publish_step", lambda *args, **kwargs: None)
    use_vendor(monkeypatch, accepting_after_a_cancel(store))
    job, task_id = queued_job(store)
    steps.run_step(FakeTask(task_id), job.id, "submit", 10, submit.submit_job)  # type: ignore[arg-type]
    final = store.get(job.id)
    assert final is not None and final.status is JobStatus.CANCELED and final.provider_task_id == "t1"
    assert vendor_requests(store) == 1
