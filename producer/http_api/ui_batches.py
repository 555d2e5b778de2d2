"""`/ui/batches`: the viewer's batches, newest first, and one batch: its progress, counts by status, held jobs,
spend against its budget, an ETA, a link to its jobs and a Retry failed button.

A tenant sees only its own batches, found by its own names, as `/v1/batches` finds them (`owned_batch`); the
operator sees every batch, its own by name and any by id. Retry failed takes the path of
`POST /v1/batches/{name}/retry`: the same lookup, then BatchProducer.retry_failed.

The batch page follows the batch's change stream over server-sent events (`/ui/batches/{name}/events`): one
channel per batch, told by the job store's write script whenever one of its jobs changes status and by the batch
store whenever the batch's record is written (shared/constants.py BATCH_EVENTS_CHANNEL), so an open page holds one
subscription whatever the batch's size. Changes within SETTLE_SECONDS of each other are sent as one fragment (the
batch summary, a handful of Redis reads), so a batch whose jobs end hundreds a second costs a few reads a second.
`/ui/batches/{name}/live` gives the same part on request. The batches list fetches its table (`/ui/batches-live`)
every five seconds until every batch on it has completed; a tenant's polls count against its key's request rate
like any page, and the script waits out a 429's Retry-After.

The ETA is the pace so far, as `genqueue batch status` reckons it: jobs ended per minute since the batch could
start (its creation, or its not_before when later), applied to the jobs not ended yet; none before the first job
ends or while the batch cannot start. A batch reopened by a retry counts from its creation too, so its pace reads
low then.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import redis.asyncio as aioredis
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from producer.batch import BatchProducer
from producer.http_api import jobs
from producer.http_api.changes import batch_changes
from producer.http_api.events import KEEPALIVE_SECONDS
from producer.http_api.ui import CurrentViewer, as_page, checked_form, render_page, sse_event, sse_response, templates
from producer.http_api.ui_queries import PAGE_SIZE, batches_page, visible_batch
from producer.http_api.ui_session import Viewer
from producer.render import human_duration
from shared.batch import Batch
from shared.models import JobStatus, utcnow

#: how often the batches list asks for its table (a page of batch records), in milliseconds (the page's script
#: reads it)
LIST_REFRESH_MS = 5000
#: a batch page's changes within this many seconds of the first are sent as one
SETTLE_SECONDS = 0.25
#: the statuses in lifecycle order, as a batch's counts are shown
STATUS_ORDER = [status.value for status in JobStatus]

router = APIRouter(prefix="/ui", include_in_schema=False)


@dataclass(frozen=True)
class BatchProgress:
    """How far a batch is: jobs ended of its total, the pace so far (None: not known yet) and what it implies."""

    ended: int
    total: int
    percent: float
    per_minute: float | None
    eta_seconds: float | None
    #: since when the pace is counted
    since: datetime

    @property
    def eta_text(self) -> str | None:
        return None if self.eta_seconds is None else human_duration(self.eta_seconds)


def progress_of(batch: Batch, summary: dict[str, Any], now: datetime) -> BatchProgress:
    """The batch's progress from its summary (BatchProducer.summary) at `now`."""
    ended, total = int(summary["ended"]), int(summary["total"])
    since = max(batch.created_at, batch.not_before) if batch.not_before else batch.created_at
    elapsed = (now - since).total_seconds()
    percent = 100.0 * ended / total if total else 0.0
    per_minute = eta = None
    if ended and elapsed > 0:
        per_minute = 60.0 * ended / elapsed
        if not summary["completed_at"] and ended < total:
            eta = (total - ended) * elapsed / ended
    return BatchProgress(ended, total, percent, per_minute, eta, since)


@router.get("/batches")
def batches_list(request: Request, viewer: CurrentViewer, cursor: str = "") -> HTMLResponse:
    """The viewer's batches, newest first, each with its progress, counts and spend."""
    rows, next_cursor = _rows(request, viewer, cursor)
    return render_page(
        request,
        "batches.html",
        viewer,
        rows=rows,
        order=STATUS_ORDER,
        next_url=None if next_cursor is None else "/ui/batches?" + urlencode({"cursor": next_cursor}),
        first_page=bool(cursor),
        live_url="/ui/batches-live?" + urlencode({"cursor": cursor}),
        refresh_ms=LIST_REFRESH_MS,
    )


@router.get("/batches-live")
def batches_list_live(request: Request, viewer: CurrentViewer, cursor: str = "") -> HTMLResponse:
    """The batches list's table alone, as HTML, for the page of `cursor`."""
    rows, _ = _rows(request, viewer, cursor)
    return render_page(request, "_batches_table.html", viewer, rows=rows, order=STATUS_ORDER)


