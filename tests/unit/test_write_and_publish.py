"""shared/queueing.write_and_publish: one compare-and-set, then the step it leaves published (and only then)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import fakeredis

from shared import lifecycle
from shared.models import GenerationRequest, Job, JobStatus, utcnow
from shared.queueing import write_and_publish
from shared.settings import Settings
from shared.store import JobStore


class FakeCelery:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_task(self, name: str, **options: Any) -> None:
        self.sent.append({"name": name, **options})


def test_a_written_step_is_published_under_its_task_id_and_a_declined_one_is_not() -> None:
    store = JobStore(fakeredis.FakeRedis())
    now = utcnow()
    job = Job(
        id="job_w",
        provider="sandbox",
        request=GenerationRequest(model="sandbox-image"),
        webhook_url="https://example.com/hook",
        deadline_at=now + timedelta(hours=1),
        step=lifecycle.new_step("submit", now),
    )
    store.create(job)
    app, settings = FakeCelery(), Settings()
    written = write_and_publish(store, app, settings, job.id, lambda j: lifecycle.cancel(j, now), now)
    assert written is not None and written.status is JobStatus.CANCELED and written.step is not None
    assert [(sent["name"], sent["task_id"], sent["args"]) for sent in app.sent] == [
        ("genqueue.deliver_webhook", written.step.task_id, [job.id])
    ]
    assert write_and_publish(store, app, settings, job.id, lambda j: lifecycle.cancel(j, now), now) is None
    assert len(app.sent) == 1  # ended once: nothing written, nothing published
