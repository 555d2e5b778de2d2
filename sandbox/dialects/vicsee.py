"""VicSee, under `/vicsee`: `POST /api/v1/generate` and `GET /api/v1/tasks/{id}`, `Authorization: Bearer KEY`.

Shapes as in the 000/001 documents and docs/dialects.md: submit answers 200 `{"success": true, "data":
{"id", "model", "status", "creditsUsed", "creditsRemaining", "createdAt"}}`; errors `{"success": false,
"error": {"code", "message"}}`. Poll answers `{"success": true, "data": {"id", "model", "status",
"mediaType", "prompt", "createdAt", "result", "error"}}`.

Status words alternate by the task's number (its `seq`): odd tasks go `pending` -> `processing` -> `success`,
even ones `queued` -> `processing` -> `completed`, so clients meet both spellings of each page version.

Models and the credits one generation costs (only sora-2's 20 is documented; the rest are our picks):

| model | kind | credits |
|---|---|---|
| sora-2 | video | 20 |
| sora-2-pro | video | 60 |
| veo-3.1 | video | 50 |
| veo-3.1-fast | video | 30 |
| seedance-2-0-text-to-video, seedance-2-0-image-to-video | video | 30 |
| seedance-2-0-reference-to-video | video | 40 |
| happyhorse-video-edit | video | 30 |
| flux-2 | image | 5 |
| nano-banana | image | 4 |
| nano-banana-pro, nano-banana-pro-text-to-image, nano-banana-pro-image-to-image | image | 10 |

Validation: MISSING_MODEL, MISSING_PROMPT, INVALID_MODEL as documented; INVALID_OPTION (400) for an option
out of range: `duration` 10 or 15 for sora-2/sora-2-pro, 4-15 for other video models, none for image models;
`resolution` 1K/2K/4K for nano-banana-pro*; reference inputs (≤ 7 images, ≤ 3 videos, ≤ 3 audios) only for
reference-to-video models; `videoUrl` (required) and `audioSetting` (auto|origin) only for video-edit models;
video and audio inputs must be http(s) URLs, images any non-empty string (URL, data URI or base64).
A task polled with a key other than the one that created it is 403 FORBIDDEN.
"""

from __future__ import annotations

import uuid
from typing import Any

from sandbox.dialects.base import (
    Dialect,
    Request,
    Response,
    file_urls,
    is_url,
    iso,
    number,
    route,
    string_list,
)
from sandbox.files import Kind
from sandbox.state import Shortfall, Store, Task

MODELS: dict[str, tuple[Kind, int]] = {
    "sora-2": ("video", 20),
    "sora-2-pro": ("video", 60),
    "veo-3.1": ("video", 50),
    "veo-3.1-fast": ("video", 30),
    "seedance-2-0-text-to-video": ("video", 30),
    "seedance-2-0-image-to-video": ("video", 30),
    "seedance-2-0-reference-to-video": ("video", 40),
    "happyhorse-video-edit": ("video", 30),
    "flux-2": ("image", 5),
    "nano-banana": ("image", 4),
    "nano-banana-pro": ("image", 10),
    "nano-banana-pro-text-to-image": ("image", 10),
    "nano-banana-pro-image-to-image": ("image", 10),
}

_CODES = {
    400: "INVALID_OPTION",
    401: "UNAUTHORIZED",
    402: "INSUFFICIENT_CREDITS",
    403: "FORBIDDEN",
    404: "TASK_NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    429: "RATE_LIMITED",
}
_MESSAGES = {
    401: "Invalid or missing API key",
    402: "Not enough credits",
    403: "You do not have access to this task",
    404: "Task not found",
    429: "Too many requests",
}


def _fail(status: int, code: str, message: str) -> Response:
    return Response(status, {"success": False, "error": {"code": code, "message": message}})


def error(status: int, message: str | None = None) -> Response:
    """VicSee's error body for `status`: the code docs/dialects.md assigns to it, 5xx INTERNAL_ERROR."""
    code = _CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
    return _fail(status, code, message or _MESSAGES.get(status, f"HTTP {status}"))


def _check_duration(model: str, kind: Kind, value: object) -> str | None:
    if kind != "video":
        return "duration applies to video models only"
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        return "duration must be a whole number of seconds"
    if model.startswith("sora-2"):
        return None if int(value) in (10, 15) else f"duration for {model} must be 10 or 15"
    return None if 4 <= int(value) <= 15 else f"duration for {model} must be between 4 and 15"