def _rows(request: Request, viewer: Viewer, cursor: str) -> tuple[list[dict[str, Any]], str | None]:
    batches = BatchProducer(jobs.producer_of(request))
    page = batches_page(batches, viewer, cursor or None, PAGE_SIZE)
    now = utcnow()
    rows = []
    for batch in page.batches:
        summary = batches.summary(batch)
        rows.append({"batch": batch, "summary": summary, "progress": progress_of(batch, summary, now)})
    return rows, page.next_cursor


@router.get("/batches/{name}")
def batch_page(name: str, request: Request, viewer: CurrentViewer, retried: str = "") -> HTMLResponse:
    """One batch: what it is (times, budget, webhook), then its live part (`_live`)."""
    batches = BatchProducer(jobs.producer_of(request))
    with as_page():
        batch = visible_batch(batches, viewer, name)
    return render_page(
        request,
        "batch.html",
        viewer,
        **_live(batches, batch, viewer),
        retried=retried,
        events_url=f"/ui/batches/{batch.id}/events",
    )


@router.get("/batches/{name}/events")
async def batch_page_events(name: str, request: Request, viewer: CurrentViewer) -> StreamingResponse:
    """The batch page's changing part as server-sent `fragment` events: at once, after its changes (at most one
    every SETTLE_SECONDS), until the batch has completed."""
    batches = BatchProducer(jobs.producer_of(request))

    def find() -> Batch:
        with as_page():
            return visible_batch(batches, viewer, name)

    batch = await asyncio.to_thread(find)
    subscriber: aioredis.Redis = request.app.state.subscriber
    return sse_response(_fragments(request, viewer, batches, subscriber, batch.id))


async def _fragments(
    request: Request, viewer: Viewer, batches: BatchProducer, subscriber: aioredis.Redis, batch_id: str
) -> AsyncIterator[str]:
    sent: str | None = None
    changes = batch_changes(subscriber, batch_id, KEEPALIVE_SECONDS, SETTLE_SECONDS, request.is_disconnected)
    async for changed in changes:
        if not changed:
            yield ": keepalive\n\n"
            continue
        batch = await asyncio.to_thread(batches.batches.get, batch_id)
        if batch is None:  # expired meanwhile
            return
        live = await asyncio.to_thread(_live, batches, batch, viewer)
        fragment = templates.get_template("_batch_live.html").render(viewer=viewer, **live)
        if fragment != sent:
            sent = fragment
            yield sse_event("fragment", fragment)
        if batch.completed_at is not None:
            return


@router.get("/batches/{name}/live")
def batch_live(name: str, request: Request, viewer: CurrentViewer) -> HTMLResponse:
    """The batch page's changing part alone, as HTML: progress, ETA, counts by status, held, spend."""
    batches = BatchProducer(jobs.producer_of(request))
    with as_page():
        batch = visible_batch(batches, viewer, name)
    return render_page(request, "_batch_live.html", viewer, **_live(batches, batch, viewer))


def _live(batches: BatchProducer, batch: Batch, viewer: Viewer) -> dict[str, Any]:
    summary = batches.summary(batch)
    counts: dict[str, int] = summary["counts"]
    now = utcnow()
    return {
        "batch": batch,
        "summary": summary,
        "progress": progress_of(batch, summary, now),
        "waiting": batch.not_before is not None and batch.not_before > now and not batch.completed_at,
        "counts": [(status, counts[status]) for status in STATUS_ORDER if counts.get(status)],
        "failed": counts.get(JobStatus.FAILED.value, 0),
        "jobs_url": "/ui/jobs?" + urlencode({"batch": batch.id}),
        "failed_url": "/ui/jobs?" + urlencode({"batch": batch.id, "status": JobStatus.FAILED.value}),
    }


@router.post("/batches/{name}/retry")
async def retry_batch(name: str, request: Request, viewer: CurrentViewer) -> Response:
    """Enqueue the batch's failed jobs again (`POST /v1/batches/{name}/retry`), then back to its page, saying how
    many."""
    await checked_form(request, viewer)
    batches = BatchProducer(jobs.producer_of(request))

    def retry() -> tuple[Batch, int]:
        with as_page():
            batch = visible_batch(batches, viewer, name)
            return batch, batches.retry_failed(batch)

    batch, count = await asyncio.to_thread(retry)
    return RedirectResponse(f"/ui/batches/{batch.id}?" + urlencode({"retried": count}), status_code=303)
