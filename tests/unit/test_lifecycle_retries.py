"""Transitions moved into shared/lifecycle.py from the tasks: retries and their budgets, a derived
`Step.attempt`, the release and cancel of held batch jobs, a failed batch job marked as retried."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest

from shared import lifecycle
from shared.errors import ProviderUnavailable, RateLimited
from shared.models import GenerationRequest, Job, JobStatus, Step, utcnow
from shared.settings import Settings

NOW = utcnow()
SETTINGS = Settings(retry_budgets={"provider_error": 2, "rate_limited": 8}, webhook_secret="whsec_c2VjcmV0LXRlc3Q=")


def running(step: str = "poll", retries: dict[str, int] | None = None, **fields: object) -> Job:
    values: dict[str, object] = {
        "id": "job_r",
        "provider": "sandbox",
        "model": "sandbox-video",
        "request": GenerationRequest(model="sandbox-video"),
        "deadline_at": NOW + timedelta(hours=1),
        "step": lifecycle.new_step(step, NOW, retries),
        "status": JobStatus.RUNNING,
    }
    return Job.model_validate(values | fields)


def own(job: Job) -> str:
    assert job.step is not None
    return job.step.task_id


@pytest.mark.parametrize(
    ("retries", "error", "retried"),
    [
        ({}, ProviderUnavailable("503"), True),
        ({"provider_error": 1}, ProviderUnavailable("503"), True),
        ({"provider_error": 2}, ProviderUnavailable("503"), False),  # the budget of 2 is spent
        ({"provider_error": 2}, RateLimited("429"), True),  # each code has its own budget
    ],
)
def test_a_step_is_retried_within_its_codes_budget_then_fails(
    retries: dict[str, int], error: ProviderUnavailable, retried: bool
) -> None:
    job = running(retries=retries)
    new = lifecycle.retry_or_fail(job, own(job), error, SETTINGS, NOW, random.Random(1), progress=0.5)
    assert new is not None
    if retried:
        assert new.status is JobStatus.RUNNING and new.step is not None and new.step.name == "poll"
        assert new.step.task_id != own(job) and new.step.retries == {
            **retries,
            error.code: retries.get(error.code, 0) + 1,
        }
        assert new.step.attempt == sum(retries.values()) + 1 and new.progress == 0.5
        assert new.step.due_at > NOW
    else:
        assert new.status is JobStatus.FAILED and new.error is not None and new.error.code == error.code
        assert new.error.message == "sandbox poll: 503 (gave up after 2 retries)"


def test_a_retry_honours_retry_after_and_a_spent_budget_redacts_secrets() -> None:
    job = running()
    new = lifecycle.retry_or_fail(job, own(job), RateLimited("slow"), SETTINGS, NOW, random.Random(1), 20.0)
    assert new is not None and new.step is not None and new.step.due_at >= NOW + timedelta(seconds=20)
    spent = running(retries={"provider_error": 2})
    leaky = ProviderUnavailable("bad key whsec_c2VjcmV0LXRlc3Q=")
    failed = lifecycle.retry_or_fail(spent, own(spent), leaky, SETTINGS, NOW, random.Random(1))
    assert failed is not None and failed.error is not None and "whsec_" not in failed.error.message


def test_only_the_steps_owner_retries() -> None:
    job = running()
    assert lifecycle.retry_or_fail(job, "stale", ProviderUnavailable("503"), SETTINGS, NOW, random.Random(1)) is None


def test_a_rescheduled_step_keeps_its_retries() -> None:
    job = running(step="submit", retries={"rate_limited": 3}, status=JobStatus.QUEUED)
    new = lifecycle.reschedule(job, own(job), NOW, 4.0)
    assert new is not None and new.step is not None and new.step.name == "submit" and new.step.task_id != own(job)
    assert new.step.retries == {"rate_limited": 3} and new.step.due_at == NOW + timedelta(seconds=4)
    assert lifecycle.reschedule(job, "stale", NOW, 4.0) is None


def test_attempt_is_derived_from_retries_and_a_stored_attempt_is_ignored() -> None:
    step = Step(name="poll", task_id="t", due_at=NOW, retries={"provider_error": 2, "rate_limited": 1})
    assert step.attempt == 3
    assert "attempt" not in json.loads(step.model_dump_json())
    stored = {"name": "poll", "task_id": "t", "due_at": NOW.isoformat(), "attempt": 7, "retries": {"rate_limited": 1}}
    old = Step.model_validate_json(json.dumps(stored))
    assert old.attempt == 1 and old.retries == {"rate_limited": 1}
    job = running().model_dump(mode="json")
    job["step"]["attempt"] = 4  # a whole job stored before, with its step
    assert Job.model_validate(job).step is not None


def held(**fields: object) -> Job:
    return running(status=JobStatus.QUEUED, batch_id="batch_1").model_copy(update={"step": None, **fields})


def test_a_held_job_is_released_once() -> None:
    released = lifecycle.release(held(), NOW)
    assert released is not None and released.step is not None and released.step.name == "submit"
    assert released.updated_at == NOW
    assert lifecycle.release(released, NOW) is None  # released already
    assert lifecycle.release(held(status=JobStatus.CANCELED), NOW) is None


def test_a_held_job_is_canceled_unless_it_was_released_meanwhile() -> None:
    canceled = lifecycle.cancel_held(held(webhook_url="https://example.com/hook"), "the batch deadline passed", NOW)
    assert canceled is not None and canceled.status is JobStatus.CANCELED
    assert canceled.error is not None and canceled.error.message == "the batch deadline passed"
    assert canceled.step is not None and canceled.step.name == "deliver_webhook"
    released = lifecycle.release(held(), NOW)
    assert released is not None and lifecycle.cancel_held(released, "too late", NOW) is None


def test_a_failed_batch_job_is_marked_as_retried() -> None:
    failed = held(status=JobStatus.FAILED)
    marked = lifecycle.mark_retried(failed, 12)
    assert marked.metadata["genqueue_retried_as"] == "line 12" and "genqueue_retried_as" not in failed.metadata
