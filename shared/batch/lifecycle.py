"""Pure transitions of a batch: completing it, who may run its next step, and what each outcome changes.

As shared/lifecycle.py is for jobs: every function takes a Batch (and the time) and returns a new Batch, or None
when the transition does not apply to the batch as it is now (it moved on, or another task owns its step). The
batch store applies them with a compare-and-set (BatchStore.update), re-deciding on the newer batch when another
writer got there first; the workers only choose which one to apply.

A batch's one step is the delivery of its `batch.completed` event. Its event (and `webhook-id`) is made once, in
the same write that completes the batch, so however often the delivery is retried, resumed or duplicated, the
receiver sees one id.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from shared.batch.models import Batch, BatchStep
from shared.lifecycle import Claim, Decision, step_decision
from shared.models import WebhookState

EVENT_TYPE = "batch.completed"


def new_step(due_at: datetime) -> BatchStep:
    """A delivery step with a fresh task id: only the task published with that id may run it."""
    return BatchStep(task_id=uuid.uuid4().hex, due_at=due_at)


def complete(batch: Batch, ended: int, held: int, now: datetime) -> Batch | None:
    """Complete the batch when all `batch.total` of its jobs have ended and none is held; None otherwise.

    A batch with a webhook URL and no event yet gets its `batch.completed` event and the step that delivers it,
    due now. None too when it is already completed, or has no jobs: a batch completes once per run (a resume or a
    retry reopens it).
    """
    if batch.completed_at is not None or batch.total == 0 or held or ended < batch.total:
        return None
    completed = batch.model_copy(deep=True, update={"completed_at": now})
    if batch.webhook_url is not None and batch.webhook is None:
        completed.webhook = WebhookState(event_id=f"msg_{uuid.uuid4().hex}", event_type=EVENT_TYPE, timestamp=now)
        completed.step = new_step(now)
    return completed


def claim(batch: Batch, task_id: str, now: datetime, lease_seconds: float) -> tuple[Claim[Batch], Batch | None]:
    """Decide what task `task_id` sent for the batch's step should do; the batch to write when it runs (leased),
    by the same rule as a job's step (lifecycle.step_decision)."""
    decision, delay = step_decision(batch.step, task_id, now)
    if decision is not Decision.RUN:
        return Claim(decision, delay=delay), None
    leased = batch.model_copy(deep=True)
    assert leased.step is not None
    leased.step.lease_until = now + timedelta(seconds=lease_seconds)
    return Claim(Decision.RUN, leased), leased


def owns_step(batch: Batch, task_id: str) -> bool:
    """True while the batch's step is still the one task `task_id` claimed."""
    return batch.step is not None and batch.step.task_id == task_id


def record_attempt(
    batch: Batch, task_id: str, state: WebhookState, retry_in: float | None, now: datetime
) -> Batch | None:
    """Record a delivery attempt made by the step task `task_id` owns: the event's new state, and the next attempt
    `retry_in` seconds from `now` (a fresh step) or none. None when the step is no longer that task's."""
    if not owns_step(batch, task_id):
        return None
    return batch.model_copy(
        deep=True,
        update={"webhook": state, "step": None if retry_in is None else new_step(now + timedelta(seconds=retry_in))},
    )


def finish_step(batch: Batch, task_id: str) -> Batch | None:
    """End the step task `task_id` owns with nothing more to do (the event was delivered or given up before)."""
    if not owns_step(batch, task_id):
        return None
    return batch.model_copy(deep=True, update={"step": None})


def resume_overdue(batch: Batch, now: datetime, grace_seconds: float) -> Batch | None:
    """Give an overdue step a fresh task id, due now, for the sweeper to publish; None when it is not overdue.

    Overdue: due more than `grace_seconds` ago and no run holds its lease (its task was lost with a worker or with
    Redis). The old task id stops being valid, so a lost task that turns up after all drops itself.
    """
    step = batch.step
    if step is None or step.due_at > now - timedelta(seconds=grace_seconds):
        return None
    if step.lease_until is not None and step.lease_until > now:
        return None
    return batch.model_copy(deep=True, update={"step": new_step(now)})


def reopen(batch: Batch, total: int, new_event: bool) -> Batch:
    """The batch running again with `total` lines: not completed; with `new_event` (its failed jobs retried) its
    completion event and any delivery in progress are dropped, so completing again sends a new event."""
    update: dict[str, object] = {"completed_at": None, "total": total}
    if new_event:
        update |= {"webhook": None, "step": None}
    return batch.model_copy(deep=True, update=update)
