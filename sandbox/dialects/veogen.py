"""VeoGen, under `/veogen`: `POST /api/v1/generations` and `GET /api/v1/generations/{id}`, Bearer.

As in the 002 document and docs/dialects.md: submit answers 201 `{"data": {...}, "price_usd"}`, poll answers
`{"data": {...}}` with the same object (`id`, `status` pending|processing|completed|failed, `model`, `type`
video|image, `prompt`, `parameters`, `output`, `error`, `created_at`, `completed_at`). A completed task's
`output` is `{"url", "download_url", "content_type"}` (plus `urls` when there are several outputs); the two
URLs name the same file, `download_url` with `?download=1` so a client's choice between them is visible.

Prices (USD; the balance is in USD too). Documented: grok-video-1 $0.03/s (6-30 s); seedance-2.0 $0.132/s at
480p, $0.284/s at 720p ($0.08 / $0.1712 with `video_urls`); seedance-2.0-fast $0.1056 / $0.2288 ($0.0632 /
$0.136); 4k on veo-3.1-fast is 3x. Our picks where the page is silent: sora-2 $0.03/s (10 s = $0.30, the
page's 402 example), sora-2-pro $0.10/s, veo-3.1-fast $0.40 a video (4, 6 or 8 s); images gpt-4o-image
$0.02, seedream-4.5 $0.03, seedream-5.0-lite $0.02, nano-banana-pro $0.09, nano-banana-2 $0.04.
Defaults when omitted: duration 6 (grok), 10 (sora), 5 (seedance), 8 (veo); resolution 480p for seedance.

Validation answers 422 `{"message", "errors": {field: [message]}}` (Laravel wording) for: model and prompt
required, unknown model, prompt over 2,000 characters, duration outside the model's values or given for an
image model, resolution not one the model has, an unknown `mode` for grok-video-1/veo-3.1-fast, an unknown
`style`, more than 14 `image_urls` or one that is not an http(s) URL (the page: "publicly accessible image
URLs"; a data: URI is refused), `video_urls`/`audio_urls` (≤ 3 http(s) URLs) on a non-Seedance model,
non-boolean `watermark`/`private`. Other errors: 402 as documented; 401, 404, 429, 5xx as docs/dialects.md.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sandbox.dialects.base import Dialect, Request, Response, file_urls, is_url, iso, route, string_list
from sandbox.files import CONTENT_TYPES
from sandbox.state import Phase, Shortfall, Store, Task

MAX_PROMPT = 2000
VIDEO_RESOLUTIONS = ("480p", "720p", "1080p", "4k")
IMAGE_RESOLUTIONS = ("0.5K", "1K", "2K", "4K")
STYLES = ("none", "thanksgiving", "comic", "news", "selfie", "nostalgic", "anime")


@dataclass(frozen=True)
class VideoModel:
    """A video model's durations (first = default), resolutions (first = default) and prices."""

    durations: tuple[int, ...]
    per_second: dict[str, float] = field(default_factory=dict)
    reference_per_second: dict[str, float] = field(default_factory=dict)
    flat: float = 0.0
    multiplier: dict[str, float] = field(default_factory=dict)
    resolutions: tuple[str, ...] = VIDEO_RESOLUTIONS
    modes: tuple[str, ...] = ()

    def price(self, duration: int, resolution: str, with_reference: bool) -> float:
        rates = self.reference_per_second if with_reference and self.reference_per_second else self.per_second
        rate = rates.get(resolution, rates.get("*", 0.0))
        return round((self.flat + rate * duration) * self.multiplier.get(resolution, 1.0), 4)


VIDEO_MODELS: dict[str, VideoModel] = {
    "grok-video-1": VideoModel(tuple(range(6, 31)), {"*": 0.03}, modes=("custom", "normal", "fun", "spicy")),
    "veo-3.1-fast": VideoModel(
        (8, 4, 6),
        flat=0.40,
        multiplier={"4k": 3.0},
        resolutions=("720p", "1080p", "4k"),
        modes=("frame", "ingredient"),
    ),
    "sora-2": VideoModel((10, 15), {"*": 0.03}),
    "sora-2-pro": VideoModel((10, 15, 25), {"*": 0.10}),
    "seedance-2.0": VideoModel(
        (5, *range(4, 16)),
        {"480p": 0.132, "720p": 0.284},
        {"480p": 0.08, "720p": 0.1712},
        resolutions=("480p", "720p"),
    ),
    "seedance-2.0-fast": VideoModel(
        (5, *range(4, 16)),
        {"480p": 0.1056, "720p": 0.2288},
        {"480p": 0.0632, "720p": 0.136},
        resolutions=("480p", "720p"),
    ),
}
IMAGE_MODELS: dict[str, float] = {
    "gpt-4o-image": 0.02,
    "seedream-4.5": 0.03,
    "seedream-5.0-lite": 0.02,
    "nano-banana-pro": 0.09,
    "nano-banana-2": 0.04,
}

_MESSAGES = {
    400: "Bad request.",
    401: "Unauthenticated.",
    403: "This action is unauthorized.",
    404: "Not found.",
    405: "Method not allowed.",
    429: "Too Many Attempts.",
}


def error(status: int, message: str | None = None) -> Response:
    """VeoGen's error body for `status` (Laravel-style `{"message"}`; 402 and 422 with their extra keys)."""
    if status == 402:
        text = message or "Insufficient balance."
        return Response(402, {"error": "Insufficient balance.", "message": text})
    text = message or _MESSAGES.get(status, "Server Error" if status >= 500 else f"HTTP {status}")
    return Response(status, {"message": text, "errors": {}} if status == 422 else {"message": text})


