"""Batches from the producer's side: check a whole file, plan it, enqueue (or resume) it, follow and report it.

A batch's jobs are stored at once but held back in Redis (no Celery message each); the dispatcher
(workers/dispatcher.py) releases them at the pace each vendor's limits allow, so they never crowd out
interactive jobs and never hold worker memory while they wait.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from producer.api import Producer
from producer.batch_file import ParsedLine, read_batch_file
from producer.validate import (
    build_request,
    check_remote_inputs,
    check_webhook_signing,
    fingerprint,
    normalized_metadata,
    validate,
)
from shared import costs, lifecycle
from shared.batch import Batch, BatchStore
from shared.batch import lifecycle as batch_lifecycle
from shared.batch.models import dispatcher_health, dispatcher_stale_after, hold_of, route_hold
from shared.batch.store import jobs_by_line
from shared.decisions import route as route_rules
from shared.errors import GenqueueError, InvalidRequest
from shared.models import Budget, Cost, GenerationRequest, Job, JobStatus, Route, utcnow
from shared.netguard import check_url
from shared.providers.catalog import estimate_cost
from shared.providers.routes import is_routed

_RELATIVE = re.compile(r"^\+?(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: the columns of a CSV batch report, one row a line of the file
REPORT_COLUMNS = [
    "line",
    "id",
    "status",
    "provider",
    "model",
    "outputs",
    "cost_credits",
    "cost_usd",
    "error_code",
    "error_message",
    "route",
]


def parse_when(value: str, option: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (a time without a zone is UTC) or a delay from now such as `+30m`, `2h`, `1d`; ValueError
    naming `option` otherwise."""
    now = now or datetime.now(UTC)
    relative = _RELATIVE.match(value.strip())
    if relative:
        return now + timedelta(seconds=float(relative.group(1)) * _UNITS[relative.group(2)])
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{option} {value!r}: give an ISO 8601 time (2026-12-01T02:00Z) or a delay such as +30m or 2h"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def report_row(line: int, job: Job) -> dict[str, object]:
    """One row of a CSV batch report: the line, its job's outcome, outputs as s3:// references, cost and error."""
    return {
        "line": line,
        "id": job.id,
        "status": job.status.value,
        "provider": job.provider,
        "model": job.model,
        "outputs": " ".join(f"s3://{o.bucket}/{o.key}" for o in job.outputs),
        "cost_credits": "" if job.cost.credits is None else job.cost.credits,
        "cost_usd": "" if job.cost.usd is None else job.cost.usd,
        "error_code": job.error.code if job.error else "",
        "error_message": job.error.message if job.error else "",
        "route": "" if job.route is None else route_summary(job.route),
    }


def route_summary(route: Route) -> str:
    """A routed job's route in one cell: model, policy, the choice, each provider passed over or that refused."""
    passed = [f"{found.provider}: {found.skipped}" for found in route.candidates if found.skipped is not None]
    refused = [f"{failover.provider} refused: {failover.code}" for failover in route.failovers]
    return "; ".join([f"{route.model} {route.policy}: {route.chosen or 'not chosen yet'}", *passed, *refused])


@dataclass(frozen=True)
class PlannedJob:
    """A batch line checked completely: what its job will be."""

    line: int
    provider: str
    request: GenerationRequest
    cost: Cost
    webhook_url: str | None
    metadata: dict[str, str]
    #: sent to a route: as planned now (`provider` and `request` are the chosen candidate's); its submit re-decides
    route: Route | None = None

    @property
    def fingerprint(self) -> str:
        """What identifies the line's request: for a route, the route and the canonical request, not where it is
        planned to go now (a resume must not take a change of prices for a changed line)."""
        if self.route is None:
            return fingerprint(self.provider, self.request, self.webhook_url, self.metadata)
        route, canonical = self.route, self.request.model_copy(update={"model": self.route.model})
        spec = f"route:{route.policy}:{','.join(route.providers)}"
        return fingerprint(spec, canonical, self.webhook_url, self.metadata)


