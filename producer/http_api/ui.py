"""`/ui`: the job dashboard, server-rendered pages over the same Producer and job store as the HTTP API.

Login with a key (producer/http_api/ui_session.py): the operator (GENQUEUE_UI_OPERATOR_KEY) sees every job and
batch and may resume providers; an API key sees only its own, exactly as `/v1/jobs` and `/v1/batches` show them,
under its request rate.
Pages: jobs (newest first, by status, provider, batch, metadata and creation time, paged), one job (live over
server-sent events, with a Cancel button that takes the API's cancel path), providers (with a Resume button that
takes `genqueue provider resume`'s path); batches (producer/http_api/ui_batches.py); webhook dead letters and
quarantined records (producer/http_api/ui_records.py). Every form posts its session's CSRF token; templates escape
everything they show (Jinja autoescape).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

import jinja2
import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from producer.api import Producer
from producer.batch import BatchProducer
from producer.http_api import jobs
from producer.http_api.changes import job_changes, jobs_changes
from producer.http_api.events import KEEPALIVE_SECONDS
from producer.http_api.problems import ApiProblem
from producer.http_api.ui_queries import PAGE_SIZE, job_filter, jobs_page, visible_job
from producer.http_api.ui_session import COOKIE, LoginRequired, Sessions, Viewer, csrf_matches
from shared import counters
from shared.errors import GenqueueError
from shared.models import Job, JobStatus
from shared.quarantine import UnreadableRecord
from shared.settings import Settings

HERE = Path(__file__).parent
#: the largest form body a `/ui` POST reads
MAX_FORM_BYTES = 16 * 1024
#: longest request value shown on a job page before it is cut
MAX_SHOWN_CHARS = 400

#: sent with every page: only this origin's scripts and styles, outputs' previews from wherever the bucket is
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https: http:; "
        "media-src 'self' https: http:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

router = APIRouter(prefix="/ui", include_in_schema=False)


class UiRefused(Exception):
    """Raised by a `/ui` route to answer with an error page: `status` and a one-line `message`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _when(value: datetime | float | None) -> str:
    if value is None:
        return "—"
    moment = datetime.fromtimestamp(value, UTC) if isinstance(value, float | int) else value.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _shown(value: object) -> str:
    text = str(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + "…"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters["when"] = _when
    env.filters["shown"] = _shown
    return env


templates = Jinja2Templates(env=_environment())


def install(app: FastAPI, settings: Settings, *pages: APIRouter) -> None:
    """Serve `/ui` (its pages, those of the routers `pages` built on this module, its stylesheet and script) from
    `app`."""
    app.state.ui_sessions = Sessions(app.state.producer.store.redis, app.state.keys, settings)
    app.include_router(router)
    for more in pages:
        app.include_router(more)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        if "text/event-stream" in request.headers.get("accept", ""):
            return PlainTextResponse("log in first", status_code=401)
        return RedirectResponse("/ui/login", status_code=303)

    @app.exception_handler(UiRefused)
    async def _refused(request: Request, exc: UiRefused) -> Response:
        return render_page(
            request, "error.html", None, status_code=exc.status, headers=exc.headers, message=exc.message
        )


def current_viewer(request: Request) -> Viewer:
    """The session's viewer; LoginRequired without one, an error page past a tenant key's request rate."""
    sessions: Sessions = request.app.state.ui_sessions
    viewer = sessions.viewer(request.cookies.get(COOKIE))
    if viewer is None:
        raise LoginRequired()
    if viewer.key is not None:
        wait = sessions.keys.admit_request(viewer.key, time.time())
        if wait > 0:
            retry_after = str(max(1, math.ceil(wait)))
            limit = viewer.key.rate_per_minute
            message = f"key {viewer.key.name} is limited to {limit} requests a minute; retry in {retry_after} s"
            raise UiRefused(429, message, {"Retry-After": retry_after})
    return viewer


CurrentViewer = Annotated[Viewer, Depends(current_viewer)]


@router.get("")
def home() -> RedirectResponse:
    return RedirectResponse("/ui/jobs", status_code=303)


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return _login_page(request, None, 200)


@router.post("/login")
async def login(request: Request) -> Response:
    """Open a session for the key the form sends; the login page again, with one line, for a wrong one, and a
    429 once the client's address has sent MAX_FAILED_LOGINS wrong keys in LOGIN_WINDOW_SECONDS (behind a proxy,
    that address is the proxy's, so the limit is shared by everyone behind it)."""
    form = await _form(request)
    sessions: Sessions = request.app.state.ui_sessions
    address = request.client.host if request.client is not None else "unknown"
    wait = await asyncio.to_thread(sessions.login_wait, address)
    if wait:
        page = _login_page(request, f"Too many wrong keys from this address; try again in {wait} s.", 429)
        page.headers["Retry-After"] = str(wait)
        return page
    token = await asyncio.to_thread(sessions.login, form.get("key", "").strip())
    if token is None:
        await asyncio.to_thread(sessions.note_failed_login, address)
        return _login_page(request, "That key is wrong or was revoked.", 401)
    response = RedirectResponse("/ui/jobs", status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(sessions.settings.ui_session_seconds),
        path="/ui",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/logout")
async def logout(request: Request, viewer: CurrentViewer) -> Response:
    await checked_form(request, viewer)
    sessions: Sessions = request.app.state.ui_sessions
    await asyncio.to_thread(sessions.logout, request.cookies.get(COOKIE))
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
    return response


@router.get("/jobs")
def jobs_list(
    request: Request,
    viewer: CurrentViewer,
    status: str = "",
    provider: str = "",
    batch: str = "",
    metadata: str = "",
    created_after: str = "",
    created_before: str = "",
    cursor: str = "",
) -> HTMLResponse:
    """The viewer's jobs, newest first, of one status, provider and batch (its name or id), with `metadata`
    `key=value`, created in [created_after, created_before) (ISO 8601, UTC without a zone), when asked."""
    producer = jobs.producer_of(request)
    filters = {
        "status": status,
        "provider": provider,
        "batch": batch,
        "metadata": metadata,
        "created_after": created_after,
        "created_before": created_before,
    }
    with as_page():
        try:
            chosen = job_filter(BatchProducer(producer), viewer, filters)
        except ValueError as exc:
            raise UiRefused(422, str(exc)) from None
    page = jobs_page(producer, viewer, chosen, cursor or None, PAGE_SIZE)
    next_url = None
    if page.next_cursor is not None:
        next_url = "/ui/jobs?" + urlencode({**{k: v for k, v in filters.items() if v}, "cursor": page.next_cursor})
    return render_page(
        request,
        "jobs.html",
        viewer,
        jobs=page.jobs,
        filters=filters,
        statuses=[member.value for member in JobStatus],
        providers=sorted({config.name for config in producer.settings.usable_providers()}),
        next_url=next_url,
        first_page=bool(cursor),
        filtered=any(filters.values()),
        newest_url="/ui/jobs?" + urlencode({k: v for k, v in filters.items() if v}),
        live_ids=",".join(job.id for job in page.jobs if not job.status.terminal),
    )


@router.get("/jobs-events")
async def jobs_list_events(request: Request, viewer: CurrentViewer, ids: str = "") -> StreamingResponse:
    """The rows of a jobs list as server-sent `row` events, for those of `ids` (comma-separated) the viewer may see
    and that have not ended: each after every change, then `end` once they all have."""
    producer = jobs.producer_of(request)
    wanted = [job_id for job_id in dict.fromkeys(ids.split(",")) if job_id][:PAGE_SIZE]

    def visible() -> list[str]:
        found = []
        for job_id in wanted:
            with contextlib.suppress(ApiProblem):
                if not visible_job(producer, viewer, job_id).status.terminal:
                    found.append(job_id)
        return found

    followed = await asyncio.to_thread(visible)
    subscriber: aioredis.Redis = request.app.state.subscriber
    return sse_response(_rows(request, producer, subscriber, followed))


async def _rows(
    request: Request, producer: Producer, subscriber: aioredis.Redis, job_ids: list[str]
) -> AsyncIterator[str]:
    pending = set(job_ids)
    sent: dict[str, str] = {}
    if pending:
        async for job in jobs_changes(producer, subscriber, job_ids, KEEPALIVE_SECONDS, request.is_disconnected):
            if job is None:
                yield ": keepalive\n\n"
                continue
            row = templates.get_template("_job_row.html").render(job=job)
            if sent.get(job.id) != row:
                sent[job.id] = row
                yield sse_event("row", row)
            if job.status.terminal:
                pending.discard(job.id)
                if not pending:
                    break
    yield sse_event("end", "")


def sse_response(events: AsyncIterator[str]) -> StreamingResponse:
    """A server-sent event stream of `events`, never cached nor buffered by a proxy on the way."""
    return StreamingResponse(
        events, media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


def sse_event(name: str, data: str) -> str:
    """A server-sent event whose data is `data`, one `data:` line per line of it."""
    return f"event: {name}\n" + "".join(f"data: {line}\n" for line in data.splitlines() or [""]) + "\n"


@router.get("/jobs/{job_id}")
def job_page(job_id: str, request: Request, viewer: CurrentViewer) -> HTMLResponse:
    """One job: what was asked, where it is, what it cost, its outputs and the history of its steps."""
    with as_page():
        job = visible_job(jobs.producer_of(request), viewer, job_id)
    return render_page(request, "job.html", viewer, job=job, options=_options(job))


@router.get("/jobs/{job_id}/events")
async def job_page_events(job_id: str, request: Request, viewer: CurrentViewer) -> StreamingResponse:
    """The job page's changing part as server-sent `fragment` events: at once, after every change, until it ends."""
    producer = jobs.producer_of(request)
    with as_page():
        await asyncio.to_thread(visible_job, producer, viewer, job_id)
    subscriber: aioredis.Redis = request.app.state.subscriber
    return sse_response(_fragments(request, viewer, producer, subscriber, job_id))


async def _fragments(
    request: Request, viewer: Viewer, producer: Producer, subscriber: aioredis.Redis, job_id: str
) -> AsyncIterator[str]:
    sent: str | None = None
    async for job in job_changes(producer, subscriber, job_id, KEEPALIVE_SECONDS, request.is_disconnected):
        if job is None:
            yield ": keepalive\n\n"
            continue
        fragment = templates.get_template("_job_live.html").render(job=job, viewer=viewer)
        if fragment != sent:
            sent = fragment
            yield sse_event("fragment", fragment)
        if job.status.terminal:
            return


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, request: Request, viewer: CurrentViewer) -> Response:
    """Cancel the job through the API's cancel (409 page if it had ended), then back to its page."""
    await checked_form(request, viewer)
    producer = jobs.producer_of(request)

    def cancel() -> None:
        with as_page():
            jobs.cancel(producer, visible_job(producer, viewer, job_id))

    await asyncio.to_thread(cancel)
    return RedirectResponse(f"/ui/jobs/{job_id}", status_code=303)


@router.get("/providers")
def providers(request: Request, viewer: CurrentViewer, resumed: str = "") -> HTMLResponse:
    """Every provider's rate, in-flight, breaker and credit hold, as `genqueue provider status` shows them, and
    its vendor answers over the last counters.RECENT_MINUTES minutes (the share that were not a 2xx)."""
    producer = jobs.producer_of(request)
    rows, now = producer.provider_status(), time.time()
    recent = counters.recent_answers(producer.store.redis, now)
    return render_page(
        request,
        "providers.html",
        viewer,
        rows=rows,
        recent=recent,
        minutes=counters.RECENT_MINUTES,
        now=now,
        resumed=resumed,
    )


@router.post("/providers/{name}/resume")
async def resume_provider(name: str, request: Request, viewer: CurrentViewer) -> Response:
    """Lift a provider's credit hold and close its breaker, as `genqueue provider resume` does (operator only)."""
    await checked_form(request, viewer)
    if not viewer.operator:
        raise UiRefused(403, "only the operator may resume a provider")
    producer = jobs.producer_of(request)
    with as_page():
        await asyncio.to_thread(producer.resume_provider, name)
    return RedirectResponse("/ui/providers?" + urlencode({"resumed": name}), status_code=303)


def render_page(
    request: Request,
    name: str,
    viewer: Viewer | None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    response: HTMLResponse = templates.TemplateResponse(
        request,
        name,
        {"viewer": viewer, **context},
        status_code=status_code,
        headers={**SECURITY_HEADERS, **(headers or {})},
    )
    return response


def _login_page(request: Request, error: str | None, status_code: int) -> HTMLResponse:
    sessions: Sessions = request.app.state.ui_sessions
    return render_page(
        request, "login.html", None, status_code=status_code, error=error, operator=sessions.admits_operator
    )


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded form a POST sends (each field's first value); an error page for anything else."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise UiRefused(415, "send the form as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise UiRefused(413, f"a form is at most {MAX_FORM_BYTES} bytes")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


async def checked_form(request: Request, viewer: Viewer) -> dict[str, str]:
    """The form, once its CSRF token is the session's; a 403 page otherwise."""
    form = await _form(request)
    if not csrf_matches(viewer, form.get("csrf")):
        raise UiRefused(403, "the form is stale or not from this page: reload it and try again")
    return form


@contextlib.contextmanager
def as_page() -> Iterator[None]:
    """The API's refusals (404 for a job or batch the viewer may not see, 409, an unknown provider) and an
    unreadable record as error pages."""
    try:
        yield
    except ApiProblem as exc:
        raise UiRefused(exc.status, exc.detail, exc.headers) from None
    except GenqueueError as exc:
        raise UiRefused(422, exc.message) from None
    except UnreadableRecord as exc:
        raise UiRefused(500, f"{exc}; the operator finds it on the quarantine page") from None


def _options(job: Job) -> dict[str, str]:
    """The request's options besides model and prompt, each as short JSON text."""
    fields = job.request.model_dump(mode="json", exclude_defaults=True, exclude={"model", "prompt"})
    return {name: _shown(json.dumps(value, ensure_ascii=False)) for name, value in fields.items()}
