"""The generic gateway, under `/gateway`: `POST /v2/{scope}/generations`, `GET .../generations/{task_id}`.

As in the 003 document and docs/dialects.md: Bearer auth; scope `images`, `videos` or `audio` decides what a
task makes (png, mp4, mp3); `prompt` and `model` are required (any model name is taken); `images` is a list
of URLs or base64 strings, `videos` a list of http(s) URLs; other keys pass through. Submit answers 200
`{"task_id"}`. Poll answers `{"task_id", "platform", "action", "status" NOT_START|IN_PROGRESS|SUCCESS|FAILURE,
"fail_reason", "submit_time", "start_time", "finish_time", "progress": "NN%", "data"}`; `data` is `{}` until
success, then `{"output": first URL, "outputs": [all URLs]}`. Times are unix seconds, 0 until reached.

Generation is free (no cost in the answers). The gateway keeps a quota balance all the same: set it to 0
with /_control/balance and submits answer 402 `insufficient_quota`. A task is found under any valid scope.
Errors are `{"error": {"message", "type", "code"}}` with the codes docs/dialects.md lists.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sandbox.dialects.base import (
    Dialect,
    Request,
    Response,
    file_urls,
    is_url,
    positive_number,
    route,
    string_list,
)
from sandbox.files import Kind
from sandbox.state import Shortfall, Store

SCOPES: dict[str, Kind] = {"images": "image", "videos": "video", "audio": "audio"}

_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("invalid_request", "invalid_request_error", "Invalid request"),
    401: ("invalid_api_key", "authentication_error", "Invalid or missing API key"),
    402: ("insufficient_quota", "insufficient_quota", "You have exceeded your quota"),
    403: ("forbidden", "permission_error", "Access denied"),
    404: ("task_not_found", "invalid_request_error", "Task not found"),
    405: ("method_not_allowed", "invalid_request_error", "Method not allowed"),
    429: ("rate_limit_exceeded", "rate_limit_error", "Rate limit exceeded, retry later"),
}


def error(status: int, message: str | None = None) -> Response:
    """The gateway's OpenAI-like error body for `status`; 5xx are `server_error`."""
    code, kind, text = _ERRORS.get(status, ("server_error", "server_error", "Internal server error"))
    if status < 500 and status not in _ERRORS:
        code, kind, text = "invalid_request", "invalid_request_error", f"HTTP {status}"
    return Response(status, {"error": {"message": message or text, "type": kind, "code": code}})


def _problem(scope: str, body: dict[str, Any]) -> str | None:
    if scope not in SCOPES:
        return f"scope must be images, videos or audio, not {scope!r}"
    for name in ("prompt", "model"):
        if not isinstance(body.get(name), str) or not body[name].strip():
            return f"{name} is required"
    if body.get("images") is not None and string_list(body["images"]) is None:
        return "images must be a list of URLs or base64 strings"
    videos = body.get("videos")
    if videos is not None and not (string_list(videos) is not None and all(is_url(v) for v in videos)):
        return "videos must be a list of URLs"
    duration = body.get("duration")
    if duration is not None and not positive_number(duration):
        return "duration must be a positive number"
    return None


def submit(req: Request, store: Store) -> Response:
    """POST /v2/{scope}/generations."""
    body = req.json_object()
    scope = req.params["scope"]
    if body is None:
        return error(400, "request body must be a JSON object")
    problem = _problem(scope, body)
    if problem:
        return error(400, problem)
    options = {k: v for k, v in body.items() if k not in ("model", "prompt")} | {"scope": scope}
    task = store.accept(
        task_id=str(uuid.uuid4()),
        dialect="gateway",
        model=body["model"],
        prompt=body["prompt"],
        kind=SCOPES[scope],
        price=0.0,
        api_key=req.api_key,
        options=options,
        params={"scope": scope},
    )
    if isinstance(task, Shortfall):
        return error(402)
    return Response(200, {"task_id": task.id})


def poll(req: Request, store: Store) -> Response:
    """GET /v2/{scope}/generations/{task_id}; another key's task is 404."""
    task = store.task(req.params["id"])
    if req.params["scope"] not in SCOPES:
        return error(404, f"unknown scope {req.params['scope']!r}")
    if task is None or task.dialect != "gateway" or task.api_key != req.api_key:
        return error(404)
    now = time.monotonic()
    phase = task.phase(now)
    status = {"queued": "NOT_START", "running": "IN_PROGRESS", "succeeded": "SUCCESS"}.get(phase, "FAILURE")
    data: dict[str, Any] = {}
    if phase == "succeeded":
        urls = file_urls(task, req.host)
        data = {"output": urls[0], "outputs": urls}
    ended = phase in ("succeeded", "failed")
    answer = {
        "task_id": task.id,
        "platform": "sandbox",
        "action": f"sandbox-{task.params['scope']}",
        "status": status,
        "fail_reason": task.fail_reason if phase == "failed" else "",
        "submit_time": int(task.created_at),
        "start_time": int(task.started_at) if phase != "queued" else 0,
        "finish_time": int(task.finished_at) if ended else 0,
        "progress": f"{task.progress(now)}%",
        "data": data,
    }
    return Response(200, answer)


DIALECT = Dialect(
    name="gateway",
    prefix="/gateway",
    scheme="Bearer",
    routes=(
        route("POST", r"/v2/(?P<scope>[^/]+)/generations/?", "submit", submit),
        route("GET", r"/v2/(?P<scope>[^/]+)/generations/(?P<id>[^/]+)/?", "poll", poll),
    ),
    error=error,
)
