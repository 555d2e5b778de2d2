"""The Veo3 API, under `/veo3api`: `POST /api/v1/generate/video/`, `GET /api/v1/generate/{id}/`, `Token` auth.

As in the 004 document and docs/dialects.md: `Authorization: Token KEY` (any other scheme is 401); body
`{"prompt" (≤ 1,000 chars), "video_model" veo3_fast (default, 240 credits) | veo3 (500), "source_image_urls"
(http(s) URLs; non-empty makes it image-to-video), "aspect_ratio" 16:9 (default) | 9:16}`. Submit answers 200
`{"success": true, "data": {"generation_id", "status": "processing", "generation_type": "video",
"video_model", "estimated_time", "credits_used", "credits_remaining", "mode", "message"}}` (plus
`source_images_count` for image-to-video); `estimated_time` is `"{ceil(delay)}-{ceil(delay)+1} seconds"`.

Poll answers top-level `{"generation_id", "status" pending|processing|completed|failed, "generation_type",
"video_model", "aspect_ratio", "prompt", "progress" (0-100), "created_at"}` plus `video_url` when completed
(and `video_urls` when there are several) or `error` (the reason) when failed. The trailing slash of both
paths is optional. Errors are `{"success": false, "error": "<message>"}`; 400 adds `details`, 402 is the
documented insufficient-credits body.
"""

from __future__ import annotations

import math
import time
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
from sandbox.state import Shortfall, Store

MAX_PROMPT = 1000
CREDITS = {"veo3_fast": 240, "veo3": 500}
ASPECT_RATIOS = ("16:9", "9:16")

_MESSAGES = {
    400: "Invalid request parameters",
    401: "Invalid token.",
    402: "Insufficient credits",
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    405: "Method not allowed.",
    429: "Request was throttled.",
}


def error(status: int, message: str | None = None) -> Response:
    """The Veo3 API's error body for `status`."""
    text = message or _MESSAGES.get(status, "Internal server error." if status >= 500 else f"HTTP {status}")
    body: dict[str, Any] = {"success": False, "error": text}
    if status == 400:
        body["details"] = {}
    return Response(status, body)


def _invalid(body: dict[str, Any]) -> Response | None:
    """400 with `details` for the first invalid field (all invalid fields listed), or None."""
    problems: list[tuple[str, str, str]] = []
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        problems.append(("prompt", "Prompt is required", "This field is required"))
    elif len(prompt) > MAX_PROMPT:
        problems.append(
            ("prompt", "Prompt is too long", f"Ensure this field has no more than {MAX_PROMPT} characters.")
        )
    if body.get("video_model") is not None and body["video_model"] not in tuple(CREDITS):
        problems.append(("video_model", "Invalid video model", "Must be one of: veo3_fast, veo3"))
    if body.get("aspect_ratio") is not None and body["aspect_ratio"] not in ASPECT_RATIOS:
        problems.append(("aspect_ratio", "Invalid aspect ratio", "Must be one of: 16:9, 9:16"))
    images = body.get("source_image_urls")
    if images is not None and not (string_list(images) is not None and all(is_url(i) for i in images)):
        problems.append(("source_image_urls", "Invalid source image URLs", "Must be a list of image URLs"))
    if not problems:
        return None
    details = {name: detail for name, _, detail in problems}
    return Response(400, {"success": False, "error": problems[0][1], "details": details})


def submit(req: Request, store: Store) -> Response:
    """POST /api/v1/generate/video/."""
    body = req.json_object()
    if body is None:
        return error(400, "Request body must be a JSON object")
    refusal = _invalid(body)
    if refusal is not None:
        return refusal
    video_model = body.get("video_model") or "veo3_fast"
    aspect_ratio = body.get("aspect_ratio") or "16:9"
    images: list[str] = body.get("source_image_urls") or []
    credits = CREDITS[video_model]
    options = {"video_model": video_model, "aspect_ratio": aspect_ratio, "source_image_urls": images}
    task = store.accept(
        task_id=str(uuid.uuid4()),
        dialect="veo3api",
        model=video_model,
        prompt=body["prompt"],
        kind="video",
        price=credits,
        api_key=req.api_key,
        options=options,
        params={"aspect_ratio": aspect_ratio},
    )
    if isinstance(task, Shortfall):
        balance = number(task.balance)
        refusal_body = {
            "success": False,
            "error": f"Insufficient credits. Need {credits}, have {balance}",
            "credits_needed": credits,
            "credits_balance": balance,
            "video_model": video_model,
            "generation_type": "video",
        }
        return Response(402, refusal_body)
    low = math.ceil(task.delay)
    mode = "image-to-video" if images else "text-to-video"
    data: dict[str, Any] = {
        "generation_id": task.id,
        "status": "processing",
        "generation_type": "video",
        "video_model": video_model,
        "estimated_time": f"{low}-{low + 1} seconds",
        "credits_used": credits,
        "credits_remaining": number(task.balance_after),
        "mode": mode,
    }
    if images:
        data["source_images_count"] = len(images)
    if video_model == "veo3":
        data["message"] = f"Premium {'image-to-video' if images else 'video'} generation started successfully"
    else:
        data["message"] = "Video generation started successfully"
    return Response(200, {"success": True, "data": data})


def poll(req: Request, store: Store) -> Response:
    """GET /api/v1/generate/{id}/; another key's generation is 404."""
    task = store.task(req.params["id"])
    if task is None or task.dialect != "veo3api" or task.api_key != req.api_key:
        return error(404)
    now = time.monotonic()
    phase = task.phase(now)
    status = {"queued": "pending", "running": "processing", "succeeded": "completed"}.get(phase, "failed")
    answer: dict[str, Any] = {
        "generation_id": task.id,
        "status": status,
        "generation_type": "video",
        "video_model": task.model,
        "aspect_ratio": task.params["aspect_ratio"],
        "prompt": task.prompt,
        "progress": task.progress(now),
        "created_at": iso(task.created_at),
    }
    if phase == "succeeded":
        urls = file_urls(task, req.host)
        answer["video_url"] = urls[0]
        if len(urls) > 1:
            answer["video_urls"] = urls
    elif phase == "failed":
        answer["error"] = task.fail_reason
    return Response(200, answer)


DIALECT = Dialect(
    name="veo3api",
    prefix="/veo3api",
    scheme="Token",
    routes=(
        route("POST", r"/api/v1/generate/video/?", "submit", submit),
        route("GET", r"/api/v1/generate/(?P<id>[^/]+)/?", "poll", poll),
    ),
    error=error,
)
