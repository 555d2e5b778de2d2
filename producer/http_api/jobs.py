"""`/v1/jobs`: create, read (with the history of its step runs), cancel and redeliver jobs, each key seeing only
its own (any other id is 404).

A thin layer over the Producer: a request is checked and refused exactly as `genqueue submit` refuses it, before
anything is stored. An `Idempotency-Key` is scoped to the key that sends it, so two tenants cannot collide or probe
each other's keys.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel

from producer.api import JobNotFound, Producer
from producer.http_api.auth import Tenant
from producer.http_api.changes import wait_ended
from producer.http_api.problems import PROBLEM_RESPONSES, ApiProblem, not_found
from shared.batch import BatchStore
from shared.batch.models import BatchLine
from shared.keys import ApiKey
from shared.models import Job, JobStatus, JobView, StepRecord

#: jobs a page holds at most, and jobs one listing request reads at most while filtering (it then hands a cursor)
MAX_PAGE = 200
MAX_EXAMINED = 1000
#: the longest `Prefer: wait=N` honoured, in seconds
MAX_WAIT_SECONDS = 60
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+)")
#: what an Idempotency-Key may be: printable, bounded
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=PROBLEM_RESPONSES)


def producer_of(request: Request) -> Producer:
    producer: Producer = request.app.state.producer
    return producer


def owned_job(producer: Producer, key: ApiKey, job_id: str) -> Job:
    """The job if `key` made it; 404 otherwise, the same answer as for an id that does not exist."""
    try:
        job = producer.get(job_id)
    except JobNotFound:
        raise not_found(f"job {job_id!r}") from None
    if job.tenant != key.name:
        raise not_found(f"job {job_id!r}")
    return job


@router.post("", status_code=201, response_model=JobView, responses={200: {"model": JobView}})
async def create_job(
    line: BatchLine,
    key: Tenant,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    prefer: Annotated[str | None, Header()] = None,
) -> JobView:
    """Enqueue a job; 201 with it. The same `Idempotency-Key` and body again give 200 and the first job."""
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.match(idempotency_key):
        raise ApiProblem(422, "invalid_request", "Idempotency-Key must be 1-255 printable ASCII characters")
    producer = producer_of(request)
    scoped_key = f"{key.name}:{idempotency_key}" if idempotency_key else None
    enqueued = await asyncio.to_thread(producer.enqueue, line, scoped_key, key.name, key.budget)
    job = enqueued.job
    if not enqueued.created:
        response.status_code = 200
    wait = _wait_seconds(prefer)
    if wait is not None:
        job = await wait_ended(producer, request.app.state.subscriber, job, wait)
        response.headers["Preference-Applied"] = f"wait={wait}"
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job.view()


class JobPage(BaseModel):
    """A page of jobs, newest first; `next_cursor` asks for the next (None: there are no more)."""

    data: list[JobView]
    next_cursor: str | None


@router.get("", response_model=JobPage)
def list_jobs(
    key: Tenant,
    request: Request,
    status: JobStatus | None = None,
    batch: Annotated[str | None, Query(description="a batch name")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: str | None = None,
) -> JobPage:
    """The key's jobs, newest first, optionally of one status or one batch."""
    producer = producer_of(request)
    batch_id = None
    if batch is not None:
        found = BatchStore(producer.store.redis).get_by_name(batch, key.name)
        if found is None:  # get_by_name finds only the key's own
            return JobPage(data=[], next_cursor=None)
        batch_id = found.id
    before = _decode_cursor(cursor)
    chosen: list[JobView] = []
    examined = 0
    while len(chosen) < limit and examined < MAX_EXAMINED:
        page = producer.store.tenant_jobs(key.name, before, min(MAX_PAGE, MAX_EXAMINED - examined))
        if not page:
            return JobPage(data=chosen, next_cursor=None)
        for score, job_id, job in page:
            examined += 1
            before = (score, job_id)
            if (status is None or job.status is status) and (batch_id is None or job.batch_id == batch_id):
                chosen.append(job.view())
                if len(chosen) == limit:
                    break
    return JobPage(data=chosen, next_cursor=_encode_cursor(before) if before is not None else None)


@router.get("/{job_id}", response_model=JobView)
def get_job(job_id: str, key: Tenant, request: Request) -> JobView:
    """The job as it is now."""
    return owned_job(producer_of(request), key, job_id).view()


class JobHistory(BaseModel):
    """Every run of the job's steps, oldest first; `dropped` runs between the first and the last are not kept."""

    job_id: str
    history: list[StepRecord]
    dropped: int


@router.get("/{job_id}/history", response_model=JobHistory)
def get_job_history(job_id: str, key: Tenant, request: Request) -> JobHistory:
    """Each run of each step of the job: when, which try, what answered, how long it took, what it led to."""
    job = owned_job(producer_of(request), key, job_id)
    return JobHistory(job_id=job.id, history=job.history, dropped=job.history_dropped)


@router.post("/{job_id}/cancel", response_model=JobView, responses={409: PROBLEM_RESPONSES[404]})
def cancel_job(job_id: str, key: Tenant, request: Request) -> JobView:
    """Cancel a job that has not ended; 409 `conflict` if it had."""
    producer = producer_of(request)
    return cancel(producer, owned_job(producer, key, job_id)).view()


def cancel(producer: Producer, job: Job) -> Job:
    """Cancel `job` (one the caller may act on) and give it canceled; ApiProblem 409 `conflict` if it had ended."""
    if not job.status.terminal:
        job = producer.cancel(job.id)
        if job.status is JobStatus.CANCELED:
            return job
    raise ApiProblem(409, "conflict", f"job {job.id} had already ended ({job.status.value})")


@router.post("/{job_id}/webhook/redeliver", status_code=202, response_model=JobView)
def redeliver_webhook(job_id: str, key: Tenant, request: Request) -> JobView:
    """Send the job's last webhook event again, with the same `webhook-id`."""
    producer = producer_of(request)
    owned_job(producer, key, job_id)
    return producer.redeliver_webhook(job_id).view()


def _encode_cursor(position: tuple[float, str]) -> str:
    return base64.urlsafe_b64encode(f"{position[0]:.0f}:{position[1]}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[float, str] | None:
    """The position a cursor names; 422 for one this API did not make."""
    if cursor is None:
        return None
    try:
        score, _, job_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition(":")
        if not job_id:
            raise ValueError(cursor)
        return float(score), job_id
    except (ValueError, binascii.Error):
        raise ApiProblem(422, "invalid_request", "cursor: not one this API gave") from None


def _wait_seconds(prefer: str | None) -> int | None:
    """The `wait=N` preference (RFC 7240), capped at MAX_WAIT_SECONDS; None when not asked for."""
    if not prefer:
        return None
    found = _PREFER_WAIT.search(prefer)
    return None if found is None else min(int(found.group(1)), MAX_WAIT_SECONDS)
