"""pydantic models for every boundary: the unified generation request, the job, and its parts.

`Job.public()` is the job as INTERFACE.md shows it (status --json, the producer API, a webhook's `data`); the
other fields are the workers' bookkeeping and never leave the job store.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

MAX_PROMPT_CHARS = 10_000


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class JobStatus(enum.StrEnum):
    """Where a job is in its life; it only ever moves forward."""

    #: accepted by the producer, not yet accepted by the vendor
    QUEUED = "queued"
    #: the vendor accepted it and gave a task id
    SUBMITTED = "submitted"
    #: the vendor reports it is rendering
    RUNNING = "running"
    #: the vendor is done; outputs are being copied to storage
    FINALIZING = "finalizing"
    #: outputs are in the bucket
    SUCCEEDED = "succeeded"
    #: ended with an error code
    FAILED = "failed"
    #: the caller canceled it
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})

#: the order statuses move in; a transition never goes to a lower rank
STATUS_RANK = {
    JobStatus.QUEUED: 0,
    JobStatus.SUBMITTED: 1,
    JobStatus.RUNNING: 2,
    JobStatus.FINALIZING: 3,
    JobStatus.SUCCEEDED: 4,
    JobStatus.FAILED: 4,
    JobStatus.CANCELED: 4,
}


class GenerationRequest(BaseModel):
    """The unified request: the union of what the vendor documents take, in snake_case.

    Each adapter maps the fields its vendor takes and refuses the rest; `extra` goes to the vendor as given.
    Input lists are bounded here only by the request's size (shared/limits.py); each vendor's own rules (counts,
    https only) are its catalog's and adapter's, applied to that vendor alone.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    aspect_ratio: str | None = None
    resolution: str | None = None
    duration: int | None = Field(default=None, ge=1, le=600)
    output_format: str | None = None
    audio: bool | None = None
    mode: str | None = None
    style: str | None = None
    watermark: bool | None = None
    private: bool | None = None
    size: str | None = None
    scope: Literal["images", "videos", "audio"] | None = None
    image_urls: list[str] = Field(default_factory=list)
    reference_image_urls: list[str] = Field(default_factory=list)
    reference_video_urls: list[str] = Field(default_factory=list)
    reference_audio_urls: list[str] = Field(default_factory=list)
    video_url: str | None = None
    audio_setting: Literal["auto", "origin"] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    def option_names(self) -> set[str]:
        """The optional fields this request sets, by their unified names."""
        return {name for name in self.model_fields_set if name not in ("model", "prompt")} - {
            name
            for name in ("image_urls", "reference_image_urls", "reference_video_urls", "reference_audio_urls", "extra")
            if not getattr(self, name)
        }


class Output(BaseModel):
    """One stored output: where it is in the bucket and what it is."""

    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str
    url: str


class Cost(BaseModel):
    """What a job costs, in the vendor's credits or in US dollars (whichever the vendor counts in)."""

    credits: float | None = None
    usd: float | None = None


#: whether the vendor charged for a job that ended: "yes", "no", or "unknown" (its document is silent, or how the
#: job ended at the vendor is not known); budgets count "unknown" as charged
Charged = Literal["yes", "no", "unknown"]
#: how a job ended at the vendor, as far as genqueue saw it
VendorOutcome = Literal["succeeded", "failed"]


Currency = Literal["credits", "usd"]


class Budget(BaseModel):
    """At most `amount` of `currency` may be committed: to a batch's jobs, or to an API key's."""

    currency: Currency
    amount: float = Field(gt=0)


class Charge(BaseModel):
    """The bookkeeping behind `Job.cost`: what the job was estimated at, what the vendor said, what was charged.

    `estimate` is the catalog's figure at submit time; `reported` what the vendor's submit answer said it charges
    (empty when its answer carries no figure); `dialect` the vendor dialect the job was sent to (set when the
    submit is attempted); `vendor_outcome` how the vendor said the task ended. `Job.charged` and `Job.cost` are
    decided from it (shared/costs.py) once the job has ended and the vendor is done with it.
    """

    estimate: Cost = Field(default_factory=Cost)
    reported: Cost = Field(default_factory=Cost)
    dialect: str | None = None
    vendor_outcome: VendorOutcome | None = None


class JobError(BaseModel):
    """Why a job failed: an INTERFACE.md error code and a one-line message."""

    code: str
    message: str


StepName = Literal["submit", "poll", "finalize", "deliver_webhook"]


class StepRecord(BaseModel):
    """One run of a step, as the job's history keeps it: when it started, which attempt it was, what answered
    its outbound call (the vendor's HTTP status, a webhook receiver's, `transport` for no answer), how long it
    took until its outcome was written, and that outcome (the job's status, its error code or the retry, the
    next step)."""

    step: StepName
    at: datetime
    attempt: int = 0
    seconds: float
    answer: int | str | None = None
    outcome: str


#: a job's history keeps its first HISTORY_HEAD runs and its last HISTORY_LIMIT - HISTORY_HEAD (a job polled for
#: hours would otherwise grow without bound); `history_dropped` counts the runs left out between
HISTORY_LIMIT = 50
HISTORY_HEAD = 5


class Step(BaseModel):
    """The one next step of a job's task chain.

    Exactly one Celery task is meant to run it: the one whose task id is `task_id`. A task that finds another id
    here is a duplicate or a stale copy and drops itself; `lease_until` marks a run in progress.
    """

    name: StepName
    task_id: str
    due_at: datetime
    #: transient failures of this step so far, by error code (each code has its own retry budget)
    retries: dict[str, int] = Field(default_factory=dict)
    lease_until: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_stored_attempt(cls, data: Any) -> Any:
        # records written before `attempt` was derived still carry it; it always equalled the sum of `retries`
        if isinstance(data, dict) and "attempt" in data:
            data = {key: value for key, value in data.items() if key != "attempt"}
        return data

    @property
    def attempt(self) -> int:
        """How many times this step has been retried so far: the sum of `retries`."""
        return sum(self.retries.values())


