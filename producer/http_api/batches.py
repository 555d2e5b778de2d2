"""`/v1/batches`: a batch file uploaded as JSON Lines, followed, reported and retried, each key with its own names.

The same checks, budgets, windows, resume-by-name and refusal per line as `genqueue batch submit`: a body with a
refused line is refused whole (422, one entry per line) unless `skip_invalid`, and nothing is enqueued. A batch
made with a key is that key's alone: its name is the key's own (another key may use the same name), its jobs are
the key's, and they count against the key's budget, checked for the whole batch before anything is stored.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from producer.batch import REPORT_COLUMNS, BatchOptions, BatchProducer, Plan, parse_when, report_row
from producer.batch_file import parse_batch_text
from producer.http_api.auth import Tenant
from producer.http_api.jobs import producer_of
from producer.http_api.problems import PROBLEM_RESPONSES, ApiProblem, Problem, not_found
from shared.batch import Batch
from shared.errors import GenqueueError
from shared.keys import ApiKey
from shared.models import Budget

#: the largest batch body taken, in bytes (larger: split the file)
MAX_BODY_BYTES = 64 * 1024 * 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

router = APIRouter(prefix="/v1/batches", tags=["batches"], responses=PROBLEM_RESPONSES)


class RefusedLine(BaseModel):
    """One line of an uploaded batch that was refused, and why (the command line's `FILE:LINE: reason`)."""

    line: int
    detail: str


class BatchRefused(Problem):
    """A batch refused for its lines: each refused line with its reason; nothing was enqueued."""

    errors: list[RefusedLine]


class ProviderPlan(BaseModel):
    jobs: int
    credits: float | None
    usd: float | None


class BatchPlan(BaseModel):
    """What a dry run would enqueue: jobs and estimated cost per provider (None: some job has no estimate)."""

    name: str
    jobs: int
    refused: list[RefusedLine]
    providers: dict[str, ProviderPlan]


class Retried(BaseModel):
    retried: int
    batch: dict[str, Any]


def batch_producer(request: Request) -> BatchProducer:
    return BatchProducer(producer_of(request))


def owned_batch(batches: BatchProducer, key: ApiKey, name: str) -> Batch:
    """The key's batch called `name` (or with that id); 404 otherwise, as for a batch that does not exist."""
    found = batches.batches.get_by_name(name, key.name)  # only the key's own, by name or by id
    if found is None:
        raise not_found(f"batch {name!r}")
    return found


@router.post(
    "",
    status_code=201,
    response_model=dict[str, Any],
    responses={200: {"model": BatchPlan}, 422: {"model": BatchRefused, "content": {"application/problem+json": {}}}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "JSON Lines: one batch-file line (the body of POST /v1/jobs) a line",
            "content": {
                "application/x-ndjson": {
                    "schema": {"type": "array", "items": {"$ref": "#/components/schemas/BatchLine"}}
                }
            },
        }
    },
)
async def submit_batch(
    key: Tenant,
    request: Request,
    name: Annotated[str, Query(description="the batch's name; the same name again resumes it")],
    not_before: Annotated[str | None, Query(description="ISO 8601 time or a delay such as +30m")] = None,
    deadline: Annotated[str | None, Query(description="jobs not submitted by then end canceled")] = None,
    budget_credits: Annotated[float | None, Query(gt=0)] = None,
    budget_usd: Annotated[float | None, Query(gt=0)] = None,
    webhook: str | None = None,
    skip_invalid: bool = False,
    dry_run: bool = False,
) -> JSONResponse:
    """Check a whole batch (JSON Lines), then enqueue it: 201 and its summary; a dry run answers 200 and the plan."""
    declared = request.headers.get("content-length", "0")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:  # refused before a byte of it is read
        raise ApiProblem(413, "invalid_request", f"a batch body is at most {MAX_BODY_BYTES // (1024 * 1024)} MiB")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ApiProblem(413, "invalid_request", f"a batch body is at most {MAX_BODY_BYTES // (1024 * 1024)} MiB")
    options = _options(key, name, not_before, deadline, budget_credits, budget_usd, webhook)
    batches = batch_producer(request)
    try:
        text = body.decode("utf-8")
        lines = parse_batch_text(text, as_csv=False, source="the body")
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiProblem(422, "invalid_request", _one_line(exc)) from None
    plan = await asyncio.to_thread(batches.plan_lines, lines, options)
    refused = [RefusedLine(line=line, detail=detail) for line, detail in plan.refused]
    refused += _over_key_budget(batches, key, plan)
    if dry_run:
        shown = BatchPlan(name=name, jobs=len(plan.jobs), refused=refused, providers=_by_provider(plan))
        return JSONResponse(shown.model_dump(), status_code=200)
    if refused and not skip_invalid:
        return _refused(refused, len(plan.jobs) + len(plan.refused))
    if not plan.jobs:
        raise ApiProblem(422, "invalid_request", "no valid line to enqueue")
    try:
        result = await asyncio.to_thread(batches.enqueue, plan, options)
    except GenqueueError as exc:
        raise ApiProblem(422, exc.code, exc.message) from None
    return JSONResponse(batches.summary(result.batch), status_code=201, headers={"Location": f"/v1/batches/{name}"})


