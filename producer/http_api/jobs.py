"""`/v1/jobs`: create, read, cancel and redeliver jobs, each key seeing only its own (any other id is 404).

A thin layer over the Producer: a request is checked and refused exactly as `genqueue submit` refuses it, before
anything is stored. An `Idempotency-Key` is scoped to the key that sends it, so two tenants cannot collide or probe
each other's keys.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from producer.api import JobNotFound, Producer
from producer.http_api.auth import Tenant
from producer.http_api.problems import PROBLEM_RESPONSES, ApiProblem, not_found
from shared.batch.models import BatchLine
from shared.keys import ApiKey
from shared.models import Job, JobStatus, JobView

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
def create_job(
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
    enqueued = producer.enqueue(
        line.provider,
        line.model,
        line.prompt,
        line.options,
        line.images,
        line.webhook,
        line.metadata,
        f"{key.name}:{idempotency_key}" if idempotency_key else None,
        tenant=key.name,
    )
    job = enqueued.job
    if not enqueued.created:
        response.status_code = 200
    wait = _wait_seconds(prefer)
    if wait is not None:
        job = producer.wait(job.id, timeout=wait)
        response.headers["Preference-Applied"] = f"wait={wait}"
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job.view()


@router.get("/{job_id}", response_model=JobView)
def get_job(job_id: str, key: Tenant, request: Request) -> JobView:
    """The job as it is now."""
    return owned_job(producer_of(request), key, job_id).view()


@router.post("/{job_id}/cancel", response_model=JobView, responses={409: PROBLEM_RESPONSES[404]})
def cancel_job(job_id: str, key: Tenant, request: Request) -> JobView:
    """Cancel a job that has not ended; 409 `conflict` if it had."""
    producer = producer_of(request)
    job = owned_job(producer, key, job_id)
    if not job.status.terminal:
        job = producer.cancel(job_id)
        if job.status is JobStatus.CANCELED:
            return job.view()
    raise ApiProblem(409, "conflict", f"job {job_id} had already ended ({job.status.value})")


@router.post("/{job_id}/webhook/redeliver", status_code=202, response_model=JobView)
def redeliver_webhook(job_id: str, key: Tenant, request: Request) -> JobView:
    """Send the job's last webhook event again, with the same `webhook-id`."""
    producer = producer_of(request)
    owned_job(producer, key, job_id)
    return producer.redeliver_webhook(job_id).view()


def _wait_seconds(prefer: str | None) -> int | None:
    """The `wait=N` preference (RFC 7240), capped at MAX_WAIT_SECONDS; None when not asked for."""
    if not prefer:
        return None
    found = _PREFER_WAIT.search(prefer)
    return None if found is None else min(int(found.group(1)), MAX_WAIT_SECONDS)
