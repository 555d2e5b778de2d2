"""The poll step's decisions (shared/decisions/poll.py): no Celery, no Redis. A running job's next step from the
vendor's status; a canceled job's quiet polls until the vendor ends its task, or its submit's answer is awaited."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from shared import lifecycle
from shared.decisions import Effects
from shared.decisions import poll as rules
from shared.errors import AuthFailed, GenqueueError, ProviderUnavailable
from shared.models import Charge, Cost, GenerationRequest, Job, JobStatus, utcnow
from shared.providers.base import PollResult, TaskState
from shared.settings import Settings

NOW = utcnow()
SETTINGS = Settings(retry_budgets={"provider_error": 1})


def submitted(**fields: object) -> Job:
    values: dict[str, object] = {
        "id": "job_p",
        "status": JobStatus.SUBMITTED,
        "provider": "sandbox",
        "model": "sandbox-video",
        "request": GenerationRequest(model="sandbox-video"),
        "deadline_at": NOW + timedelta(hours=1),
        "provider_task_id": "t1",
        "submit_started_at": NOW - timedelta(minutes=1),
        "charge": Charge(estimate=Cost(credits=2), dialect="veogen"),
        "step": lifecycle.new_step("poll", NOW),
    }
    return Job.model_validate(values | fields)


def own(job: Job) -> str:
    assert job.step is not None
    return job.step.task_id


@pytest.mark.parametrize(
    ("result", "status", "step", "code"),
    [
        (PollResult(state=TaskState.PENDING), JobStatus.SUBMITTED, "poll", None),
        (PollResult(state=TaskState.RUNNING, progress=0.4), JobStatus.RUNNING, "poll", None),
        (
            PollResult(state=TaskState.SUCCEEDED, output_urls=["https://cdn.test/1.mp4"]),
            JobStatus.FINALIZING,
            "finalize",
            None,
        ),
        (PollResult(state=TaskState.SUCCEEDED), JobStatus.SUBMITTED, "poll", None),  # no output: retried
        (PollResult(state=TaskState.FAILED, failure_reason="nsfw"), JobStatus.FAILED, None, "generation_failed"),
    ],
    ids=["pending", "running", "succeeded", "succeeded with no output", "failed"],
)
def test_a_polled_job_moves_on_from_the_vendors_status(
    result: PollResult, status: JobStatus, step: str | None, code: str | None
) -> None:
    job = submitted()
    new = rules.polled(job, own(job), result, SETTINGS, NOW, random.Random(1))
    assert new is not None and new.status is status
    assert (new.step.name if new.step else None) == step
    assert (new.error.code if new.error else None) == code
    finished = result.state is TaskState.SUCCEEDED and bool(result.output_urls)
    assert rules.polled_effects(result) == Effects(free_slot=finished)  # rendering is over: the slot is freed


def test_a_job_past_its_deadline_times_out() -> None:
    job = submitted()
    assert rules.timed_out(job, SETTINGS, NOW) is None
    timeout = rules.timed_out(job, SETTINGS, job.deadline_at + timedelta(seconds=1))
    assert timeout is not None and timeout.code == "timeout"


def canceled(**fields: object) -> Job:
    job = lifecycle.cancel(submitted(**fields), NOW)
    assert job is not None and job.step is not None and job.step.name == "poll"
    return job


@pytest.mark.parametrize(
    ("observed", "charged", "polls_again"),
    [
        (PollResult(state=TaskState.RUNNING), None, True),
        (PollResult(state=TaskState.SUCCEEDED), "yes", False),
        (PollResult(state=TaskState.FAILED), "no", False),  # veogen does not charge a failed generation
        (ProviderUnavailable("503"), None, True),  # within its retry budget
        (AuthFailed("401"), "unknown", False),  # a permanent error: how it ends cannot be learned
    ],
    ids=["running", "succeeded", "failed", "transient error", "permanent error"],
)
def test_a_followed_job_polls_quietly_until_the_vendor_ends_it(
    observed: PollResult | GenqueueError, charged: str | None, polls_again: bool
) -> None:
    job = canceled()
    new = rules.followed(job, own(job), observed, SETTINGS, NOW, random.Random(1))
    assert new is not None and new.status is JobStatus.CANCELED and new.charged == charged
    assert (new.step is not None and new.step.name == "poll") is polls_again


def test_a_followed_job_whose_retries_are_spent_or_deadline_passed_is_charged_unknown() -> None:
    job = canceled()
    assert job.step is not None
    job.step.retries = {"provider_error": 1}
    spent = rules.followed(job, own(job), ProviderUnavailable("503"), SETTINGS, NOW, random.Random(1))
    assert spent is not None and spent.charged == "unknown" and spent.step is None
    late = job.deadline_at + timedelta(seconds=1)
    assert not rules.asks_vendor(job, late)
    ended = rules.followed(job, own(job), None, SETTINGS, late, random.Random(1))
    assert ended is not None and ended.charged == "unknown"


def test_a_job_canceled_during_its_post_waits_for_the_submits_answer_then_counts_it_lost() -> None:
    job = canceled(provider_task_id=None, submit_started_at=NOW)
    assert not rules.asks_vendor(job, NOW)
    answered_by = lifecycle.submit_answered_by(SETTINGS, job)
    assert answered_by is not None
    waiting = rules.followed(job, own(job), None, SETTINGS, NOW, random.Random(1))
    assert waiting is not None and waiting.step is not None and waiting.step.due_at == answered_by
    assert waiting.charged is None
    lost = rules.followed(job, own(job), None, SETTINGS, answered_by, random.Random(1))
    assert lost is not None and lost.charged == "unknown" and lost.step is None


def test_only_the_steps_owner_follows() -> None:
    job = canceled()
    assert rules.followed(job, "stale", PollResult(state=TaskState.SUCCEEDED), SETTINGS, NOW, random.Random(1)) is None
