"""`/ui/webhooks/dead` and `/ui/quarantine`: jobs whose webhook event was given up on, each with a Redeliver
button, and the records set aside because they could not be read.

Dead letters are what `genqueue webhooks dead` lists (Producer.dead_letters, newest first); a tenant sees only its
own jobs among them, since `POST /v1/jobs/{id}/webhook/redeliver` lets a key redeliver its own jobs' events. The
Redeliver button takes that path: the same lookup of the job (404 for one the viewer may not see), then
Producer.redeliver_webhook, which lifts a 410 block on the endpoint and sends the event again with the same
`webhook-id`. Quarantined records are what `genqueue quarantine list` lists: operator only, as that command is
(an unreadable record cannot say whose it is), and read-only here.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from producer.http_api import jobs
from producer.http_api.ui import CurrentViewer, UiRefused, as_page, checked_form, render_page
from producer.http_api.ui_queries import visible_job

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/webhooks/dead")
def dead_letters(request: Request, viewer: CurrentViewer, redelivered: str = "") -> HTMLResponse:
    """The viewer's jobs whose webhook event was given up on after the whole retry schedule, newest first."""
    found = jobs.producer_of(request).dead_letters()
    if viewer.key is not None:
        found = [job for job in found if job.tenant == viewer.key.name]
    return render_page(request, "dead_letters.html", viewer, jobs=found, redelivered=redelivered)


@router.post("/jobs/{job_id}/webhook/redeliver")
async def redeliver(job_id: str, request: Request, viewer: CurrentViewer) -> Response:
    """Send the job's last webhook event again (`POST /v1/jobs/{id}/webhook/redeliver`); then back to the dead
    letters, or to the job's page when the form says `back=job`."""
    form = await checked_form(request, viewer)
    producer = jobs.producer_of(request)

    def send() -> None:
        with as_page():
            visible_job(producer, viewer, job_id)
            producer.redeliver_webhook(job_id)

    await asyncio.to_thread(send)
    if form.get("back") == "job":
        return RedirectResponse(f"/ui/jobs/{job_id}", status_code=303)
    return RedirectResponse("/ui/webhooks/dead?" + urlencode({"redelivered": job_id}), status_code=303)


@router.get("/quarantine")
def quarantine(request: Request, viewer: CurrentViewer) -> HTMLResponse:
    """Every record set aside as unreadable, oldest first, with the reason (operator only)."""
    if not viewer.operator:
        raise UiRefused(403, "only the operator may see quarantined records")
    records = jobs.producer_of(request).store.quarantine.records()
    return render_page(request, "quarantine.html", viewer, records=records)
