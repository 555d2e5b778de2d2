"""The `vicsee` dialect: VicSee's REST API (seeds 000) with the richer inputs of its tool interface (seeds 001).

Documented: `POST /api/v1/generate` with Bearer auth and `{"model", "prompt", "options": {aspectRatio, resolution,
duration, image}}`; the answer `{"success": true, "data": {"id", "status", "creditsUsed", ...}}`; poll
`GET /api/v1/tasks/{id}`; error codes MISSING_MODEL, MISSING_PROMPT, INVALID_MODEL, INSUFFICIENT_CREDITS,
RATE_LIMITED (and on poll TASK_NOT_FOUND, FORBIDDEN, NO_RESULT); image inputs may be URLs or base64 data URIs.

Left open by the documents, assumed here as docs/dialects.md says:
- The tool page's inputs go in `options`, camelCased: `imageUrls`, `referenceImageUrls`, `referenceVideoUrls`,
  `referenceAudioUrls`, `videoUrl`, `audioSetting`, `outputFormat`, `audio`; `extra` is merged into `options`.
  The first image of `image_urls` is always `options.image` (the REST spelling); `imageUrls` carries the whole list
  only when there is more than one. Image inputs go as the resolver's data URI (an uploaded file is inlined).
- VicSee's own input rules are applied here, to VicSee alone: video and audio inputs (`reference_video_urls`,
  `reference_audio_urls`, `video_url`) must be https URLs (tool page: "must be public https URLs"; an uploaded
  file goes as its presigned URL, so it needs an https S3 endpoint); the counts
  (7 reference images, 3 videos, 3 audios) are the catalog's (catalog_data.py).
- Error bodies are `{"success": false, "error": {"code", "message"}}`, classified by code, else by HTTP status;
  a 2xx answer with `success: false` is an error answer too. INVALID_OPTION is a rejection, UNAUTHORIZED and
  FORBIDDEN auth failures, TASK_NOT_FOUND a rejection, NO_RESULT a failed generation, INTERNAL_ERROR transient.
- Poll status words: `pending` and `queued` (waiting), `processing`, `success` and `completed` (both mean done,
  with `result.url`), `failed` (with `error`). Any other word is ProviderUnavailable (retried, then visible as
  `provider_error`), never guessed to be "running". A done task without `result.url` is ProviderUnavailable;
  an undocumented `result.urls` list (several outputs) is read after `result.url`.
- No progress field is documented; progress stays None.
"""

from __future__ import annotations

from typing import Any

from shared.errors import (
    AuthFailed,
    GenerationFailed,
    InsufficientCredits,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)
from shared.models import Cost, GenerationRequest
from shared.providers import _common as common
from shared.providers._common import ErrorReader
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

#: the unified options VicSee takes
TAKES = frozenset(
    {
        "aspect_ratio",
        "resolution",
        "duration",
        "output_format",
        "audio",
        "image_urls",
        "reference_image_urls",
        "reference_video_urls",
        "reference_audio_urls",
        "video_url",
        "audio_setting",
        "extra",
    }
)

#: unified name -> key in `options`, for the options passed as they are
OPTION_KEYS = {
    "aspect_ratio": "aspectRatio",
    "resolution": "resolution",
    "duration": "duration",
    "output_format": "outputFormat",
    "audio": "audio",
    "audio_setting": "audioSetting",
}
#: unified name -> key in `options`, for the https-only media inputs (an uploaded file goes as its presigned URL)
MEDIA_KEYS = {
    "reference_video_urls": "referenceVideoUrls",
    "reference_audio_urls": "referenceAudioUrls",
    "video_url": "videoUrl",
}

ERROR_CODES: dict[str, type[ProviderError]] = {
    "MISSING_MODEL": ProviderRejected,
    "MISSING_PROMPT": ProviderRejected,
    "INVALID_MODEL": ProviderRejected,
    "INVALID_OPTION": ProviderRejected,
    "UNAUTHORIZED": AuthFailed,
    "FORBIDDEN": AuthFailed,
    "INSUFFICIENT_CREDITS": InsufficientCredits,
    "RATE_LIMITED": RateLimited,
    "TASK_NOT_FOUND": ProviderRejected,
    "NO_RESULT": GenerationFailed,
    "GENERATION_FAILED": GenerationFailed,
    "INTERNAL_ERROR": ProviderUnavailable,
}

STATES = {
    "pending": TaskState.PENDING,
    "queued": TaskState.PENDING,
    "processing": TaskState.RUNNING,
    "success": TaskState.SUCCEEDED,
    "completed": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
}


#: the error a VicSee error answer means, by its `error.code`, else by HTTP status
read_error: ErrorReader = common.error_object_reader(ERROR_CODES)


def _data(answer: HttpAnswer) -> dict[str, Any]:
    body = common.answer_body(answer, read_error)
    if body.get("success") is False:
        raise read_error(answer, body)
    return common.object_at(body, "data")


class VicSeeAdapter(ProviderAdapter):
    """VicSee: Bearer auth, camelCase `options`, credits per job."""

    dialect = "vicsee"

    def build_submit(self, request: GenerationRequest, config: ProviderConfig, inputs: InputResolver) -> HttpRequest:
        common.refuse_untaken(request, TAKES, config.name)
        options = common.mapped_options(request, OPTION_KEYS)
        for field, key in MEDIA_KEYS.items():
            if refs := getattr(request, field):
                urls = [inputs.as_url(ref) for ref in (refs if isinstance(refs, list) else [refs])]
                common.url_only(urls, "video and audio input", config.name, ("https://",))
                options[key] = urls if isinstance(refs, list) else urls[0]
        images = [inputs.as_data_uri(ref) for ref in request.image_urls]
        if images:
            options["image"] = images[0]
        if len(images) > 1:
            options["imageUrls"] = images
        if request.reference_image_urls:
            options["referenceImageUrls"] = [inputs.as_data_uri(ref) for ref in request.reference_image_urls]
        common.merge_extra(options, request.extra, config.name)
        body: dict[str, Any] = {"model": request.model, "prompt": request.prompt}
        if options:
            body["options"] = options
        return HttpRequest(
            method="POST", url=join_url(config.base_url, "/api/v1/generate"), headers=bearer(config), json_body=body
        )

    def parse_submit(self, answer: HttpAnswer) -> SubmitResult:
        data = _data(answer)
        return SubmitResult(
            task_id=common.task_id(data.get("id"), "data.id"),
            state=common.submit_state(data.get("status"), STATES),
            cost=Cost(credits=common.amount(data.get("creditsUsed"))),
        )

    def build_poll(
        self, task_id: str, request: GenerationRequest, config: ProviderConfig, scope: str | None = None
    ) -> HttpRequest:
        url = join_url(config.base_url, f"/api/v1/tasks/{common.path_segment(task_id)}")
        return HttpRequest(method="GET", url=url, headers=bearer(config))

    def parse_poll(self, answer: HttpAnswer) -> PollResult:
        data = _data(answer)
        state = common.poll_state(data.get("status"), STATES, "data.status")
        if state is TaskState.SUCCEEDED:
            result = data.get("result")
            found = common.urls(common.dig(result, "url"), common.dig(result, "urls"))
            if not found:
                raise ProviderUnavailable("vicsee reports the task done but gives no result.url")
            return PollResult(state=state, output_urls=found)
        if state is TaskState.FAILED:
            return PollResult(state=state, failure_reason=common.reason(data.get("error")))
        return PollResult(state=state)
