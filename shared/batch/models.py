"""A batch: many jobs from one file, run under one name with a start time, a deadline and a budget."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.models import TERMINAL_STATUSES, Budget, Job, Route, WebhookState, utcnow


class BatchLine(BaseModel):
    """One line of a batch file: the fields of `genqueue submit` (INTERFACE.md)."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    prompt: str = ""
    options: dict[str, Any] = Field(default_factory=dict)
    images: list[str] = Field(default_factory=list)
    webhook: str | None = None
    #: strings, numbers or booleans, stored as strings (shared/limits.py)
    metadata: dict[str, Any] = Field(default_factory=dict)
    #: with `provider` auto or a list: cheapest, fastest or preferred (shared/decisions/route.py)
    route_policy: str = "cheapest"


def route_hold(route: Route) -> str:
    """The name a batch holds a route's jobs under: one per model and set of providers, whatever the policy (a
    provider's name has no colon, so none is taken)."""
    return f"route:{route.model}:{'+'.join(route.providers)}"


def hold_of(job: Job) -> str:
    """Where the batch holds `job` until it is released: its route's hold, else its provider's name."""
    return job.provider if job.route is None else route_hold(job.route)


_TERMINAL_VALUES = frozenset(status.value for status in TERMINAL_STATUSES)


def ended_count(counts: dict[str, int]) -> int:
    """How many of the jobs counted by status (as the batch store keeps them) have ended."""
    return sum(count for status, count in counts.items() if status in _TERMINAL_VALUES)


BatchStepName = Literal["deliver_batch_webhook"]


class BatchStep(BaseModel):
    """The one next step of a batch, as a job's `Step` is of a job.

    Exactly one Celery task may run it: the one whose task id is `task_id`; any other finds its id missing here and
    drops itself, so a duplicate or redelivered task cannot start a second chain. `lease_until` marks a run in
    progress; past `due_at` plus the sweeper's grace, with no lease held, the sweeper gives it a fresh task id.
    """

    name: BatchStepName = "deliver_batch_webhook"
    task_id: str
    due_at: datetime
    lease_until: datetime | None = None


class Batch(BaseModel):
    """A batch as the batch store keeps it. Its jobs are ordinary jobs with `batch_id` set."""

    id: str
    name: str
    #: the API key (shared/keys.py) the batch was made with; None for the operator's command line
    tenant: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    not_before: datetime | None = None
    deadline: datetime | None = None
    budget: Budget | None = None
    webhook_url: str | None = None
    #: the providers its lines name (the dispatcher looks for their held jobs under each one's name)
    providers: list[str] = Field(default_factory=list)
    #: its lines sent to a route (`auto` or a provider list), held by route (route_hold): hold name -> the route's
    #: providers, whose paces add up when the dispatcher releases them
    routes: dict[str, list[str]] = Field(default_factory=dict)
    #: lines enqueued as jobs so far (a resumed batch adds the lines it missed)
    total: int = 0
    completed_at: datetime | None = None
    webhook: WebhookState | None = None
    #: the batch's next step (the delivery of its `batch.completed` event), indexed by when it is due
    step: BatchStep | None = None

    @property
    def holds(self) -> list[str]:
        """Every name its held jobs are kept under: its providers', then its routes'."""
        return [*self.providers, *self.routes]

    def summary(
        self, counts: dict[str, int], ledger: dict[str, float], held: int, dispatcher: DispatcherHealth
    ) -> dict[str, Any]:
        """The batch as `batch status --json` and the `batch.completed` webhook give it.

        `counts` are jobs by status, `held` the jobs not yet released to their vendor, `ledger` as
        BatchStore.ledger gives it: `cost` is what vendors charged for jobs that ended; `dispatcher` whether the
        dispatcher that releases held jobs has run lately (`dispatcher_health`).
        """
        return {
            "id": self.id,
            "name": self.name,
            "total": self.total,
            "held": held,
            "ended": ended_count(counts),
            "counts": counts,
            "cost": {"credits": round(ledger["spent_credits"], 6), "usd": round(ledger["spent_usd"], 6)},
            "budget": self.budget.model_dump() if self.budget else None,
            "committed": round(ledger["committed"], 6) if self.budget else None,
            "not_before": self.not_before.isoformat() if self.not_before else None,
            "deadline": self.deadline.isoformat() if self.deadline else None,
            "created_at": self.created_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "dispatcher": {
                "last_run": dispatcher.last_run.isoformat() if dispatcher.last_run else None,
                "stale": dispatcher.stale,
            },
        }


@dataclass(frozen=True)
class DispatcherHealth:
    """When the dispatcher last finished a pass (None: never, as far as Redis knows), and whether held jobs are
    waiting on a dispatcher that is not running."""

    last_run: datetime | None
    stale: bool


def dispatcher_stale_after(dispatch_interval_seconds: float, dispatch_task_seconds: float) -> float:
    """Seconds without a dispatcher pass after which held jobs are said to wait for no one.

    Passes come every interval while a dispatcher task runs, and beat starts one every task span; a slow poll
    queue can delay a start by a span or two, so only a few spans (30 s with the defaults) of silence count.
    """
    return max(10 * dispatch_interval_seconds, 3 * dispatch_task_seconds)


def dispatcher_health(
    last_run: datetime | None, held: int, now: datetime, stale_after: float, held_since: datetime | None = None
) -> DispatcherHealth:
    """Stale when jobs are held and no dispatcher pass finished in the last `stale_after` seconds. With no pass
    ever recorded, counted from `held_since` (the batch's creation): a batch submitted just as beat starts has not
    waited yet."""
    since = last_run or held_since
    quiet = since is None or now - since > timedelta(seconds=stale_after)
    return DispatcherHealth(last_run=last_run, stale=held > 0 and quiet)
