"""Check a request completely before anything reaches Redis: provider, model, options, inputs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from shared.errors import InvalidRequest
from shared.limits import check_inline_inputs, check_shape, normalize_metadata
from shared.models import Cost, GenerationRequest
from shared.netguard import check_url
from shared.providers.catalog import estimate_cost, validate_request
from shared.providers.registry import get_adapter
from shared.settings import ProviderConfig, Settings

MAX_REQUEST_BYTES = 256 * 1024
#: request fields holding input URLs, and what a refusal calls them
INPUT_URL_FIELDS = {
    "image_urls": "image input",
    "reference_image_urls": "reference image input",
    "reference_video_urls": "reference video input",
    "reference_audio_urls": "reference audio input",
    "video_url": "video input",
}
#: the kind of media each input field holds: a data: URI in any of them is uploaded as a file of that kind
INPUT_KINDS = {
    "image_urls": "image",
    "reference_image_urls": "image",
    "reference_video_urls": "video",
    "reference_audio_urls": "audio",
    "video_url": "video",
}


def build_request(model: str, prompt: str, options: dict[str, Any], images: list[str]) -> GenerationRequest:
    """The unified request from command-line or API pieces; InvalidRequest with a one-line reason if malformed."""
    try:
        check_shape(options, "options")
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    fields: dict[str, Any] = {"model": model, "prompt": prompt, **options}
    if images:
        given = fields.get("image_urls") or []
        if not isinstance(given, list):
            raise InvalidRequest("image_urls: must be a list of URLs")
        fields["image_urls"] = given + images
    try:
        request = GenerationRequest.model_validate(fields)
    except ValidationError as exc:
        raise InvalidRequest(one_line(exc)) from None
    # data: URIs are uploaded to the bucket before the job is stored (their bound is the inline budget of
    # shared/limits.py), so only what stays in the job record counts here
    uploaded = sum(len(uri) for uri in inline_inputs(request))
    if len(request.model_dump_json()) - uploaded > MAX_REQUEST_BYTES:
        raise InvalidRequest(f"request is larger than {MAX_REQUEST_BYTES // 1024} KiB (inline inputs aside)")
    return request


def one_line(exc: ValidationError) -> str:
    """A pydantic validation error as one readable line: the first problem, named by field."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "request"
    if error["type"] == "extra_forbidden":
        return f"unknown option {field!r}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{field}: {message}" + (f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else "")


def local_image_paths(request: GenerationRequest) -> list[str]:
    """Image inputs that are neither URLs nor data URIs: local files the producer must upload."""
    refs = request.image_urls + request.reference_image_urls
    return [ref for ref in refs if not ref.lower().startswith(("https://", "http://", "data:", "s3://"))]


def inline_inputs(request: GenerationRequest) -> dict[str, str]:
    """Each distinct data: URI among the inputs, in order, with the kind of media (INPUT_KINDS) its field holds.

    The producer uploads them as it does local files, so one path serves every vendor (producer/api.py).
    """
    found: dict[str, str] = {}
    for field, kind in INPUT_KINDS.items():
        for ref in _refs(request, field):
            if ref[:5].lower() == "data:":
                found.setdefault(ref, kind)
    return found


class PreviewInputs:
    """The InputResolver validation builds with: an input that will be uploaded (a local file, a data: URI)
    resolves to a stand-in URL of the scheme its presigned URL will have, so a URL-only field's rule (VicSee: https
    only) is checked now as it will be at submit; anything else is returned as given.
    """

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme

    def as_url(self, ref: str) -> str:
        if ref.lower().startswith(("https://", "http://")):
            return ref
        return f"{self.scheme}://uploaded-input.invalid/input"

    def as_data_uri(self, ref: str) -> str:
        return ref


def check_remote_inputs(request: GenerationRequest) -> None:
    """InvalidRequest unless every input is an http(s) URL or a data: URI: what a caller over the network may give.

    A local path would be read from the API's own disk, and an `s3://` reference would name an upload of another
    job's: neither is a caller's to name.
    """
    for field, what in INPUT_URL_FIELDS.items():
        for ref in _refs(request, field):
            if not ref.lower().startswith(("https://", "http://", "data:")):
                raise InvalidRequest(f"{what} {ref[:60]!r}: give an http(s) URL or a data: URI")