@dataclass
class Plan:
    """A batch file checked: the jobs it makes, the lines refused (line number, reason), and what it costs."""

    jobs: list[PlannedJob] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)

    def by_provider(self) -> dict[str, tuple[int, float | None, float | None]]:
        """provider -> (jobs, credits estimate, USD estimate); an estimate is None when any job's is unknown. Lines
        sent to a route are counted under `auto MODEL: A/B` at their dearest candidate's USD estimate, the most
        each may cost wherever its submit sends it (credits unknown: they may go to a USD-billed provider)."""
        rows: dict[str, list[Cost]] = defaultdict(list)
        for job in self.jobs:
            if job.route is None:
                rows[job.provider].append(job.cost)
            else:
                route = job.route
                rows[f"auto {route.model}: {'/'.join(route.providers)}"].append(
                    Cost(usd=route_rules.dearest_usd(route))
                )
        return {
            name: (len(costs), _sum(c.credits for c in costs), _sum(c.usd for c in costs))
            for name, costs in sorted(rows.items())
        }


@dataclass(frozen=True)
class BatchOptions:
    """The options of `genqueue batch submit`."""

    name: str
    not_before: datetime | None = None
    deadline: datetime | None = None
    budget: Budget | None = None
    webhook_url: str | None = None
    #: the API key the batch is made with (its name is the key's own, its jobs are the key's and count against
    #: `key_budget`); None for the operator's command line
    tenant: str | None = None
    key_budget: Budget | None = None


@dataclass(frozen=True)
class EnqueueResult:
    """What `enqueue` did: the batch, whether it was new, lines enqueued now and lines found enqueued before."""

    batch: Batch
    created: bool
    enqueued: int
    already: int


