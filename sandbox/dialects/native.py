"""Our own dialect, `sandbox`, under `/sandbox`: `POST /v1/jobs` and `GET /v1/jobs/{id}`, Bearer.

As docs/dialects.md describes it: submit `{"model", "prompt", "options": {...}}` answers 200 `{"id",
"status": "queued", "estimated_seconds", "cost_credits"}`; poll answers `{"id", "status"
queued|running|succeeded|failed, "progress" (0-100), "outputs": [url, ...] (empty until succeeded),
"error": null | "reason"}`. Errors are `{"error": {"code", "message"}}`.

Any non-empty model name is taken (the catalog's are sandbox-video, sandbox-image, sandbox-audio); what it
makes follows from the name: one containing `image` or `img` makes png images, one containing `audio`,
`music`, `speech`, `tts` or `voice` makes mp3 audio, any other mp4 video. Every option is taken; only
`options.duration`, when given, must be a positive number. Costs, in credits, as the shared catalog
estimates them: an image 1, a video 1 per second of `options.duration` (rounded up; 1 without a duration),
audio nothing.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

from sandbox.dialects.base import Dialect, Request, Response, file_urls, number, positive_number, route
from sandbox.files import Kind
from sandbox.state import Shortfall, Store

COSTS: dict[Kind, int] = {"video": 1, "image": 1, "audio": 0}

_ERRORS = {
    400: ("invalid_request", "Invalid request"),
    401: ("unauthorized", "Invalid or missing API key"),
    402: ("insufficient_credits", "Not enough credits"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Job not found"),
    405: ("method_not_allowed", "Method not allowed"),
    429: ("rate_limited", "Too many requests"),
}


def error(status: int, message: str | None = None) -> Response:
    """The native error body for `status`; 5xx are `server_error`."""
    fallback = ("server_error" if status >= 500 else "invalid_request", f"HTTP {status}")
    code, text = _ERRORS.get(status, fallback)
    return Response(status, {"error": {"code": code, "message": message or text}})


def kind_of(model: str) -> Kind:
    """What `model` makes, from its name."""
    name = model.lower()
    if "image" in name or "img" in name:
        return "image"
    if any(word in name for word in ("audio", "music", "speech", "tts", "voice")):
        return "audio"
    return "video"


def submit(req: Request, store: Store) -> Response:
    """POST /v1/jobs."""
    body = req.json_object()
    if body is None:
        return error(400, "body must be a JSON object")
    model, prompt, options = body.get("model"), body.get("prompt"), body.get("options")
    if not isinstance(model, str) or not model.strip():
        return error(400, "model is required")
    if not isinstance(prompt, str) or not prompt.strip():
        return error(400, "prompt is required")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        return error(400, "options must be an object")
    duration = options.get("duration")
    if duration is not None and not positive_number(duration):
        return error(400, "options.duration must be a positive number of seconds")
    kind = kind_of(model)
    cost = COSTS[kind] * (math.ceil(duration) if kind == "video" and duration else 1)
    task = store.accept(
        task_id=f"job_{uuid.uuid4().hex[:24]}",
        dialect="sandbox",
        model=model,
        prompt=prompt,
        kind=kind,
        price=cost,
        api_key=req.api_key,
        options=options,
    )
    if isinstance(task, Shortfall):
        return error(402, f"this job costs {cost} credits, the balance is {number(task.balance)}")
    answer = {"id": task.id, "status": "queued", "estimated_seconds": task.delay, "cost_credits": cost}
    return Response(200, answer)


def poll(req: Request, store: Store) -> Response:
    """GET /v1/jobs/{id}; another key's job is 404."""
    task = store.task(req.params["id"])
    if task is None or task.dialect != "sandbox" or task.api_key != req.api_key:
        return error(404)
    now = time.monotonic()
    phase = task.phase(now)
    answer: dict[str, Any] = {
        "id": task.id,
        "status": phase,
        "progress": task.progress(now),
        "outputs": file_urls(task, req.host) if phase == "succeeded" else [],
        "error": task.fail_reason if phase == "failed" else None,
    }
    return Response(200, answer)


DIALECT = Dialect(
    name="sandbox",
    prefix="/sandbox",
    scheme="Bearer",
    routes=(
        route("POST", r"/v1/jobs/?", "submit", submit),
        route("GET", r"/v1/jobs/(?P<id>[^/]+)/?", "poll", poll),
    ),
    error=error,
)
