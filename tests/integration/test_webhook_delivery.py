"""Webhook delivery through real workers: retries with one webhook-id, 410 Gone, dead letters, redelivery."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from infra.local.processes import ServerProcess
from infra.local.webhook_receiver import WebhookReceiver, start_receiver
from producer.api import Producer
from shared.errors import InvalidRequest
from shared.settings import Settings
from tests.integration.test_pipeline import run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def hooks(webhook_secret: str) -> Iterator[WebhookReceiver]:
    receiver = start_receiver(webhook_secret)
    yield receiver
    receiver.stop()


def wait_until(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError("condition not met in time")


def test_a_receiver_that_is_down_for_a_while_gets_the_event_with_one_id(
    workers: ServerProcess, settings: Settings, hooks: WebhookReceiver
) -> None:
    hooks.answer_next(503, count=2)
    hooks.answer_next(429, count=1, headers={"Retry-After": "1"})
    producer = Producer(settings)
    job = producer.submit("sandbox", "sandbox-image", "down receiver", webhook_url=hooks.url)
    delivered = hooks.wait_for(job.id, timeout=60)
    events = hooks.for_job(job.id)
    assert [e.answered for e in events] == [503, 503, 429, 200]
    assert len({e.headers["webhook-id"] for e in events}) == 1
    assert all(e.verified for e in events)
    assert delivered.body["type"] == "job.succeeded"
    wait_until(lambda: (j := producer.get(job.id)).webhook is not None and j.webhook.delivered)
    final = producer.get(job.id)
    assert final.webhook is not None
    assert [a.status_code for a in final.webhook.attempts] == [503, 503, 429, 200]


def test_410_gone_stops_delivery_to_that_endpoint(
    workers: ServerProcess, settings: Settings, hooks: WebhookReceiver
) -> None:
    hooks.answer_next(410)
    producer = Producer(settings)
    gone_url = hooks.url + "/gone-endpoint"
    first = producer.submit("sandbox", "sandbox-image", "to a gone endpoint", webhook_url=gone_url)
    wait_until(lambda: (j := producer.get(first.id)).webhook is not None and j.webhook.gave_up is not None)
    second = producer.submit("sandbox", "sandbox-image", "same endpoint again", webhook_url=gone_url)
    wait_until(lambda: (j := producer.get(second.id)).webhook is not None and j.webhook.gave_up is not None)
    assert len(hooks.for_job(first.id)) == 1 and hooks.for_job(second.id) == []
    other = producer.submit("sandbox", "sandbox-image", "another endpoint", webhook_url=hooks.url)
    assert hooks.wait_for(other.id).verified


def test_spent_schedule_dead_letters_and_redeliver_uses_the_same_id(
    workers: ServerProcess, settings: Settings, pipeline_env: dict[str, str], hooks: WebhookReceiver
) -> None:
    hooks.answer_next(500, count=4)  # the first attempt and all three retries of the test schedule
    producer = Producer(settings)
    job = producer.submit("sandbox", "sandbox-image", "dead letter", webhook_url=hooks.url)
    wait_until(lambda: (j := producer.get(job.id)).webhook is not None and j.webhook.gave_up is not None)
    assert job.id in [dead.id for dead in producer.dead_letters()]
    listed = run_cli(pipeline_env, "webhooks", "dead")
    assert job.id in listed.stdout
    first_id = hooks.for_job(job.id)[0].headers["webhook-id"]
    result = run_cli(pipeline_env, "webhooks", "redeliver", job.id)
    assert result.returncode == 0, result.stderr
    event = hooks.wait_for(job.id, answered=200)
    assert event.headers["webhook-id"] == first_id and event.verified
    assert job.id not in [dead.id for dead in producer.dead_letters()]


def test_redeliver_refuses_a_job_without_a_webhook(workers: ServerProcess, settings: Settings) -> None:
    producer = Producer(settings)
    job = producer.submit("sandbox", "sandbox-image", "no hook")
    producer.wait(job.id, timeout=60)
    with pytest.raises(InvalidRequest, match="no webhook"):
        producer.redeliver_webhook(job.id)