def _check_options(model: str, kind: Kind, options: dict[str, Any]) -> str | None:
    """The first problem with `options`, or None."""
    problems: list[str | None] = []
    if options.get("duration") is not None:
        problems.append(_check_duration(model, kind, options["duration"]))
    for name in ("aspectRatio", "resolution", "outputFormat"):
        if name in options and not isinstance(options[name], str):
            problems.append(f"{name} must be a string")
    resolution = options.get("resolution")
    if model.startswith("nano-banana-pro") and resolution not in (None, "1K", "2K", "4K"):
        problems.append(f"resolution for {model} must be 1K, 2K or 4K")
    if "image" in options and not (isinstance(options["image"], str) and options["image"]):
        problems.append("image must be a URL or base64 string")
    if "imageUrls" in options and string_list(options["imageUrls"]) is None:
        problems.append("imageUrls must be a list of URLs or data URIs")
    if "audio" in options and not isinstance(options["audio"], bool):
        problems.append("audio must be true or false")
    references = {"referenceImageUrls": 7, "referenceVideoUrls": 3, "referenceAudioUrls": 3}
    for name, limit in references.items():
        if name not in options:
            continue
        items = string_list(options[name])
        if "reference-to-video" not in model:
            problems.append(f"{name} applies to reference-to-video models only")
        elif items is None or len(items) > limit:
            problems.append(f"{name} must be a list of at most {limit} items")
        elif name != "referenceImageUrls" and not all(is_url(i) for i in items):
            problems.append(f"{name} must be public https URLs")
    if "video-edit" in model:
        if not is_url(options.get("videoUrl")):
            problems.append("videoUrl (a public https URL) is required for video-edit models")
        if options.get("audioSetting", "auto") not in ("auto", "origin"):
            problems.append("audioSetting must be auto or origin")
    else:
        misplaced = [name for name in ("videoUrl", "audioSetting") if name in options]
        problems += [f"{name} applies to video-edit models only" for name in misplaced]
    return next((p for p in problems if p), None)


def _early_word(task: Task) -> str:
    return "pending" if task.seq % 2 else "queued"


def _done_word(task: Task) -> str:
    return "success" if task.seq % 2 else "completed"


def submit(req: Request, store: Store) -> Response:
    """POST /api/v1/generate."""
    body = req.json_object()
    if body is None:
        return _fail(400, "INVALID_REQUEST", "Body must be a JSON object")
    model, prompt, options = body.get("model"), body.get("prompt"), body.get("options")
    if not isinstance(model, str) or not model.strip():
        return _fail(400, "MISSING_MODEL", "No model specified")
    if not isinstance(prompt, str) or not prompt.strip():
        return _fail(400, "MISSING_PROMPT", "No prompt provided")
    if model not in MODELS:
        return _fail(400, "INVALID_MODEL", f"Model '{model}' does not exist")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        return _fail(400, "INVALID_OPTION", "options must be an object")
    kind, credits = MODELS[model]
    problem = _check_options(model, kind, options)
    if problem:
        return _fail(400, "INVALID_OPTION", problem)
    task = store.accept(
        task_id=f"task_{uuid.uuid4().hex[:24]}",
        dialect="vicsee",
        model=model,
        prompt=prompt,
        kind=kind,
        price=credits,
        api_key=req.api_key,
        options=options,
    )
    if isinstance(task, Shortfall):
        balance = number(task.balance)
        message = f"Not enough credits: this generation costs {credits}, your balance is {balance}"
        return _fail(402, "INSUFFICIENT_CREDITS", message)
    data = {
        "id": task.id,
        "model": model,
        "status": _early_word(task),
        "creditsUsed": credits,
        "creditsRemaining": number(task.balance_after),
        "createdAt": iso(task.created_at),
    }
    return Response(200, {"success": True, "data": data})


def poll(req: Request, store: Store) -> Response:
    """GET /api/v1/tasks/{id}."""
    task = store.task(req.params["id"])
    if task is None or task.dialect != "vicsee":
        return error(404)
    if task.api_key != req.api_key:
        return error(403)
    phase = task.phase()
    words = {"queued": _early_word(task), "running": "processing", "succeeded": _done_word(task)}
    result: dict[str, Any] | None = None
    failure: dict[str, str] | None = None
    if phase == "succeeded":
        urls = file_urls(task, req.host)
        result = {"url": urls[0], "type": task.kind} | ({"urls": urls} if len(urls) > 1 else {})
    elif phase == "failed":
        failure = {"code": "GENERATION_FAILED", "key": "generation_failed", "message": task.fail_reason or ""}
    data = {
        "id": task.id,
        "model": task.model,
        "status": words.get(phase, "failed"),
        "mediaType": task.kind,
        "prompt": task.prompt,
        "createdAt": iso(task.created_at),
        "result": result,
        "error": failure,
    }
    return Response(200, {"success": True, "data": data})


DIALECT = Dialect(
    name="vicsee",
    prefix="/vicsee",
    scheme="Bearer",
    routes=(
        route("POST", r"/api/v1/generate/?", "submit", submit),
        route("GET", r"/api/v1/tasks/(?P<id>[^/]+)/?", "poll", poll),
    ),
    error=error,
)
