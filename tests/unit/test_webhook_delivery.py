"""One webhook delivery attempt through httpx.MockTransport, and the retry schedule."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from shared.webhooks import DeliveryResult, deliver, next_delay
from shared.webhooks.delivery import parse_retry_after

URL = "https://receiver.example/hooks?token=SECRET"
HEADERS = {
    "webhook-id": "msg_1",
    "webhook-timestamp": "1",
    "webhook-signature": "v1,x",
    "content-type": "application/json",
}
BODY = b'{"type":"job.succeeded"}'


def client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def send(handler: Callable[[httpx.Request], httpx.Response]) -> DeliveryResult:
    with client(handler) as http:
        return deliver(http, URL, HEADERS, BODY, timeout=5.0)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_delivered(status: int) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status)

    result = send(handler)
    assert result == DeliveryResult(delivered=True, status_code=status)
    (request,) = seen
    assert request.method == "POST" and request.content == BODY
    assert request.headers["webhook-id"] == "msg_1" and request.headers["content-type"] == "application/json"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_not_followed(status: int) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(status, headers={"location": "http://169.254.169.254/latest/meta-data"})

    with httpx.Client(transport=httpx.MockTransport(handler), follow_redirects=True) as http:
        result = deliver(http, URL, HEADERS, BODY, timeout=5.0)
    assert seen == [URL]  # the client's own follow_redirects=True is overridden
    assert not result.delivered and result.status_code == status and not result.gone
    assert result.error is not None and "redirect" in result.error


def test_410_is_gone() -> None:
    result = send(lambda request: httpx.Response(410))
    assert not result.delivered and result.gone and result.status_code == 410


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_slow_down_reads_retry_after(status: int) -> None:
    result = send(lambda request: httpx.Response(status, headers={"retry-after": "120"}))
    assert not result.delivered and not result.gone
    assert result.status_code == status and result.retry_after == 120.0


def test_retry_after_as_http_date() -> None:
    later = datetime.now(UTC) + timedelta(seconds=90)
    result = send(lambda request: httpx.Response(429, headers={"retry-after": format_datetime(later, usegmt=True)}))
    assert result.retry_after is not None and 80 <= result.retry_after <= 91


def test_retry_after_ignored_elsewhere_and_when_bad() -> None:
    assert send(lambda request: httpx.Response(500, headers={"retry-after": "60"})).retry_after is None
    assert send(lambda request: httpx.Response(429, headers={"retry-after": "soon"})).retry_after is None
    assert send(lambda request: httpx.Response(429)).retry_after is None


def test_parse_retry_after() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-3") is None  # not delta-seconds
    assert parse_retry_after("inf") is None and parse_retry_after("nan") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after(None) is None and parse_retry_after("") is None


@pytest.mark.parametrize("status", [400, 401, 404, 500])
def test_other_answers_fail(status: int) -> None:
    result = send(lambda request: httpx.Response(status, text="nope"))
    assert not result.delivered and not result.gone and result.error == f"HTTP {status}"


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (httpx.ReadTimeout("read timed out"), "timed out after 5s"),
        (httpx.ConnectTimeout("connect timed out"), "timed out after 5s"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "ConnectError"),
        (httpx.RemoteProtocolError("peer closed connection"), "RemoteProtocolError"),
    ],
)
def test_network_errors_never_raise(exc: httpx.HTTPError, text: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    result = send(handler)
    assert not result.delivered and result.status_code is None and not result.gone
    assert result.error is not None and text in result.error
    assert "SECRET" not in result.error


def test_bad_url_never_raises() -> None:
    with httpx.Client() as http:
        result = deliver(http, "ftp://receiver.example/x", HEADERS, BODY, timeout=1.0)
    assert not result.delivered and result.error is not None


def test_timeout_is_passed_to_the_request() -> None:
    seen: list[dict[str, float | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(204)

    with client(handler) as http:
        deliver(http, URL, HEADERS, BODY, timeout=15.0)
    assert seen[0]["read"] == 15.0 and seen[0]["connect"] == 15.0


DELAYS = [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]


def test_schedule_without_jitter() -> None:
    assert [next_delay(i, DELAYS, None, jitter=0) for i in range(len(DELAYS))] == DELAYS
    assert next_delay(len(DELAYS), DELAYS, None) is None
    assert next_delay(-1, DELAYS, None) is None
    assert next_delay(0, [], None) is None


def test_jitter_stays_in_bounds_and_varies() -> None:
    rng = random.Random(7)
    for index, base in enumerate(DELAYS):
        values = [next_delay(index, DELAYS, None, jitter=0.1, rng=rng) for _ in range(200)]
        assert all(v is not None and base * 0.9 <= v <= base * 1.1 for v in values)
        assert len(set(values)) > 100


def test_retry_after_wins_when_larger() -> None:
    assert next_delay(0, DELAYS, 60.0) == 60.0
    delay = next_delay(1, DELAYS, 60.0, jitter=0.1)
    assert delay is not None and 270.0 <= delay <= 330.0
    assert next_delay(len(DELAYS), DELAYS, 60.0) is None  # a spent schedule stays spent


def test_a_worker_without_a_secret_sends_nothing_and_retries() -> None:
    from shared.models import WebhookState
    from shared.settings import Settings
    from shared.webhooks.attempt import UNSIGNED_REFUSAL, attempt_event
    from shared.webhooks.signing import generate_secret

    now = datetime.now(UTC)
    state = WebhookState(event_id="msg_1", event_type="job.succeeded", timestamp=now)
    seen: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    with client(receiver) as http:
        refused = attempt_event(http, URL, state, {"id": "job_1"}, Settings(webhook_secret=None), now, None)
        assert seen == []  # nothing unsigned left the worker
        assert not refused.state.delivered and refused.state.attempts[-1].error == UNSIGNED_REFUSAL
        assert refused.retry_in is not None  # retried on the schedule: configuring the secret delivers it
        signed = attempt_event(http, URL, refused.state, {"id": "job_1"}, Settings(), now, generate_secret())
        assert signed.state.delivered and seen[-1].headers["webhook-signature"].startswith("v1,")
        unsigned = Settings(webhook_secret=None, allow_unsigned_webhooks=True)
        assert attempt_event(http, URL, state, {"id": "job_1"}, unsigned, now, None).state.delivered
        assert "webhook-signature" not in seen[-1].headers
