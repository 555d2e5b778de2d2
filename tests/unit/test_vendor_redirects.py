"""A vendor API call never follows a redirect: a 3xx is a permanent provider error, and a submit is never resent.

Also: which worker client is used for what (workers/context.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import fakeredis
import httpx
import pytest

from shared import lifecycle
from shared.errors import ProviderRedirected, Transient
from shared.models import GenerationRequest, Job, JobStatus, utcnow
from shared.netguard import GuardedTransport
from shared.protection import ProviderGuard
from shared.providers.base import HttpRequest
from shared.providers.client import send
from shared.settings import ProviderOverride, Settings
from shared.store import JobStore
from workers import context, poll, submit

KEY = "sk-secret-1"
CANARY = "http://169.254.169.254/latest/meta-data/"


def following_client(handler: Callable[[httpx.Request], httpx.Response]) -> tuple[httpx.Client, list[str]]:
    """A client that would follow redirects if `send` let it, and the URLs it was asked for."""
    seen: list[str] = []

    def counting(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return handler(request)

    return httpx.Client(transport=httpx.MockTransport(counting), follow_redirects=True), seen


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_send_raises_on_a_redirect_without_following_it(status: int) -> None:
    """Even with a vendor error code in the body that would read as transient (and so be resubmitted)."""
    body = {"error": {"code": "rate_limited", "message": "would be transient if read"}}
    client, seen = following_client(lambda r: httpx.Response(status, headers={"location": CANARY}, json=body))
    request = HttpRequest(method="POST", url="https://vendor.test/v1/jobs", json_body={"prompt": "p"})
    with client, pytest.raises(ProviderRedirected) as caught:
        send(client, request, KEY)
    assert seen == ["https://vendor.test/v1/jobs"]
    assert caught.value.code == "provider_error" and not isinstance(caught.value, Transient)
    assert caught.value.message == (
        f"HTTP {status}: the provider redirected to 169.254.169.254; vendor API calls never follow redirects"
        " (check the provider's base URL)"
    )


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> JobStore:
    job_store = JobStore(fakeredis.FakeRedis())
    settings = Settings(providers={"sandbox": ProviderOverride(base_url="http://vendor.test/sandbox", api_key=KEY)})
    monkeypatch.setattr(context, "store", lambda: job_store)
    monkeypatch.setattr(context, "settings", lambda: settings)
    guard = ProviderGuard(job_store.redis)
    monkeypatch.setattr(context, "guard", lambda: guard)
    return job_store


def job_at(store: JobStore, step: str, status: JobStatus, task: str | None = None) -> tuple[Job, str]:
    now = utcnow()
    job = Job(
        id=f"job_{step}",
        provider="sandbox",
        request=GenerationRequest(model="sandbox-image", prompt="p"),
        deadline_at=now + timedelta(hours=1),
        step=lifecycle.new_step(step, now),  # type: ignore[arg-type]
        status=status,
        provider_task_id=task,
    )
    store.create(job)
    assert job.step is not None
    return job, job.step.task_id


def redirecting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    client, seen = following_client(lambda r: httpx.Response(302, headers={"location": CANARY}))
    monkeypatch.setattr(context, "http", lambda: client)
    return seen


def test_a_redirected_submit_fails_at_once_and_is_never_resent(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = redirecting(monkeypatch)
    job, task_id = job_at(store, "submit", JobStatus.QUEUED)
    submit.submit_job(job, task_id)
    final = store.get(job.id)
    assert final is not None and final.status is JobStatus.FAILED and final.step is None
    assert final.error is not None and final.error.code == "provider_error"
    assert "redirected to 169.254.169.254" in final.error.message
    assert seen == ["http://vendor.test/sandbox/v1/jobs"]  # one POST; the redirect not followed, nothing resent


def test_a_redirected_poll_fails_the_job(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = redirecting(monkeypatch)
    job, task_id = job_at(store, "poll", JobStatus.SUBMITTED, task="t1")
    poll.poll_job(job, task_id)
    final = store.get(job.id)
    assert final is not None and final.status is JobStatus.FAILED
    assert final.error is not None and final.error.code == "provider_error" and "redirected" in final.error.message
    assert seen == ["http://vendor.test/sandbox/v1/jobs/t1"]


def test_each_kind_of_url_gets_its_own_client(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(allow_private_urls=False, private_url_allowlist=["sandbox:8900"], provider_timeout_seconds=9)
    monkeypatch.setattr(context, "_local", threading.local())
    monkeypatch.setattr(context, "settings", lambda: settings)
    vendor, download, webhook = context.http(), context.download_http(), context.webhook_http()
    try:
        assert vendor.follow_redirects is False and not isinstance(vendor._transport, GuardedTransport)
        assert download.follow_redirects is True and download.max_redirects == 5
        assert download.timeout.read == 9 and download.headers["accept-encoding"] == "identity"
        assert webhook.follow_redirects is False
        for guarded in (download, webhook):
            assert isinstance(guarded._transport, GuardedTransport)
            assert guarded._transport.allow_private is False
            assert guarded._transport.allowlist == {("sandbox", 8900)}
        assert context.download_http() is download
    finally:
        for client in (vendor, download, webhook):
            client.close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_reaching_an_adapter_is_a_redirect_whatever_its_body_says(status: int) -> None:
    """Defence in depth: `send` stops 3xx first, but an adapter that classifies one must not retry it either."""
    from shared.errors import RateLimited
    from shared.providers._common import classify
    from shared.providers.base import HttpAnswer

    answer = HttpAnswer(status_code=status, headers={"location": CANARY}, body=b'{"code": "rate_limited"}')
    error = classify(answer, "slow down", code="rate_limited", codes={"rate_limited": RateLimited})
    assert isinstance(error, ProviderRedirected) and not isinstance(error, Transient)