@router.get("/{name}", response_model=dict[str, Any])
def batch_status(name: str, key: Tenant, request: Request) -> dict[str, Any]:
    """The batch summary, as `genqueue batch status --json` gives it."""
    batches = batch_producer(request)
    return batches.summary(owned_batch(batches, key, name))


@router.get(
    "/{name}/report",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
)
def batch_report(
    name: str, key: Tenant, request: Request, format: Literal["jsonl", "csv"] = "jsonl"
) -> StreamingResponse:
    """Every job of the batch in the file's line order (JSON Lines of the job JSON, or CSV rows)."""
    batches = batch_producer(request)
    batch = owned_batch(batches, key, name)
    if format == "csv":
        return StreamingResponse(_csv_rows(batches, batch), media_type="text/csv")
    rows = (json.dumps(job.public()) + "\n" for _, job in batches.jobs(batch))
    return StreamingResponse(rows, media_type="application/x-ndjson")


@router.post("/{name}/retry", response_model=Retried)
def retry_batch(name: str, key: Tenant, request: Request) -> Retried:
    """Enqueue the batch's failed jobs again, as new jobs of the same batch (`batch retry --failed`)."""
    batches = batch_producer(request)
    retried = batches.retry_failed(owned_batch(batches, key, name))
    return Retried(retried=retried, batch=batches.summary(owned_batch(batches, key, name)))


def _options(
    key: ApiKey,
    name: str,
    not_before: str | None,
    deadline: str | None,
    budget_credits: float | None,
    budget_usd: float | None,
    webhook: str | None,
) -> BatchOptions:
    if not _NAME.match(name):
        raise ApiProblem(422, "invalid_request", "name: 1-128 letters, digits, '.', '_' or '-', from a letter or digit")
    if budget_credits is not None and budget_usd is not None:
        raise ApiProblem(422, "invalid_request", "give budget_credits or budget_usd, not both")
    budget = None
    if budget_credits is not None:
        budget = Budget(currency="credits", amount=budget_credits)
    elif budget_usd is not None:
        budget = Budget(currency="usd", amount=budget_usd)
    try:
        start = parse_when(not_before, "not_before") if not_before else None
        end = parse_when(deadline, "deadline") if deadline else None
    except ValueError as exc:
        raise ApiProblem(422, "invalid_request", str(exc)) from None
    if start and end and end <= start:
        raise ApiProblem(422, "invalid_request", "deadline must come after not_before")
    return BatchOptions(
        name=name,
        not_before=start,
        deadline=end,
        budget=budget,
        webhook_url=webhook,
        tenant=key.name,
        key_budget=key.budget,
    )


def _over_key_budget(batches: BatchProducer, key: ApiKey, plan: Plan) -> list[RefusedLine]:
    """The lines the key's budget cannot take: those with no estimate in its currency, and, when the whole batch
    would take the key past its budget, the batch as a whole (line 0)."""
    if key.budget is None:
        return []
    currency = key.budget.currency
    unpriced = [job.line for job in plan.jobs if getattr(job.cost, currency) is None]
    refused = [
        RefusedLine(line=line, detail=f"no {currency} estimate, so the key's budget cannot bound it")
        for line in unpriced
    ]
    spent = getattr(batches.producer.store.tenant_spend(key.name), currency) or 0.0
    total = sum(getattr(job.cost, currency) or 0.0 for job in plan.jobs)
    if spent + total > key.budget.amount + 1e-9:
        detail = (
            f"budget_exhausted: the batch's estimated {total:g} {currency} would take the key past its budget of"
            f" {key.budget.amount:g} {currency} ({spent:g} committed)"
        )
        refused.append(RefusedLine(line=0, detail=detail))
    return refused


def _refused(refused: list[RefusedLine], lines: int) -> JSONResponse:
    body = BatchRefused(
        title="Unprocessable Entity",
        status=422,
        detail=f"{len(refused)} of {lines} lines refused; nothing enqueued",
        code="invalid_request",
        errors=sorted(refused, key=lambda refusal: refusal.line),
    )
    return JSONResponse(body.model_dump(), status_code=422, media_type="application/problem+json")


def _by_provider(plan: Plan) -> dict[str, ProviderPlan]:
    return {
        provider: ProviderPlan(jobs=jobs, credits=credits, usd=usd)
        for provider, (jobs, credits, usd) in plan.by_provider().items()
    }


def _csv_rows(batches: BatchProducer, batch: Batch) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, REPORT_COLUMNS)
    writer.writeheader()
    for line, job in batches.jobs(batch):
        writer.writerow(report_row(line, job))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _one_line(exc: Exception) -> str:
    return "the body is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