class BatchProducer:
    """Submit, follow, report and retry batches. Uses a Producer for the jobs themselves."""

    def __init__(self, producer: Producer | None = None) -> None:
        self.producer = producer or Producer()
        self.settings = self.producer.settings
        self.batches = BatchStore(self.producer.store.redis)

    def plan(self, path: Path, options: BatchOptions) -> Plan:
        """Check every line of the file at `path` as `genqueue submit` would; ValueError if the file is unreadable."""
        return self.plan_lines(read_batch_file(path), options)

    def plan_lines(self, lines: list[ParsedLine], options: BatchOptions) -> Plan:
        """Check every parsed line of a batch file as `genqueue submit` would (the HTTP API's upload too)."""
        check = _cached_validator(self, signed_by_key=options.tenant is not None)
        if options.webhook_url is not None:
            if options.tenant is None:
                check_webhook_signing(self.settings)
            check_url(
                options.webhook_url, self.settings.allow_private_urls, "--webhook", self.settings.private_url_allowlist
            )
        plan = Plan()
        for parsed in lines:
            planned = self._plan_line(parsed, options, check)
            if isinstance(planned, PlannedJob):
                plan.jobs.append(planned)
            else:
                plan.refused.append((parsed.number, planned))
        return plan

    def _plan_line(
        self, parsed: ParsedLine, options: BatchOptions, check: Callable[[str, GenerationRequest, str | None], Cost]
    ) -> PlannedJob | str:
        if parsed.line is None:
            return parsed.error or "unreadable"
        line = parsed.line
        webhook = line.webhook or options.webhook_url
        provider, route = line.provider, None
        try:
            request = build_request(line.model, line.prompt, line.options, line.images)
            if options.tenant is not None:
                check_remote_inputs(request)
            metadata = normalized_metadata(line.metadata)
            if is_routed(provider):
                route = self._plan_route(provider, request, line.route_policy, options)
                chosen = route_rules.chosen_candidate(route)
                provider, request = chosen.provider, request.model_copy(update={"model": chosen.model})
            cost = check(provider, request, webhook)
        except GenqueueError as exc:
            return exc.message
        if options.budget is not None and route is None and self._unbounded(provider, cost, options.budget):
            return (
                f"no {options.budget.currency} estimate for {line.provider} {line.model}, so a "
                f"--budget-{options.budget.currency} cannot bound it"
            )
        return PlannedJob(parsed.number, provider, request, cost, webhook, metadata, route)

    def _unbounded(self, provider: str, cost: Cost, budget: Budget) -> bool:
        """Whether `budget` cannot bound a job of `provider` estimated at `cost`: no estimate in its currency (in
        USD, credits count at the provider's USD_PER_CREDIT)."""
        if budget.currency == "usd":
            return costs.in_usd(cost, self.settings.provider(provider).usd_per_credit) is None
        return getattr(cost, budget.currency) is None

    def _plan_route(self, provider: str, request: GenerationRequest, policy: str, options: BatchOptions) -> Route:
        """The route of a line sent to `auto` or a provider list (route_rules.plan), checked against the batch's
        budget: one in USD bounds it by its dearest candidate; credits of different vendors do not compare."""
        if options.key_budget is not None:  # as Producer.submit_line refuses it
            raise InvalidRequest("a key with a budget cannot send jobs to auto or a provider list; name one")
        if options.budget is not None and options.budget.currency != "usd":
            raise InvalidRequest(
                f"provider {provider!r}: a line sent to a route needs --budget-usd (credits of different vendors"
                " do not compare)"
            )
        route = route_rules.plan(provider, request, policy, self.settings)
        if options.budget is None:
            return route
        for found in route_rules.choosable(route):
            if found.estimate_usd is None:
                raise InvalidRequest(
                    f"no usd estimate for {found.provider} {found.model} (route {route.model}), so a --budget-usd"
                    " cannot bound it: set its USD_PER_CREDIT"
                )
        return route

    def enqueue(
        self, plan: Plan, options: BatchOptions, on_progress: Callable[[int], None] | None = None
    ) -> EnqueueResult:
        """Create the batch (or resume the one with this name) and store every planned job, held for the dispatcher.

        Lines enqueued by an earlier run of the same batch are not enqueued again; a line whose request changed
        since is refused with InvalidRequest naming it, before anything new is stored.
        """
        make = functools.partial(_new_batch, options=options)
        batch, created = self.batches.open(options.name, make, options.tenant)
        self.batches.keep(batch)  # a completed batch's keys were set to expire: it runs again
        providers = {job.provider for job in plan.jobs if job.route is None}
        routes = {route_hold(job.route): job.route.providers for job in plan.jobs if job.route is not None}
        # the total is known before any job is stored, so the dispatcher cannot complete the batch half-enqueued
        known = {line for line, _ in self.batches.line_jobs(batch.id)}
        total = len(known | {job.line for job in plan.jobs})

        def resume(current: Batch) -> Batch:
            new = batch_lifecycle.reopen(current, total, new_event=False)
            if not created:
                new.not_before, new.deadline = options.not_before, options.deadline
                new.budget, new.webhook_url = options.budget, options.webhook_url
            new.providers = sorted(set(current.providers) | providers)
            new.routes = current.routes | routes
            return new

        batch = self._update(batch.id, resume)
        enqueued = already = 0
        try:
            for done, job in enumerate(plan.jobs, start=1):
                if self._enqueue_line(batch, job, options.key_budget):
                    enqueued += 1
                else:
                    already += 1
                if on_progress is not None:
                    on_progress(done)
        except BaseException:
            stored = len(self.batches.line_jobs(batch.id))
            self.batches.update(batch.id, lambda current: current.model_copy(update={"total": stored}))
            raise
        finally:
            self.batches.activate(batch.id)
        return EnqueueResult(batch, created, enqueued, already)

    def _enqueue_line(self, batch: Batch, planned: PlannedJob, key_budget: Budget | None = None) -> bool:
        """Store one line's job, held; False when an earlier run stored it (it is held again if it was never
        released, in case that run died between storing and holding it).

        The line is claimed first (shared/claims.py): a claim left by a run that died before storing its job is
        taken over after a few seconds, and a run that stalled past that cannot store a second job for the line.
        """
        job_id = f"job_{uuid.uuid4().hex}"
        slot = self.batches.line_slot(batch.id, planned.line)

        def create() -> Job:
            return self.producer.create_job(
                job_id,
                planned.provider,
                planned.request,
                planned.cost,
                planned.webhook_url,
                planned.metadata,
                batch_id=batch.id,
                submit_by=batch.deadline,
                held=True,
                claim=slot,
                tenant=batch.tenant,
                budget=key_budget,
                route=planned.route,
            )

        claims = self.batches.claims
        job, created = claims.claim_and_create(slot, job_id, planned.fingerprint, self.producer.store.get, create)
        if created or (job.status is JobStatus.QUEUED and job.step is None):
            self.batches.hold(batch.id, hold_of(job), job.id, planned.line)
        return created

    def get(self, name: str, tenant: str | None = None) -> Batch:
        """The batch called `name` (or with that id) of `tenant` (None: the operator's); InvalidRequest when there is
        none."""
        batch = self.batches.get_by_name(name, tenant)
        if batch is None:
            raise InvalidRequest(f"no batch named {name!r}")
        return batch

    def summary(self, batch: Batch) -> dict[str, Any]:
        """Counts by status, jobs still held, committed cost, and whether held jobs wait for a dispatcher that is
        not running: what `batch status` shows."""
        held = self.batches.held_count(batch.id, batch.holds)
        stale_after = dispatcher_stale_after(
            self.settings.dispatch_interval_seconds, self.settings.dispatch_task_seconds
        )
        health = dispatcher_health(self.batches.dispatcher_last_run(), held, utcnow(), stale_after, batch.created_at)
        return batch.summary(self.batches.counts(batch.id), self.batches.ledger(batch.id), held, health)

    def jobs(self, batch: Batch, on_unreadable: Callable[[int, str], None] | None = None) -> Iterator[tuple[int, Job]]:
        """(line number, job) for every enqueued line, in the file's line order; `on_unreadable(line, job_id)` hears
        of a line whose job cannot be read (it is quarantined and skipped)."""
        return jobs_by_line(self.batches, self.producer.store, batch.id, on_unreadable=on_unreadable)

    def retry_failed(self, batch: Batch) -> int:
        """Enqueue every failed job of the batch again as a new job of the same batch; how many.

        Each new job's metadata names the job it retries; a failed job is retried once per call of this.
        """
        lines = self.batches.line_jobs(batch.id)
        failed = [
            (line, job)
            for line, job in self.jobs(batch)
            if job.status is JobStatus.FAILED and "genqueue_retried_as" not in job.metadata
        ]
        if not failed:
            return 0
        next_line = max((line for line, _ in lines), default=0) + 1
        total = len(lines) + len(failed)
        self.batches.keep(batch)
        batch = self._update(batch.id, lambda current: batch_lifecycle.reopen(current, total, new_event=True))
        for offset, (line, job) in enumerate(failed):
            metadata = dict(job.metadata) | {"genqueue_retry_of": job.id, "genqueue_line": str(line)}
            planned = self._retry_of(next_line + offset, job, metadata)
            self._enqueue_line(batch, planned)
            self.producer.store.update(job.id, functools.partial(lifecycle.mark_retried, line=planned.line))
        self.batches.activate(batch.id)
        return len(failed)

    def _retry_of(self, line: int, job: Job, metadata: dict[str, str]) -> PlannedJob:
        """The line that retries failed `job`: the same request to the same provider, or for a routed job its
        route planned afresh (the providers that refused it before may take it now)."""
        if job.route is None:
            cost = estimate_cost(job.provider, job.request)
            return PlannedJob(line, job.provider, job.request, cost, job.webhook_url, metadata)
        canonical = job.request.model_copy(update={"model": job.route.model})
        route = route_rules.plan(",".join(job.route.providers), canonical, job.route.policy, self.settings)
        chosen = route_rules.chosen_candidate(route)
        request = canonical.model_copy(update={"model": chosen.model})
        return PlannedJob(line, chosen.provider, request, chosen.estimate, job.webhook_url, metadata, route)

    def _update(self, batch_id: str, change: Callable[[Batch], Batch]) -> Batch:
        """Write `change` to the batch (BatchStore.update); InvalidRequest when the batch is gone (it expired)."""
        written = self.batches.update(batch_id, change)
        if written is None:
            raise InvalidRequest(f"batch {batch_id} no longer exists")
        return written