def _validate(body: dict[str, Any]) -> dict[str, list[str]]:
    """Laravel-style validation errors for a create request (empty when it is valid)."""
    errors: dict[str, list[str]] = {}

    def bad(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    model, prompt = body.get("model"), body.get("prompt")
    if not isinstance(model, str) or not model:
        bad("model", "The model field is required.")
    elif model not in VIDEO_MODELS and model not in IMAGE_MODELS:
        bad("model", "The selected model is invalid.")
    if not isinstance(prompt, str) or not prompt.strip():
        bad("prompt", "The prompt field is required.")
    elif len(prompt) > MAX_PROMPT:
        bad("prompt", f"The prompt field must not be greater than {MAX_PROMPT} characters.")
    video = VIDEO_MODELS.get(model) if isinstance(model, str) else None
    image = isinstance(model, str) and model in IMAGE_MODELS
    duration, resolution = body.get("duration"), body.get("resolution")
    if duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, int):
            bad("duration", "The duration field must be an integer.")
        elif image:
            bad("duration", "The duration field is prohibited.")
        elif video is not None and duration not in video.durations:
            bad("duration", "The selected duration is invalid.")
    if resolution is not None and (video is not None or image):
        allowed = video.resolutions if video else IMAGE_RESOLUTIONS
        if not isinstance(resolution, str) or resolution.lower() not in [r.lower() for r in allowed]:
            bad("resolution", "The selected resolution is invalid.")
    if body.get("mode") is not None and video is not None and video.modes and body["mode"] not in video.modes:
        bad("mode", "The selected mode is invalid.")
    if body.get("style") is not None and body["style"] not in STYLES:
        bad("style", "The selected style is invalid.")
    for name in ("aspect_ratio", "mode"):
        if body.get(name) is not None and not isinstance(body[name], str):
            bad(name, f"The {name.replace('_', ' ')} field must be a string.")
    for name in ("watermark", "private"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            bad(name, f"The {name} field must be true or false.")
    if body.get("image_urls") is not None:
        images = string_list(body["image_urls"])
        if images is None:
            bad("image_urls", "The image urls field must be an array of URLs.")
        elif len(images) > 14:
            bad("image_urls", "The image urls field must not have more than 14 items.")
        elif not all(is_url(i) for i in images):
            bad("image_urls", "The image urls field must contain valid URLs.")
    for name in ("video_urls", "audio_urls"):
        if body.get(name) is None or body[name] == []:
            continue
        items = string_list(body[name])
        label = name.replace("_", " ")
        if not (isinstance(model, str) and model.startswith("seedance")):
            bad(name, f"The {label} field is prohibited.")
        elif items is None or len(items) > 3 or not all(is_url(i) for i in items):
            bad(name, f"The {label} field must be an array of at most 3 URLs.")
    return errors


def _data(task: Task, host: str, phase: Phase | None = None) -> dict[str, Any]:
    phase = phase or task.phase()
    output: dict[str, Any] | None = None
    if phase == "succeeded":
        urls = file_urls(task, host)
        output = {
            "url": urls[0],
            "download_url": urls[0] + "?download=1",
            "content_type": CONTENT_TYPES[task.ext],
        }
        output |= {"urls": urls} if len(urls) > 1 else {}
    status = {"queued": "pending", "running": "processing", "succeeded": "completed"}.get(phase, "failed")
    return {
        "id": task.id,
        "status": status,
        "model": task.model,
        "type": task.kind,
        "prompt": task.prompt,
        "parameters": task.params,
        "output": output,
        "error": {"message": task.fail_reason} if phase == "failed" else None,
        "created_at": iso(task.created_at),
        "completed_at": iso(task.finished_at) if phase in ("succeeded", "failed") else None,
    }


def submit(req: Request, store: Store) -> Response:
    """POST /api/v1/generations."""
    body = req.json_object() or {}
    errors = _validate(body)
    if errors:
        messages = [m for ms in errors.values() for m in ms]
        more = len(messages) - 1
        suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
        return Response(422, {"message": messages[0] + suffix, "errors": errors})
    model: str = body["model"]
    params = {k: v for k, v in body.items() if k not in ("model", "prompt") and v is not None}
    video = VIDEO_MODELS.get(model)
    if video is not None:
        params.setdefault("duration", video.durations[0])
        params.setdefault("resolution", video.resolutions[0])
        price = video.price(params["duration"], params["resolution"].lower(), bool(body.get("video_urls")))
    else:
        price = IMAGE_MODELS[model]
    task = store.accept(
        task_id=str(uuid.uuid4()),
        dialect="veogen",
        model=model,
        prompt=body["prompt"],
        kind="video" if video else "image",
        price=price,
        api_key=req.api_key,
        options=params,
        params=params,
    )
    if isinstance(task, Shortfall):
        message = f"This generation costs ${price:.2f}. Your balance is ${task.balance:.2f}."
        body = {
            "error": "Insufficient balance.",
            "message": message,
            "required": price,
            "balance": task.balance,
        }
        return Response(402, body)
    return Response(201, {"data": _data(task, req.host, phase="queued"), "price_usd": price})


def poll(req: Request, store: Store) -> Response:
    """GET /api/v1/generations/{id}; another key's generation is 404, as if it did not exist."""
    task = store.task(req.params["id"])
    if task is None or task.dialect != "veogen" or task.api_key != req.api_key:
        return error(404)
    return Response(200, {"data": _data(task, req.host)})


DIALECT = Dialect(
    name="veogen",
    prefix="/veogen",
    scheme="Bearer",
    routes=(
        route("POST", r"/api/v1/generations/?", "submit", submit),
        route("GET", r"/api/v1/generations/(?P<id>[^/]+)/?", "poll", poll),
    ),
    error=error,
)
