"""A batch: many jobs from one file, run under one name with a start time, a deadline and a budget."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.models import TERMINAL_STATUSES, WebhookState, utcnow

Currency = Literal["credits", "usd"]


class Budget(BaseModel):
    """At most `amount` of `currency` may be committed to the batch's submits."""

    currency: Currency
    amount: float = Field(gt=0)


class BatchLine(BaseModel):
    """One line of a batch file: the fields of `genqueue submit` (INTERFACE.md)."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    prompt: str = ""
    options: dict[str, Any] = Field(default_factory=dict)
    images: list[str] = Field(default_factory=list)
    webhook: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


_TERMINAL_VALUES = frozenset(status.value for status in TERMINAL_STATUSES)


def ended_count(counts: dict[str, int]) -> int:
    """How many of the jobs counted by status (as the batch store keeps them) have ended."""
    return sum(count for status, count in counts.items() if status in _TERMINAL_VALUES)


class Batch(BaseModel):
    """A batch as the batch store keeps it. Its jobs are ordinary jobs with `batch_id` set."""

    id: str
    name: str
    created_at: datetime = Field(default_factory=utcnow)
    not_before: datetime | None = None
    deadline: datetime | None = None
    budget: Budget | None = None
    webhook_url: str | None = None
    #: the providers its lines go to (where the dispatcher looks for held jobs)
    providers: list[str] = Field(default_factory=list)
    #: lines enqueued as jobs so far (a resumed batch adds the lines it missed)
    total: int = 0
    completed_at: datetime | None = None
    webhook: WebhookState | None = None
    #: when the next delivery attempt of the completion webhook is due
    webhook_next_at: datetime | None = None

    def summary(self, counts: dict[str, int], ledger: dict[str, float], held: int) -> dict[str, Any]:
        """The batch as `batch status --json` and the `batch.completed` webhook give it.

        `counts` are jobs by status, `held` the jobs not yet released to their vendor, `ledger` as
        BatchStore.ledger gives it: `cost` is what vendors charged for jobs that ended.
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
        }