def _new_batch(batch_id: str, options: BatchOptions) -> Batch:
    return Batch(
        id=batch_id,
        name=options.name,
        not_before=options.not_before,
        deadline=options.deadline,
        budget=options.budget,
        webhook_url=options.webhook_url,
        tenant=options.tenant,
    )


def _sum(values: Iterator[float | None]) -> float | None:
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value
    return total


def _cached_validator(
    batches: BatchProducer, signed_by_key: bool
) -> Callable[[str, GenerationRequest, str | None], Cost]:
    """`validate` for many lines: each distinct webhook URL is resolved once, not once a line. `signed_by_key`: the
    jobs' webhooks are signed with their API key's secret, not the settings' one."""
    check_webhook = _cached_check(batches.settings.allow_private_urls, batches.settings.private_url_allowlist)

    def check(provider: str, request: GenerationRequest, webhook: str | None) -> Cost:
        if webhook is not None:
            if not signed_by_key:
                check_webhook_signing(batches.settings)
            check_webhook(webhook)
        return validate(batches.settings, provider, request, None)[1]

    return check


def _cached_check(allow_private: bool, allowlist: list[str]) -> Callable[[str], None]:
    """check_url for webhook URLs, remembering each URL's verdict (refusals included)."""
    verdicts: dict[str, str | None] = {}

    def check(url: str) -> None:
        if url not in verdicts:
            try:
                check_url(url, allow_private, "webhook URL", allowlist)
                verdicts[url] = None
            except InvalidRequest as exc:
                verdicts[url] = exc.message
        if (reason := verdicts[url]) is not None:
            raise InvalidRequest(reason)

    return check
