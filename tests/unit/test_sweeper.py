"""The sweeper resumes overdue steps with a fresh task id, and leaves running or future steps alone."""

from __future__ import annotations

from datetime import timedelta

import fakeredis
import pytest

from shared import lifecycle, queueing
from shared.lifecycle import Decision
from shared.models import GenerationRequest, Job, utcnow
from shared.settings import Settings
from shared.store import JobStore
from workers import context, sweeper


def job_with_step(job_id: str, name: lifecycle.StepName, due_ago: float, lease_left: float | None = None) -> Job:
    now = utcnow()
    step = lifecycle.new_step(name, now - timedelta(seconds=due_ago))
    if lease_left is not None:
        step.lease_until = now + timedelta(seconds=lease_left)
    return Job(
        id=job_id,
        provider="sandbox",
        request=GenerationRequest(model="sandbox-video"),
        deadline_at=now + timedelta(hours=1),
        step=step,
    )


def test_resume_overdue_only_when_overdue_and_not_leased() -> None:
    now = utcnow()
    assert lifecycle.resume_overdue(job_with_step("a", "poll", due_ago=5), now, grace_seconds=60) is None
    assert lifecycle.resume_overdue(job_with_step("b", "poll", due_ago=300, lease_left=30), now, 60) is None
    lost = job_with_step("c", "poll", due_ago=300)
    resumed = lifecycle.resume_overdue(lost, now, 60)
    assert resumed is not None and resumed.step is not None and lost.step is not None
    assert resumed.step.name == "poll" and resumed.step.task_id != lost.step.task_id
    # the lost task, should it turn up after all, is now stale and drops itself
    stale, _ = lifecycle.claim(resumed, "poll", lost.step.task_id, now, 60)
    assert stale.decision is Decision.DROP


def test_sweep_republishes_overdue_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    store = JobStore(fakeredis.FakeRedis())
    settings = Settings(sweep_grace_seconds=60)
    monkeypatch.setattr(context, "store", lambda: store)
    monkeypatch.setattr(context, "settings", lambda: settings)
    published: list[tuple[str, str]] = []
    monkeypatch.setattr(
        queueing, "publish_step", lambda app, s, job_id, step, now: published.append((job_id, step.name))
    )
    store.create(job_with_step("overdue", "submit", due_ago=600))
    store.create(job_with_step("fresh", "poll", due_ago=1))
    store.create(job_with_step("running", "finalize", due_ago=600, lease_left=120))
    assert sweeper.sweep_overdue() == 1
    assert published == [("overdue", "submit")]
    assert sweeper.sweep_overdue() == 0  # its new step is due now, not overdue
