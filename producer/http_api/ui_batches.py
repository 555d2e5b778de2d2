"""`/ui/batches`: the viewer's batches, newest first, and one batch: its progress, counts by status, held jobs,
spend against its budget, an ETA, a link to its jobs and a Retry failed button.

A tenant sees only its own batches, found by its own names, as `/v1/batches` finds them (`owned_batch`); the
operator sees every batch, its own by name and any by id. Retry failed takes the path of
`POST /v1/batches/{name}/retry`: the same lookup, then BatchProducer.retry_failed.

The batch page moves by polling, not by server-sent events: its script fetches the page's live part
(`/ui/batches/{name}/live`, a fragment of HTML) every second until the batch completes; the batches list fetches
its table (`/ui/batches-live`) every five seconds until every batch on it has completed. That part is the batch
summary (BatchProducer.summary: the counts by status the job store's write script keeps, the ledger, the held
counts), a handful of Redis reads whatever the batch's size; following the batch's jobs' change channels instead
would take one subscription per job, thousands for a night's batch, for each open page. A tenant's polls count
against its key's request rate like any page; the script waits out a 429's Retry-After.

The ETA is the pace so far, as `genqueue batch status` reckons it: jobs ended per minute since the batch could
start (its creation, or its not_before when later), applied to the jobs not ended yet; none before the first job
ends or while the batch cannot start. A batch reopened by a retry counts from its creation too, so its pace reads
low then.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from producer.batch import BatchProducer
from producer.http_api import jobs
from producer.http_api.ui import CurrentViewer, as_page, checked_form, render_page
from producer.http_api.ui_queries import PAGE_SIZE, batches_page, visible_batch
from producer.http_api.ui_session import Viewer
from producer.render import human_duration
from shared.batch import Batch
from shared.models import JobStatus, utcnow

#: how often the batch page asks for its live part, and the batches list for its table (a page of batch records),
#: in milliseconds (the pages' script reads them)
REFRESH_MS = 1000
LIST_REFRESH_MS = 5000
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
        live_url=f"/ui/batches/{batch.id}/live",
        refresh_ms=REFRESH_MS,
    )


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
