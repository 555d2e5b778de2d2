"""The `sandbox` dialect: our own native API, spoken by `genqueue sandbox` under `/sandbox` (docs/dialects.md).

Specified: `POST /v1/jobs` with Bearer auth and `{"model", "prompt", "options": {...}}` -> 200 `{"id", "status":
"queued", "estimated_seconds", "cost_credits"}`; poll `GET /v1/jobs/{id}` -> `{"id", "status", "progress" (0-100),
"outputs": [url, ...], "error": null | "reason"}` with status `queued`, `running`, `succeeded`, `failed`; errors
`{"error": {"code", "message"}}`: invalid_request, unauthorized, insufficient_credits, not_found, rate_limited
(Retry-After), server_error.

Left open by the page, assumed here (and added to docs/dialects.md):
- `options` holds every unified option the request sets, under its unified snake_case name (`aspect_ratio`,
  `duration`, `image_urls`, `scope`, ...); image inputs as URLs (the resolver presigns an uploaded file); `extra`
  is merged into `options` as given. The sandbox takes every option, so nothing is refused here.
- Outputs must be absolute http(s) URLs; a `succeeded` job without one is ProviderUnavailable, as is any status
  word besides the four. An unknown error code falls back to the HTTP status.
"""

from __future__ import annotations

from typing import Any

from shared.errors import (
    AuthFailed,
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

#: the unified fields that hold image inputs (sent as URLs)
IMAGE_FIELDS = ("image_urls", "reference_image_urls")

ERROR_CODES: dict[str, type[ProviderError]] = {
    "invalid_request": ProviderRejected,
    "unauthorized": AuthFailed,
    "insufficient_credits": InsufficientCredits,
    "not_found": ProviderRejected,
    "rate_limited": RateLimited,
    "server_error": ProviderUnavailable,
}

STATES = {
    "queued": TaskState.PENDING,
    "running": TaskState.RUNNING,
    "succeeded": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
}


#: the error a sandbox error answer means, by `error.code`, else by HTTP status
read_error: ErrorReader = common.error_object_reader(ERROR_CODES)


class SandboxAdapter(ProviderAdapter):
    """The sandbox: Bearer auth, unified option names in `options`, credits per job or per second."""

    dialect = "sandbox"

    def build_submit(self, request: GenerationRequest, config: ProviderConfig, inputs: InputResolver) -> HttpRequest:
        chosen = common.set_options(request) - {"extra"}
        options = common.mapped_options(request, {name: name for name in sorted(chosen)})
        for field in IMAGE_FIELDS:
            if field in options:
                options[field] = [inputs.as_url(ref) for ref in getattr(request, field)]
        common.merge_extra(options, request.extra, config.name)
        body: dict[str, Any] = {"model": request.model, "prompt": request.prompt, "options": options}
        return HttpRequest(
            method="POST", url=join_url(config.base_url, "/v1/jobs"), headers=bearer(config), json_body=body
        )

    def parse_submit(self, answer: HttpAnswer) -> SubmitResult:
        body = common.answer_body(answer, read_error)
        return SubmitResult(
            task_id=common.task_id(body.get("id"), "id"),
            state=common.submit_state(body.get("status"), STATES),
            cost=Cost(credits=common.amount(body.get("cost_credits"))),
            estimated_seconds=common.amount(body.get("estimated_seconds")),
        )

    def build_poll(
        self, task_id: str, request: GenerationRequest, config: ProviderConfig, scope: str | None = None
    ) -> HttpRequest:
        url = join_url(config.base_url, f"/v1/jobs/{common.path_segment(task_id)}")
        return HttpRequest(method="GET", url=url, headers=bearer(config))

    def parse_poll(self, answer: HttpAnswer) -> PollResult:
        body = common.answer_body(answer, read_error)
        state = common.poll_state(body.get("status"), STATES, "status")
        progress = common.fraction(body.get("progress"))
        if state is TaskState.SUCCEEDED:
            found = common.urls(body.get("outputs"))
            if not found:
                raise ProviderUnavailable("sandbox reports the job succeeded but gives no output URL")
            return PollResult(state=state, progress=progress, output_urls=found)
        if state is TaskState.FAILED:
            return PollResult(state=state, progress=progress, failure_reason=common.reason(body.get("error")))
        return PollResult(state=state, progress=progress)
