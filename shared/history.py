"""A job's history: one record per run of a step, appended to the job by the write of that run's outcome.

Pure: `with_run(before, after, run, now)` is `after` with the record of `run` appended (bounded by HISTORY_LIMIT),
`outcome(before, after)` says in a few words what the run changed. The workers (workers/steps.py) note what a run
did as it goes and call `with_run` in the change their outcome's write applies, so the history is written once,
with the outcome, in the same compare-and-set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from shared.models import HISTORY_HEAD, HISTORY_LIMIT, Job, StepName, StepRecord


@dataclass
class StepRun:
    """What one run of a step has done so far: its step, when it started, its attempt, what answered its call, and
    the counts (shared/counters.py fields: its vendor requests) its next write is to add."""

    step: StepName
    started: datetime
    attempt: int
    answer: int | str | None = None
    recorded: bool = False
    counts: dict[str, float] = field(default_factory=dict)


def outcome(before: Job, after: Job) -> str:
    """The run's outcome in a few words: the status it left the job in, the error, a retry, the next step."""
    words = after.status.value
    if after.error is not None and (before.error is None or before.error.code != after.error.code):
        words += f" ({after.error.code})"
    step = after.step
    if step is not None:
        earlier = before.step.retries if before.step is not None and before.step.name == step.name else {}
        retried = [code for code, count in step.retries.items() if count > earlier.get(code, 0)]
        if retried:
            words += f", retry {retried[0]} #{step.retries[retried[0]]}"
        else:
            words += f", next {step.name}"
    return words


def with_run(before: Job, after: Job, run: StepRun, now: datetime) -> Job:
    """`after` with `run`'s record appended, the oldest beyond the head dropped past HISTORY_LIMIT records."""
    record = StepRecord(
        step=run.step,
        at=run.started,
        attempt=run.attempt,
        seconds=round(max((now - run.started).total_seconds(), 0.0), 3),
        answer=run.answer,
        outcome=outcome(before, after),
    )
    history, dropped = [*after.history, record], after.history_dropped
    if len(history) > HISTORY_LIMIT:
        history = history[:HISTORY_HEAD] + history[HISTORY_HEAD + 1 :]
        dropped += 1
    return after.model_copy(update={"history": history, "history_dropped": dropped})
