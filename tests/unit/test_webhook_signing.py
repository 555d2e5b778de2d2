"""Webhook signing: what we send must pass the standardwebhooks package's own verifier."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared.models import Job, JobStatus
from shared.webhooks import event_body, event_type_for, generate_secret, sign, signature_headers, verify

BODY = b'{"type":"job.succeeded","data":{"id":"j1"}}'


def test_secret_shape() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert generate_secret() != secret


def test_standard_verifier_accepts_our_headers() -> None:
    secret = generate_secret()
    headers = signature_headers(secret, "msg_1", int(time.time()), BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_signature_matches_the_reference_implementation() -> None:
    secret = generate_secret()
    now = int(time.time())
    reference = Webhook(secret).sign("msg_2", datetime.fromtimestamp(now, tz=UTC), BODY.decode())
    assert sign(secret, "msg_2", now, BODY) == reference


def test_known_vector() -> None:
    # the example of the Standard Webhooks specification
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


@pytest.mark.parametrize("tamper", ["body", "timestamp", "id", "secret"])
def test_tampering_is_refused(tamper: str) -> None:
    secret = generate_secret()
    now = int(time.time())
    headers = signature_headers(secret, "msg_3", now, BODY)
    body = BODY
    if tamper == "body":
        body = BODY.replace(b"j1", b"j2")
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(now - 1)
    elif tamper == "id":
        headers["webhook-id"] = "msg_4"
    else:
        secret = generate_secret()
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)
    with pytest.raises(ValueError):
        verify(secret, headers, body)


def test_own_verify_accepts_and_is_case_insensitive() -> None:
    secret = generate_secret()
    now = int(time.time())
    headers = {name.title(): value for name, value in signature_headers(secret, "msg_5", now, BODY).items()}
    verify(secret, headers, BODY)


def test_own_verify_takes_several_signatures() -> None:
    old, new = generate_secret(), generate_secret()
    now = int(time.time())
    both = f"v1,{'A' * 44} {sign(old, 'msg_6', now, BODY)} {sign(new, 'msg_6', now, BODY)}"
    headers = {"webhook-id": "msg_6", "webhook-timestamp": str(now), "webhook-signature": both}
    verify(old, headers, BODY)
    verify(new, headers, BODY)
    Webhook(new).verify(BODY, headers)
    with pytest.raises(ValueError):
        verify(generate_secret(), headers, BODY)


def test_own_verify_tolerance() -> None:
    secret = generate_secret()
    then = 1_700_000_000
    headers = signature_headers(secret, "msg_7", then, BODY)
    verify(secret, headers, BODY, now=then + 299)
    with pytest.raises(ValueError, match="tolerance"):
        verify(secret, headers, BODY, now=then + 301)
    with pytest.raises(ValueError, match="tolerance"):
        verify(secret, headers, BODY, now=then - 301)
    verify(secret, headers, BODY, tolerance=3600, now=then + 3000)


def test_own_verify_refuses_missing_and_bad_headers() -> None:
    secret = generate_secret()
    with pytest.raises(ValueError, match="missing"):
        verify(secret, {"webhook-id": "x"}, BODY)
    with pytest.raises(ValueError, match="integer"):
        verify(secret, {"webhook-id": "x", "webhook-timestamp": "soon", "webhook-signature": "v1,AAAA"}, BODY)
    with pytest.raises(ValueError):
        sign("whsec_!!!not-base64", "x", 1, BODY)
    with pytest.raises(ValueError):
        sign("whsec_", "x", 1, BODY)


def test_unpadded_secret_is_taken_like_the_reference() -> None:
    for length in (10, 11, 32):  # base64 of these lengths ends in "==", "=" and nothing
        candidate = "whsec_" + base64.b64encode(bytes(range(1, length + 1))).decode().rstrip("=")
        now = int(time.time())
        headers = signature_headers(candidate, "m", now, BODY)
        Webhook(candidate).verify(BODY, headers)


def make_job(status: JobStatus) -> Job:
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    return Job.model_validate(
        {
            "id": "job_1",
            "status": status,
            "provider": "sandbox",
            "model": "m1",
            "request": {"model": "m1", "prompt": "a cat"},
            "deadline_at": now + timedelta(hours=1),
            "created_at": now,
            "updated_at": now,
            "webhook_url": "https://example.com/hook",
        }
    )


def test_event_body_shape() -> None:
    job = make_job(JobStatus.SUCCEEDED)
    at = datetime(2025, 1, 2, 4, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    body = event_body(event_type_for(job.status), at, job.public())
    assert b", " not in body and b": " not in body  # compact
    event = json.loads(body)
    assert list(event) == ["type", "timestamp", "data"]
    assert event["type"] == "job.succeeded"
    assert event["timestamp"] == "2025-01-02T02:00:00Z"
    assert event["data"] == job.public()
    assert "webhook_url" not in event["data"] and "request" not in event["data"]
    assert event_body("job.succeeded", at, job.public()) == body  # retries send the same bytes


def test_event_types() -> None:
    assert event_type_for(JobStatus.SUCCEEDED) == "job.succeeded"
    assert event_type_for("failed") == "job.failed"
    assert event_type_for(JobStatus.CANCELED) == "job.canceled"
    for status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FINALIZING):
        with pytest.raises(ValueError):
            event_type_for(status)
