"""`GET /v1/jobs/{id}/events`: a job's changes as server-sent events, without polling the store.

The stream follows the job's committed writes (producer/http_api/changes.py): it sends the job at once
(`event: job.updated`, the job JSON as `data`), so a client that connects, or reconnects, gets the job as it is
now, then after each write that changed its JSON (a write that moves only bookkeeping, such as the vendor's
progress, which the job JSON does not carry, sends nothing). A comment line goes out at least every
KEEPALIVE_SECONDS, so proxies keep the connection open and a vanished client is noticed; the stream ends after the
terminal status has been sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from producer.api import Producer
from producer.http_api.auth import Tenant
from producer.http_api.changes import job_changes
from producer.http_api.jobs import owned_job, producer_of
from producer.http_api.problems import PROBLEM_RESPONSES
from shared.models import Job

#: the longest silence on a stream before a comment line
KEEPALIVE_SECONDS = 15.0

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=PROBLEM_RESPONSES)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "job.updated events"}},
)
async def job_events(job_id: str, key: Tenant, request: Request) -> StreamingResponse:
    """The job at once, then after every change, until it has ended."""
    producer = producer_of(request)
    await asyncio.to_thread(owned_job, producer, key, job_id)  # 404 before the stream starts
    subscriber: aioredis.Redis = request.app.state.subscriber
    return StreamingResponse(
        _stream(producer, subscriber, job_id, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _stream(producer: Producer, subscriber: aioredis.Redis, job_id: str, request: Request) -> AsyncIterator[str]:
    sent: str | None = None
    async for job in job_changes(producer, subscriber, job_id, KEEPALIVE_SECONDS, request.is_disconnected):
        if job is None:
            yield ": keepalive\n\n"
            continue
        event = _event(job)
        if event != sent:
            sent = event
            yield event
        if job.status.terminal:
            return


def _event(job: Job) -> str:
    return f"event: job.updated\ndata: {json.dumps(job.public(), separators=(',', ':'))}\n\n"
