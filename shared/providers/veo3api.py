"""The `veo3api` dialect: a Veo3 video API (seeds 004).

Documented: `POST /api/v1/generate/video/` with `Authorization: Token KEY` and `{"prompt", "video_model",
"source_image_urls", "aspect_ratio"}`; the answer `{"success": true, "data": {"generation_id", "status",
"estimated_time": "45-60 seconds", "credits_used", ...}}`; errors `{"success": false, "error": "<message>", ...}`
(insufficient credits with `credits_needed`, invalid parameters with `details`); poll `GET /api/v1/generate/{id}/`
with `status` (`processing`, `completed` with `video_url`); prompt <= 1,000 characters.

Left open by the documents, assumed here as docs/dialects.md says:
- `video_model` is always sent (the request's model), never left to the vendor's default. `image_urls` go as
  `source_image_urls`, URLs only (the resolver presigns an uploaded file). Every other unified option is refused;
  `extra` is merged into the body as given.
- HTTP statuses: 402 insufficient credits (and any answer with `credits_needed` or an "Insufficient credits"
  message), 400 invalid parameters (the `details` are appended to the message), 401 `Invalid token.` (its `error`
  or a DRF-style `detail`), 404, 429 with Retry-After, 5xx. A 2xx answer with `success: false` is an error answer.
- The poll answer is the top-level object `{"generation_id", "status", "video_url", "progress" (0-100), "error"}`;
  the same object wrapped in `{"success": true, "data": ...}` is read too. Status words `pending`, `processing`,
  `completed`, `failed`; any other is ProviderUnavailable, as is `completed` without `video_url`. An
  undocumented `video_urls` list (several outputs) is read after `video_url`.
- `estimated_time` is read as its lower bound: "45-60 seconds" -> 45.0 ("2 minutes" -> 120.0).
"""

from __future__ import annotations

import re
from typing import Any

from shared.errors import ProviderError, ProviderUnavailable
from shared.models import Cost, GenerationRequest
from shared.providers import _common as common
from shared.providers.base import (
    HttpAnswer,
    HttpRequest,
    InputResolver,
    PollResult,
    ProviderAdapter,
    SubmitResult,
    TaskState,
    bearer,
    join_url,
)
from shared.settings import ProviderConfig

#: the unified options veo3api takes
TAKES = frozenset({"aspect_ratio", "image_urls", "extra"})

STATES = {
    "pending": TaskState.PENDING,
    "processing": TaskState.RUNNING,
    "completed": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
}

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(?:-\s*\d+(?:\.\d+)?\s*)?(s|sec|second|min|minute|h|hour)?", re.IGNORECASE)
_UNIT_SECONDS = {"min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}


def estimated_seconds(value: Any) -> float | None:
    """Seconds from `estimated_time`: a number, or text such as "45-60 seconds" (its lower bound)."""
    if not isinstance(value, str):
        return common.amount(value)
    match = _DURATION.search(value[:100])
    if match is None:
        return None
    number = common.amount(match.group(1))
    unit = (match.group(2) or "s").lower()
    return None if number is None else number * _UNIT_SECONDS.get(unit, 1.0)


def read_error(answer: HttpAnswer, body: dict[str, Any] | None) -> ProviderError:
    """The error a veo3api error answer means: credits by its body, the rest by HTTP status."""
    message = common.first_text(common.dig(body, "error"), common.dig(body, "detail"), common.dig(body, "message"))
    if message is None:
        message = common.reason(common.dig(body, "error"), default="") or None
    details = common.dig(body, "details")
    if isinstance(details, dict) and details:
        parts = (
            f"{key}: {common.reason(value[0] if isinstance(value, list) and value else value)}"
            for key, value in details.items()
        )
        message = common.text(f"{message or 'invalid parameters'} ({'; '.join(parts)})")
    insufficient = common.dig(body, "credits_needed") is not None or (message or "").lower().startswith(
        "insufficient credits"
    )
    return common.classify(answer, message, insufficient=insufficient and answer.status_code < 500)


def _body(answer: HttpAnswer) -> dict[str, Any]:
    body = common.answer_body(answer, read_error)
    if body.get("success") is False:
        raise read_error(answer, body)
    return body


class Veo3ApiAdapter(ProviderAdapter):
    """veo3api: `Token` auth, `video_model` and `source_image_urls`, credits per job."""

    dialect = "veo3api"

    def build_submit(self, request: GenerationRequest, config: ProviderConfig, inputs: InputResolver) -> HttpRequest:
        common.refuse_untaken(request, TAKES, config.name)
        body: dict[str, Any] = {"prompt": request.prompt, "video_model": request.model}
        if request.image_urls:
            body["source_image_urls"] = [inputs.as_url(ref) for ref in request.image_urls]
        if request.aspect_ratio is not None:
            body["aspect_ratio"] = request.aspect_ratio
        common.merge_extra(body, request.extra, config.name)
        return HttpRequest(
            method="POST",
            url=join_url(config.base_url, "/api/v1/generate/video/"),
            headers=bearer(config, scheme="Token"),
            json_body=body,
        )

    def parse_submit(self, answer: HttpAnswer) -> SubmitResult:
        data = common.object_at(_body(answer), "data")
        return SubmitResult(
            task_id=common.task_id(data.get("generation_id"), "data.generation_id"),
            state=common.submit_state(data.get("status"), STATES),
            cost=Cost(credits=common.amount(data.get("credits_used"))),
            estimated_seconds=estimated_seconds(data.get("estimated_time")),
        )

    def build_poll(
        self, task_id: str, request: GenerationRequest, config: ProviderConfig, scope: str | None = None
    ) -> HttpRequest:
        url = join_url(config.base_url, f"/api/v1/generate/{common.path_segment(task_id)}/")
        return HttpRequest(method="GET", url=url, headers=bearer(config, scheme="Token"))

    def parse_poll(self, answer: HttpAnswer) -> PollResult:
        body = _body(answer)
        wrapped = body.get("data")
        if "status" not in body and isinstance(wrapped, dict):
            body = wrapped
        state = common.poll_state(body.get("status"), STATES, "status")
        progress = common.fraction(body.get("progress"))
        if state is TaskState.SUCCEEDED:
            found = common.urls(body.get("video_url"), body.get("video_urls"))
            if not found:
                raise ProviderUnavailable("veo3api reports the generation completed but gives no video_url")
            return PollResult(state=state, progress=progress, output_urls=found)
        if state is TaskState.FAILED:
            return PollResult(state=state, progress=progress, failure_reason=common.reason(body.get("error")))
        return PollResult(state=state, progress=progress)