class WebhookState(BaseModel):
    """Delivery of the terminal event to the job's webhook URL."""

    event_id: str
    event_type: str
    timestamp: datetime
    attempts: list[WebhookAttempt] = Field(default_factory=list)
    delivered: bool = False
    gave_up: str | None = None
    #: when the next attempt is due, while the job's step is something else (a canceled job's quiet polls)
    next_attempt_at: datetime | None = None


class WebhookAttempt(BaseModel):
    """One POST of a webhook event and what came back."""

    at: datetime
    status_code: int | None
    error: str | None = None


class RouteCandidate(BaseModel):
    """One provider of a job's route, as the latest choice saw it.

    `model` is the provider's own id of the route's model; `estimate` what the catalog (or the provider's price
    settings) says the job costs there, `estimate_usd` the same in USD (credits at the provider's
    `usd_per_credit`; None when either is unknown); `render_seconds` the mean render time this cluster has seen
    there for that model (None before the first). `skipped` says why it was not chosen (None: it was, or could be).
    """

    provider: str
    model: str
    estimate: Cost = Field(default_factory=Cost)
    estimate_usd: float | None = None
    render_seconds: float | None = None
    skipped: str | None = None


class RouteFailover(BaseModel):
    """A submit a provider refused without charging (429, 5xx, credits, its own validation): the job moved on."""

    provider: str
    code: str
    message: str
    at: datetime


class Route(BaseModel):
    """How a job sent to `--provider auto` (or to a list of providers) chooses where it goes.

    `model` is the route's canonical model (`sora-2`); `providers` the candidates the job may go to, in the route's
    order; `policy` is `cheapest`, `fastest`, or `preferred` (the order of `providers`). The latest choice:
    `candidates` (each with its estimate and, when passed over, why), `chosen` and `decided_at`. `failovers` lists
    every provider that refused the job's submit without charging; a later choice passes over those while another
    candidate remains.
    """

    model: str
    policy: Literal["cheapest", "fastest", "preferred"] = "cheapest"
    providers: list[str]
    candidates: list[RouteCandidate] = Field(default_factory=list)
    chosen: str | None = None
    decided_at: datetime | None = None
    failovers: list[RouteFailover] = Field(default_factory=list)


class Job(BaseModel):
    """A generation job as the job store keeps it."""

    id: str
    status: JobStatus = JobStatus.QUEUED
    provider: str
    provider_task_id: str | None = None
    outputs: list[Output] = Field(default_factory=list)
    #: what the job counts as costing: the estimate, the vendor's figure once it took the job, and once the job ended
    #: what was charged (0 where the vendor charged nothing); `charge` keeps the record behind it
    cost: Cost = Field(default_factory=Cost)
    #: None until decided: while the job runs, and after a cancel until the vendor reports the task ended
    charged: Charged | None = None
    error: JobError | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    batch_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    # bookkeeping: never part of the public JSON
    request: GenerationRequest
    #: a job sent to `--provider auto` (or a list): where it may go and why it went where it did; None otherwise
    route: Route | None = None
    #: the API key (shared/keys.py) the job was made with: only that key sees it, and its webhooks are signed with
    #: that key's secret. None for jobs made by the operator's own tools (the Producer, the command line)
    tenant: str | None = None
    charge: Charge = Field(default_factory=Charge)
    webhook_url: str | None = None
    idempotency_key: str | None = None
    deadline_at: datetime
    #: a batch job not submitted to its vendor by then is canceled (the batch's --deadline)
    submit_by: datetime | None = None
    step: Step | None = None
    submit_started_at: datetime | None = None
    #: the part of the vendor task's address besides its id (the gateway's path scope), as the submit used it;
    #: every poll uses it too. None for dialects that need none, and for jobs submitted before it was recorded
    provider_task_scope: str | None = None
    progress: float | None = None
    poll_count: int = 0
    output_urls: list[str] = Field(default_factory=list)
    webhook: WebhookState | None = None
    #: when the job entered each status it has been in (status value -> time), stamped by the job store
    entered_at: dict[str, datetime] = Field(default_factory=dict)
    #: the W3C trace context of the job's trace (shared/tracing.py), so every step run joins it; {} untraced
    trace_context: dict[str, str] = Field(default_factory=dict)
    #: every run of a step, oldest first (see HISTORY_LIMIT), written with the run's outcome
    history: list[StepRecord] = Field(default_factory=list)
    history_dropped: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def model(self) -> str:
        """The model the request names (stored records carry it too, for readers of the raw JSON; it is ignored)."""
        return self.request.model

    def public(self) -> dict[str, Any]:
        """The job as INTERFACE.md describes it (JobView, in its field order), ready for JSON."""
        return self.view().model_dump(mode="json")

    def view(self) -> JobView:
        """The job as callers see it."""
        return JobView.model_validate(self.model_dump(include=set(PUBLIC_FIELDS)))


class JobView(BaseModel):
    """A job as callers see it (INTERFACE.md "A job, as JSON"): `--json`, webhooks, reports and the HTTP API."""

    id: str
    status: JobStatus
    provider: str
    model: str
    provider_task_id: str | None
    outputs: list[Output]
    cost: Cost
    charged: Charged | None
    error: JobError | None
    metadata: dict[str, str]
    batch_id: str | None
    created_at: datetime
    updated_at: datetime
    route: Route | None = None


#: the fields of a Job that callers see
PUBLIC_FIELDS = frozenset(JobView.model_fields)

WebhookState.model_rebuild()
