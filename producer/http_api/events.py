"""`GET /v1/jobs/{id}/events`: a job's changes as server-sent events, without polling the store.

The job store publishes `"{version} {status}"` on the job's channel after every committed write (shared/store.py).
The stream subscribes first, then reads the job and sends it (`event: job.updated`, the job JSON as `data`), so a
client that connects, or reconnects, gets the job as it is now and no change falls between the read and the
subscription. After that each message is a cue to read the job again; it is sent when its JSON changed (a write
that moves only bookkeeping, such as the vendor's progress, which the job JSON does not carry, sends nothing). A
comment line goes out at least every KEEPALIVE_SECONDS, so proxies keep the connection open and a vanished client
is noticed; the stream ends after the terminal status has been sent.
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
from producer.http_api.jobs import owned_job, producer_of
from producer.http_api.problems import PROBLEM_RESPONSES
from shared.constants import JOB_EVENTS_CHANNEL
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
    channel = subscriber.pubsub(ignore_subscribe_messages=True)
    await channel.subscribe(JOB_EVENTS_CHANNEL.format(job_id=job_id))
    try:
        sent: str | None = None
        while True:
            job: Job = await asyncio.to_thread(producer.get, job_id)
            event = _event(job)
            if event != sent:
                sent = event
                yield event
            if job.status.terminal:
                return
            while (news := await _next_change(channel, request)) == "silent":
                yield ": keepalive\n\n"
            if news == "gone":
                return
    finally:
        await channel.aclose()  # type: ignore[no-untyped-call]


async def _next_change(channel: aioredis.client.PubSub, request: Request) -> str:
    """ "changed" when the job was written, "silent" after KEEPALIVE_SECONDS without, "gone" once the client left."""
    loop = asyncio.get_running_loop()
    until = loop.time() + KEEPALIVE_SECONDS
    while loop.time() < until:
        if await request.is_disconnected():
            return "gone"
        if await channel.get_message(timeout=min(1.0, until - loop.time())) is not None:
            return "changed"
    return "silent"


def _event(job: Job) -> str:
    return f"event: job.updated\ndata: {json.dumps(job.public(), separators=(',', ':'))}\n\n"
