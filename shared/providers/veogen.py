"""The `veogen` dialect: VeoGen Studio (seeds 002, and its task page quoted in seeds/README.md).

Documented: `POST /api/v1/generations`, Bearer auth, a snake_case body (`model`, `prompt`, `aspect_ratio`,
`resolution`, `duration`, `mode`, `style`, `image_urls`, `video_urls`, `audio_urls`, `watermark`, `private`), the
answer 201 `{"data": {"id", "status", ...}, "price_usd"}`, 402 `{"error", "message", "required", "balance"}`,
422 `{"message", "errors"}`; poll `GET /api/v1/generations/{id}` -> `{"data": {...}}` with status `pending`,
`processing`, `completed` (`output.url`, `output.download_url`) or `failed` (`error`).

Left open by the documents, assumed here as docs/dialects.md says:
- Our `reference_video_urls` / `reference_audio_urls` are VeoGen's `video_urls` / `audio_urls`; `image_urls` go
  as URLs only (the resolver presigns an uploaded file). VeoGen has no separate reference-image list (extra images
  in `image_urls` are its references), so `reference_image_urls` is refused. `extra` is merged into the body.
  `video_urls` and `audio_urls` ("publicly accessible ... URLs") must be http(s) URLs: an uploaded file (a data:
  URI the producer put in the bucket) goes as its presigned URL, anything else is refused.
- Errors are classified by HTTP status (VeoGen has no error codes): 401 auth, 402 balance, 404/422 rejection,
  429 rate limit with Retry-After, 5xx transient. The message is `error` and `message` joined, else the first
  entry of `errors`.
- Status words beyond the four documented ones are ProviderUnavailable (retried, then `provider_error`).
  A completed generation's output is `output.download_url` when present, else `output.url`; a completed one
  with neither is ProviderUnavailable. An undocumented `output.urls` list is read when it names several outputs.
  A failure's `error` may be an object with `message` or a plain string.
- No progress field is documented; progress stays None. `price_usd` is the exact charge.
"""

from __future__ import annotations

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

#: the unified options VeoGen takes
TAKES = frozenset(
    {
        "aspect_ratio",
        "resolution",
        "duration",
        "mode",
        "style",
        "watermark",
        "private",
        "image_urls",
        "reference_video_urls",
        "reference_audio_urls",
        "extra",
    }
)

#: unified name -> body key, for the options passed as they are
OPTION_KEYS = {
    "aspect_ratio": "aspect_ratio",
    "resolution": "resolution",
    "duration": "duration",
    "mode": "mode",
    "style": "style",
    "watermark": "watermark",
    "private": "private",
}
#: unified name -> body key, for the URL-only media inputs (an uploaded file goes as its presigned URL)
MEDIA_KEYS = {"reference_video_urls": "video_urls", "reference_audio_urls": "audio_urls"}

STATES = {
    "pending": TaskState.PENDING,
    "processing": TaskState.RUNNING,
    "completed": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
}


def read_error(answer: HttpAnswer, body: dict[str, Any] | None) -> ProviderError:
    """The error a VeoGen error answer means, by HTTP status, with its `error`/`message` (or first `errors`)."""
    message = common.joined([common.dig(body, "error"), common.dig(body, "message")])
    if message is None:
        errors = common.dig(body, "errors")
        if isinstance(errors, dict):
            message = common.first_text(*(item[0] for item in errors.values() if isinstance(item, list) and item))
    return common.classify(answer, message)


class VeoGenAdapter(ProviderAdapter):
    """VeoGen: Bearer auth, snake_case body, URL-only inputs, USD prices."""

    dialect = "veogen"

    def build_submit(self, request: GenerationRequest, config: ProviderConfig, inputs: InputResolver) -> HttpRequest:
        common.refuse_untaken(request, TAKES, config.name)
        body: dict[str, Any] = {"model": request.model, "prompt": request.prompt}
        body.update(common.mapped_options(request, OPTION_KEYS))
        for field, key in MEDIA_KEYS.items():
            if refs := getattr(request, field):
                urls = [inputs.as_url(ref) for ref in refs]
                body[key] = common.url_only(urls, "video and audio input", config.name)
        if request.image_urls:
            body["image_urls"] = [inputs.as_url(ref) for ref in request.image_urls]
        common.merge_extra(body, request.extra, config.name)
        return HttpRequest(
            method="POST", url=join_url(config.base_url, "/api/v1/generations"), headers=bearer(config), json_body=body
        )

    def parse_submit(self, answer: HttpAnswer) -> SubmitResult:
        body = common.answer_body(answer, read_error)
        data = common.object_at(body, "data")
        return SubmitResult(
            task_id=common.task_id(data.get("id"), "data.id"),
            state=common.submit_state(data.get("status"), STATES),
            cost=Cost(usd=common.amount(body.get("price_usd"))),
        )

    def build_poll(
        self, task_id: str, request: GenerationRequest, config: ProviderConfig, scope: str | None = None
    ) -> HttpRequest:
        url = join_url(config.base_url, f"/api/v1/generations/{common.path_segment(task_id)}")
        return HttpRequest(method="GET", url=url, headers=bearer(config))

    def parse_poll(self, answer: HttpAnswer) -> PollResult:
        data = common.object_at(common.answer_body(answer, read_error), "data")
        state = common.poll_state(data.get("status"), STATES, "data.status")
        if state is TaskState.SUCCEEDED:
            output = data.get("output")
            found = common.urls(common.dig(output, "urls"))
            if len(found) < 2:
                found = common.urls(common.dig(output, "download_url")) or common.urls(common.dig(output, "url"))
            if not found:
                raise ProviderUnavailable("veogen reports the generation completed but gives no output URL")
            return PollResult(state=state, output_urls=found)
        if state is TaskState.FAILED:
            return PollResult(state=state, failure_reason=common.reason(data.get("error")))
        return PollResult(state=state)
