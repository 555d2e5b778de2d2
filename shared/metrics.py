"""Job-level metrics: what Flower cannot show, since it sees Celery tasks and not jobs.

`summarize(jobs, now)` is pure: it folds jobs into a `JobMetrics` snapshot. `read_jobs(client)` reads every job
through the job store (`JobStore.all_jobs`: in chunks; a key that vanishes or is not a job is skipped, a job that
does not parse is quarantined and skipped), and `collect(client, now)` is the two together, plus the length of the
webhook dead-letter list (shared/webhooks/dead_letters.py) and the number of quarantined records.
`queue_due_commands(pipe, now_ts)` and `queue_steps(replies)` are the steps due on each queue, read from the due
indexes in the caller's pipeline (the exporter's, producer/metrics_exporter.py) without reading a job.

The figures describe the jobs in Redis at `now`, not events since a process started:
- `jobs_by_status`: jobs per status; `errors_by_code`: jobs that carry an error, per error code.
- `polls` / `polled_jobs`: poll_count summed over the jobs polled at least once, and how many those are, so
  `polls / polled_jobs` is the average number of polls of a job that got polled.
- `state_time[status]`: for each job and each status it entered (from `Job.entered_at`), the time until the next
  status it entered; for its current status, when not terminal, the time until `now` (so the average includes
  jobs still in that status). Terminal statuses take no time. A status whose end is unknown (a job stamped
  before `entered_at` existed, or missing its current status) is left out.
- `cost_credits` / `cost_usd`: sums of the jobs' `cost`, each unit apart (a missing cost counts as nothing): the
  cost record's figure (shared/costs.py), so an ended job counts what it was charged (0 where the vendor charged
  nothing, the vendor's figure or the estimate where that is unknown), a running one its current figure.
- `charged`: ended jobs by whether they were charged (`yes`, `no`, `unknown`), and `pending` for canceled jobs
  whose vendor still renders them.
- webhooks: attempts, failed attempts (no answer, or an answer other than 2xx), deliveries, events given up on,
  and `dead_letters`, the length of the dead-letter list (only `collect` reads it; `summarize` leaves 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from itertools import pairwise

import redis
from pydantic import BaseModel, Field
from redis.client import Pipeline

from shared import costs
from shared.constants import BATCH_DUE_KEY, QUEUE_DUE_KEYS, QUEUES
from shared.models import STATUS_RANK, Job, JobStatus
from shared.quarantine import Quarantine
from shared.store import JobStore
from shared.webhooks.dead_letters import DeadLetters


class StateTime(BaseModel):
    """Time spent in one status, summed over `count` stays, in seconds."""

    seconds: float = 0.0
    count: int = 0

    @property
    def average(self) -> float | None:
        return self.seconds / self.count if self.count else None


class ProviderMetrics(BaseModel):
    """The figures of one provider's jobs; mappings are keyed by status value or error code."""

    jobs_by_status: dict[str, int] = Field(default_factory=dict)
    errors_by_code: dict[str, int] = Field(default_factory=dict)
    polls: int = 0
    polled_jobs: int = 0
    state_time: dict[str, StateTime] = Field(default_factory=dict)
    cost_credits: float = 0.0
    cost_usd: float = 0.0
    charged: dict[str, int] = Field(default_factory=dict)

    @property
    def jobs(self) -> int:
        return sum(self.jobs_by_status.values())

    @property
    def average_polls(self) -> float | None:
        return self.polls / self.polled_jobs if self.polled_jobs else None


class WebhookMetrics(BaseModel):
    """Webhook deliveries over all jobs."""

    attempts: int = 0
    failed_attempts: int = 0
    delivered: int = 0
    given_up: int = 0
    dead_letters: int = 0


class QueueSteps(BaseModel):
    """Steps of one queue whose due time has passed, and those of them due for more than OVERDUE_AFTER_SECONDS."""

    due: int = 0
    overdue: int = 0


#: a step due for longer than this is overdue: no worker has taken it although one should have within seconds
OVERDUE_AFTER_SECONDS = 60.0


class JobMetrics(BaseModel):
    """A snapshot of every job at `at`, per provider (sorted by name), and webhooks over all jobs."""

    at: datetime
    providers: dict[str, ProviderMetrics] = Field(default_factory=dict)
    webhooks: WebhookMetrics = Field(default_factory=WebhookMetrics)
    #: records set aside because they could not be read (shared/quarantine.py); only `collect` reads it
    quarantined: int = 0

    @property
    def jobs(self) -> int:
        return sum(provider.jobs for provider in self.providers.values())


