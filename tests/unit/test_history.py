"""A job's history: the record of one step run, its outcome in words, and the bound on how many are kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared import lifecycle
from shared.history import StepRun, outcome, with_run
from shared.models import HISTORY_HEAD, HISTORY_LIMIT, GenerationRequest, Job, JobError, JobStatus

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def a_job(**fields: object) -> Job:
    return Job(
        id="job_h",
        provider="sandbox",
        request=GenerationRequest(model="sandbox-image"),
        deadline_at=T0 + timedelta(hours=1),
        step=lifecycle.new_step("submit", T0),
        **fields,
    )


def test_a_runs_record_has_its_try_answer_duration_and_outcome() -> None:
    before = a_job()
    after = before.model_copy(update={"status": JobStatus.SUBMITTED, "step": lifecycle.new_step("poll", T0)})
    run = StepRun(step="submit", started=T0, attempt=0, answer=200)
    record = with_run(before, after, run, T0 + timedelta(seconds=1.25)).history[-1]
    assert (record.step, record.attempt, record.answer, record.seconds) == ("submit", 0, 200, 1.25)
    assert record.outcome == "submitted, next poll"


def test_outcome_names_a_retry_and_its_code_or_the_error() -> None:
    before = a_job()
    retried = before.model_copy(update={"step": lifecycle.new_step("submit", T0, retries={"rate_limited": 2})})
    assert outcome(before, retried) == "queued, retry rate_limited #2"
    failed = before.model_copy(
        update={"status": JobStatus.FAILED, "step": None, "error": JobError(code="timeout", message="late")}
    )
    assert outcome(before, failed) == "failed (timeout)"


def test_a_long_history_keeps_its_head_and_tail_and_counts_what_it_drops() -> None:
    job = a_job()
    for n in range(HISTORY_LIMIT + 7):
        job = with_run(job, job, StepRun(step="poll", started=T0 + timedelta(seconds=n), attempt=0), T0)
    assert len(job.history) == HISTORY_LIMIT and job.history_dropped == 7
    kept = [int((record.at - T0).total_seconds()) for record in job.history]
    assert kept[:HISTORY_HEAD] == list(range(HISTORY_HEAD))
    assert kept[-1] == HISTORY_LIMIT + 6 and kept[HISTORY_HEAD] == HISTORY_HEAD + 7
