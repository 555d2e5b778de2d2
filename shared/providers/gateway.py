"""The `gateway` dialect: a generic generation gateway (seeds 003).

Documented: `POST /v2/{scope}/generations` (scope `images`, `videos` or `audio`), Bearer auth, body keys `prompt`,
`model`, `duration`, `aspect_ratio`, `size`, `resolution`, `images` (URL or base64), `videos` (URL only),
`watermark`; the answer `{"task_id"}`; poll `GET /v2/{scope}/generations/{task_id}` with status `NOT_START`,
`IN_PROGRESS`, `SUCCESS`, `FAILURE`, `fail_reason`, `progress` as "NN%", and `data.output` / `data.outputs`.

Left open by the documents, assumed here as docs/dialects.md says:
- The scope is `request.scope`; else the model's kind (image -> images, video -> videos, audio -> audio) from the
  provider's catalog or any built-in catalog listing that model id (`catalog.model_kind`); else `videos`. It is
  decided once, at submit (`task_scope`), recorded on the job, and every poll uses the recorded scope, so a
  catalog change between submit and poll cannot send the poll to another path. A job with none recorded (submitted
  before it was) is polled under the scope derived again.
- `images` takes our `image_urls` as the resolver's data URI (an uploaded file is inlined); `videos` ("only url")
  takes our `video_url` followed by `reference_video_urls`, as http(s) URLs only (an uploaded file as its
  presigned URL; anything else is refused).
  Reference images, audio inputs and the other unified options have no documented key and are refused. `extra`
  is merged into the body as given.
- Errors are OpenAI-like `{"error": {"message", "type", "code"}}`: `invalid_request`, `invalid_api_key`,
  `insufficient_quota`, `task_not_found`, `rate_limit_exceeded` (Retry-After), `server_error`; an unknown code
  falls back to the HTTP status.
- No cost is returned (the catalog has none: any model is accepted). Outputs are `data.outputs` when it holds URLs,
  else `data.output` (the page's example fills them with empty strings, which are skipped). Any status word
  besides the four is ProviderUnavailable; SUCCESS without an output URL is ProviderUnavailable.
"""

from __future__ import annotations

from typing import Any, Literal

from shared.errors import (
    AuthFailed,
    InsufficientCredits,
    InvalidRequest,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)
from shared.models import GenerationRequest
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
from shared.providers.catalog import model_kind
from shared.settings import ProviderConfig

Scope = Literal["images", "videos", "audio"]

#: the unified options the gateway takes
TAKES = frozenset(
    {"scope", "aspect_ratio", "resolution", "duration", "size", "watermark", "image_urls", "video_url"}
    | {"reference_video_urls", "extra"}
)

#: unified name -> body key, for the options passed as they are
OPTION_KEYS = {
    "duration": "duration",
    "aspect_ratio": "aspect_ratio",
    "size": "size",
    "resolution": "resolution",
    "watermark": "watermark",
}

SCOPE_OF_KIND: dict[str, Scope] = {"image": "images", "video": "videos", "audio": "audio"}
SCOPES: frozenset[str] = frozenset(SCOPE_OF_KIND.values())

ERROR_CODES: dict[str, type[ProviderError]] = {
    "invalid_request": ProviderRejected,
    "invalid_api_key": AuthFailed,
    "insufficient_quota": InsufficientCredits,
    "task_not_found": ProviderRejected,
    "rate_limit_exceeded": RateLimited,
    "server_error": ProviderUnavailable,
}

STATES = {
    "not_start": TaskState.PENDING,
    "in_progress": TaskState.RUNNING,
    "success": TaskState.SUCCEEDED,
    "failure": TaskState.FAILED,
}


def scope_for(request: GenerationRequest, provider_name: str) -> Scope:
    """The path scope: the request's, else the one the model's kind implies, else `videos`."""
    if request.scope is not None:
        return request.scope
    kind = model_kind(provider_name, request.model)
    return SCOPE_OF_KIND[kind] if kind is not None else "videos"


#: the error a gateway error answer means, by `error.code` (or `error.type`), else by HTTP status
read_error: ErrorReader = common.error_object_reader(ERROR_CODES, code_also_in="type")


class GatewayAdapter(ProviderAdapter):
    """The gateway: Bearer auth, a scope in the path, flat body, no cost."""

    dialect = "gateway"

    def build_submit(self, request: GenerationRequest, config: ProviderConfig, inputs: InputResolver) -> HttpRequest:
        common.refuse_untaken(request, TAKES, config.name)
        body: dict[str, Any] = {"prompt": request.prompt, "model": request.model}
        body.update(common.mapped_options(request, OPTION_KEYS))
        if request.image_urls:
            body["images"] = [inputs.as_data_uri(ref) for ref in request.image_urls]
        videos = ([request.video_url] if request.video_url else []) + request.reference_video_urls
        if videos:
            body["videos"] = common.url_only([inputs.as_url(ref) for ref in videos], "video input", config.name)
        common.merge_extra(body, request.extra, config.name)
        url = join_url(config.base_url, f"/v2/{self.task_scope(request, config)}/generations")
        return HttpRequest(method="POST", url=url, headers=bearer(config), json_body=body)

    def parse_submit(self, answer: HttpAnswer) -> SubmitResult:
        body = common.answer_body(answer, read_error)
        status = body.get("status")
        return SubmitResult(
            task_id=common.task_id(body.get("task_id"), "task_id"), state=common.submit_state(status, STATES)
        )

    def task_scope(self, request: GenerationRequest, config: ProviderConfig) -> Scope:
        """The path scope the submit goes to (`scope_for`), recorded on the job for every poll."""
        return scope_for(request, config.name)

    def build_poll(
        self, task_id: str, request: GenerationRequest, config: ProviderConfig, scope: str | None = None
    ) -> HttpRequest:
        """The poll under the scope the submit recorded; derived again only for a job that recorded none."""
        if scope is None:
            scope = scope_for(request, config.name)
        elif scope not in SCOPES:
            raise InvalidRequest(f"gateway: recorded scope {scope[:40]!r} is not one of {', '.join(sorted(SCOPES))}")
        url = join_url(config.base_url, f"/v2/{scope}/generations/{common.path_segment(task_id)}")
        return HttpRequest(method="GET", url=url, headers=bearer(config))

    def parse_poll(self, answer: HttpAnswer) -> PollResult:
        body = common.answer_body(answer, read_error)
        state = common.poll_state(body.get("status"), STATES, "status")
        progress = common.fraction(body.get("progress"))
        if state is TaskState.SUCCEEDED:
            data = body.get("data")
            found = common.urls(common.dig(data, "outputs")) or common.urls(common.dig(data, "output"))
            if not found:
                raise ProviderUnavailable("gateway reports SUCCESS but gives no output URL in data.outputs/data.output")
            return PollResult(state=state, progress=progress, output_urls=found)
        if state is TaskState.FAILED:
            return PollResult(state=state, progress=progress, failure_reason=common.reason(body.get("fail_reason")))
        return PollResult(state=state, progress=progress)
