"""The webhook step's decision after one attempt (shared/decisions/webhook.py): no Celery, no Redis, no HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared import lifecycle
from shared.decisions import webhook as rules
from shared.models import Charge, GenerationRequest, Job, JobStatus, WebhookState, utcnow
from shared.webhooks.attempt import Attempted
from shared.webhooks.delivery import DeliveryResult

NOW = utcnow()


def ended(status: JobStatus = JobStatus.SUCCEEDED, **fields: object) -> Job:
    values: dict[str, object] = {
        "id": "job_w",
        "status": status,
        "provider": "sandbox",
        "model": "sandbox-video",
        "request": GenerationRequest(model="sandbox-video"),
        "deadline_at": NOW + timedelta(hours=1),
        "webhook_url": "https://example.com/hook",
        "webhook": WebhookState(event_id="msg_1", event_type="job.succeeded", timestamp=NOW),
        "step": lifecycle.new_step("deliver_webhook", NOW),
    }
    return Job.model_validate(values | fields)


def attempted(result: DeliveryResult, retry_in: float | None) -> Attempted:
    state = WebhookState(event_id="msg_1", event_type="job.succeeded", timestamp=NOW, delivered=result.delivered)
    return Attempted(state=state, retry_in=retry_in, result=result)


@pytest.mark.parametrize(
    ("attempt", "step", "due_in", "dead"),
    [
        (attempted(DeliveryResult(delivered=True, status_code=200), None), None, None, False),
        (attempted(DeliveryResult(delivered=False, status_code=500), 30.0), "deliver_webhook", 30.0, False),
        (attempted(DeliveryResult(delivered=False, status_code=500), None), None, None, True),  # schedule spent
        (attempted(DeliveryResult(delivered=False, status_code=410, gone=True), None), None, None, False),
    ],
    ids=["delivered", "retry", "given up", "gone"],
)
def test_after_an_attempt(attempt: Attempted, step: str | None, due_in: float | None, dead: bool) -> None:
    state, next_step = rules.after_attempt(ended(), attempt, NOW)
    assert state == attempt.state and (next_step.name if next_step else None) == step
    if due_in is not None:
        assert next_step is not None and next_step.due_at == NOW + timedelta(seconds=due_in)
    assert rules.dead_letter(attempt) is dead


def test_a_retry_of_a_canceled_job_the_vendor_renders_hands_over_to_the_quiet_polls() -> None:
    job = ended(JobStatus.CANCELED, provider_task_id="t1", charge=Charge(dialect="veogen"))
    state, step = rules.after_attempt(job, attempted(DeliveryResult(delivered=False, status_code=500), 30.0), NOW)
    assert step is not None and step.name == "poll" and step.due_at == NOW
    assert state.next_attempt_at == NOW + timedelta(seconds=30)
    delivered, after = rules.after_attempt(job, attempted(DeliveryResult(delivered=True, status_code=200), None), NOW)
    assert after is not None and after.name == "poll" and delivered.next_attempt_at is None