def check_local_files(paths: list[str]) -> None:
    """InvalidRequest unless every local image path names a readable file."""
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.is_file():
            raise InvalidRequest(f"image input {raw!r} is not a URL and no such file exists")


def check_inline_size(request: GenerationRequest) -> None:
    """InvalidRequest when the request's data: URIs and local files to upload add up to more than 20 MiB."""
    refs = [ref for field in INPUT_URL_FIELDS for ref in _refs(request, field)]
    data_uris = [ref for ref in refs if ref.lower().startswith("data:")]
    sizes = [Path(path).expanduser().stat().st_size for path in local_image_paths(request)]
    try:
        check_inline_inputs(data_uris, sizes)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def normalized_metadata(raw: Mapping[Any, Any] | None) -> dict[str, str]:
    """Metadata as stored (shared/limits.py: scalars as strings, bounded); InvalidRequest with the reason."""
    try:
        return normalize_metadata(raw)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def _refs(request: GenerationRequest, field: str) -> list[str]:
    value = getattr(request, field)
    return value if isinstance(value, list) else [value] if value else []


def check_urls(
    settings: Settings, request: GenerationRequest, webhook_url: str | None = None, signed_by_key: bool = False
) -> None:
    """InvalidRequest unless the webhook URL and every http(s) input URL may be reached (shared/netguard.py), and
    a webhook would be signed (`signed_by_key`: with the secret of the API key the job is made with).

    Input URLs are fetched by the vendor, not by us; they are checked here (against our DNS) all the same.
    data: URIs, s3:// references and local paths are not URLs and are not checked here.
    """
    if webhook_url is not None:
        if not signed_by_key:
            check_webhook_signing(settings)
        check_url(webhook_url, settings.allow_private_urls, "webhook URL", settings.private_url_allowlist)
    for field, what in INPUT_URL_FIELDS.items():
        for ref in _refs(request, field):
            if ref.lower().startswith(("http://", "https://")):
                check_url(ref, settings.allow_private_urls, what, settings.private_url_allowlist)


def check_webhook_signing(settings: Settings) -> None:
    """InvalidRequest when webhooks would go out unsigned: no secret, and unsigned ones not allowed."""
    if not settings.webhook_secret and not settings.allow_unsigned_webhooks:
        raise InvalidRequest(
            "a webhook needs GENQUEUE_WEBHOOK_SECRET (events are never sent unsigned; "
            "GENQUEUE_ALLOW_UNSIGNED_WEBHOOKS=true allows it for development)"
        )


def validate(
    settings: Settings,
    provider: str,
    request: GenerationRequest,
    webhook_url: str | None = None,
    signed_by_key: bool = False,
) -> tuple[ProviderConfig, Cost]:
    """The provider's config and the cost estimate; InvalidRequest for anything the job would be refused for.

    The adapter builds the vendor request once here (pure, nothing sent), so an option its vendor cannot take is
    refused now rather than by a worker later. The webhook URL and input URLs must lead to public addresses.
    """
    config = settings.provider(provider)
    validate_request(provider, request)
    check_local_files(local_image_paths(request))
    check_inline_size(request)
    check_urls(settings, request, webhook_url, signed_by_key)
    scheme = urlsplit(settings.s3_endpoint_url).scheme if settings.s3_endpoint_url else "https"
    get_adapter(config.dialect).build_submit(request, config, PreviewInputs(scheme))
    return config, estimate_cost(provider, request, config.prices)


def fingerprint(provider: str, request: GenerationRequest, webhook_url: str | None, metadata: dict[str, str]) -> str:
    """A hash of everything that defines a job, to tell a repeated idempotency key from a reused one."""
    payload = json.dumps(
        {
            "provider": provider,
            "request": request.model_dump(mode="json"),
            "webhook": webhook_url,
            "metadata": metadata,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]