def summarize(jobs: Iterable[Job], now: datetime) -> JobMetrics:
    """Fold `jobs` into a JobMetrics snapshot taken at `now` (see the module docstring for each figure)."""
    providers: dict[str, ProviderMetrics] = {}
    webhooks = WebhookMetrics()
    for job in jobs:
        figures = providers.setdefault(job.provider, ProviderMetrics())
        _count(figures.jobs_by_status, job.status.value)
        if job.error is not None:
            _count(figures.errors_by_code, job.error.code)
        if job.poll_count > 0:
            figures.polls += job.poll_count
            figures.polled_jobs += 1
        for status, seconds in state_durations(job, now):
            spent = figures.state_time.setdefault(status.value, StateTime())
            spent.seconds += seconds
            spent.count += 1
        if job.status.terminal:
            # a record that ended before charges were decided says nothing either way: unknown, counted at its cost
            _count(figures.charged, "pending" if costs.awaiting_vendor(job) else job.charged or "unknown")
        figures.cost_credits += job.cost.credits or 0.0
        figures.cost_usd += job.cost.usd or 0.0
        if job.webhook is not None:
            webhooks.attempts += len(job.webhook.attempts)
            webhooks.failed_attempts += sum(1 for attempt in job.webhook.attempts if not _ok(attempt.status_code))
            webhooks.delivered += int(job.webhook.delivered)
            webhooks.given_up += int(job.webhook.gave_up is not None)
    ordered = {name: providers[name] for name in sorted(providers)}
    return JobMetrics(at=now, providers=ordered, webhooks=webhooks)


def state_durations(job: Job, now: datetime) -> list[tuple[JobStatus, float]]:
    """Seconds the job spent in each status it entered whose end is known (its current one ends at `now`)."""
    entered = sorted(
        ((JobStatus(value), at) for value, at in job.entered_at.items() if value in _STATUS_VALUES),
        key=lambda pair: (pair[1], STATUS_RANK[pair[0]]),
    )
    spans: list[tuple[JobStatus, float]] = []
    for (status, start), (_, end) in pairwise(entered):
        spans.append((status, max(0.0, (end - start).total_seconds())))
    if entered:
        last, start = entered[-1]
        if last is job.status and not last.terminal:
            spans.append((last, max(0.0, (now - start).total_seconds())))
    return spans


def read_jobs(client: redis.Redis, batch: int = 500) -> Iterator[Job]:
    """Every job in the job store behind `client`, `batch` per round trip (JobStore.all_jobs: what is not a job is
    skipped, a job that does not parse is quarantined and skipped)."""
    return JobStore(client).all_jobs(chunk=batch)


def collect(client: redis.Redis, now: datetime) -> JobMetrics:
    """`summarize` over every job in the store, with the length of the webhook dead-letter list."""
    metrics = summarize(read_jobs(client), now)
    metrics.webhooks.dead_letters = DeadLetters(client).count()
    metrics.quarantined = Quarantine(client).count()
    return metrics


#: the due indexes the steps-due figures count, in order: each queue's (QUEUES order), then the batches' (their
#: `batch.completed` deliveries run on the webhooks queue)
_DUE_INDEXES = (*QUEUE_DUE_KEYS, BATCH_DUE_KEY)
#: how many replies `queue_due_commands` adds to a pipeline (two ZCOUNTs per due index)
DUE_COMMANDS = 2 * len(_DUE_INDEXES)


def queue_due_commands(pipe: Pipeline, now_ts: float) -> None:
    """Queue onto `pipe` the DUE_COMMANDS counts `queue_steps` reads: per due index, the steps due at unix time
    `now_ts` and those due more than OVERDUE_AFTER_SECONDS before it.

    The due indexes are the ones the job store's writes keep per queue (QUEUE_DUE_KEY), so this counts a step
    waiting on a countdown once its time comes, which a queue's list length misses (Celery hands a countdown task
    to a worker at once, to wait there), and leaves out batch jobs the dispatcher still holds.
    """
    for key in _DUE_INDEXES:
        pipe.zcount(key, "-inf", now_ts)
        pipe.zcount(key, "-inf", now_ts - OVERDUE_AFTER_SECONDS)


def queue_steps(counts: Sequence[int | bytes | str]) -> dict[str, QueueSteps]:
    """Per queue (every queue, in QUEUES order), the due and overdue steps, from the DUE_COMMANDS replies of
    `queue_due_commands` in their order; the webhooks queue also counts the batches' completion deliveries."""
    if len(counts) != DUE_COMMANDS:
        raise ValueError(f"expected {DUE_COMMANDS} due counts, got {len(counts)}")
    due = [int(count) for count in counts]
    figures = {queue: QueueSteps(due=due[2 * i], overdue=due[2 * i + 1]) for i, queue in enumerate(QUEUES)}
    figures["webhooks"].due += due[-2]
    figures["webhooks"].overdue += due[-1]
    return figures


_STATUS_VALUES = frozenset(status.value for status in JobStatus)


def _count(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def _ok(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300


#: the group of jobs that do not carry the metadata key asked for
NO_VALUE = "(none)"


def summarize_by_metadata(jobs: Iterable[Job], key: str, now: datetime) -> dict[str, JobMetrics]:
    """`summarize` for each value of metadata `key` (customer, project, …), sorted by value; jobs without the key
    are grouped under NO_VALUE. Costs are summed by the same rule as the whole snapshot's."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.metadata.get(key, NO_VALUE), []).append(job)
    return {value: summarize(groups[value], now) for value in sorted(groups)}
