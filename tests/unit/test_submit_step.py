"""The submit step's money-safety rules, with the job store on fakeredis and the vendor behind MockTransport."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import fakeredis
import httpx
import pytest

from shared import lifecycle
from shared.models import GenerationRequest, Job, JobStatus, utcnow
from shared.protection import ProviderGuard
from shared.settings import Settings
from shared.store import JobStore
from workers import context, submit


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
        model="sandbox-image",
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
