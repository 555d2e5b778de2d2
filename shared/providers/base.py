"""The one small interface every vendor dialect implements, and the helpers they share.

An adapter is pure translation: it builds `HttpRequest`s from the unified `GenerationRequest` and reads
`HttpAnswer`s into `SubmitResult`/`PollResult`, raising the `shared.errors` class that fits an error answer.
It never does I/O; the workers send the requests (shared/providers/client.py) and hand back the answers.
"""

from __future__ import annotations

import enum
import json
from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from shared.errors import (
    AuthFailed,
    InsufficientCredits,
    ProviderError,
    ProviderRedirected,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)
from shared.models import Cost, GenerationRequest
from shared.retry_after import parse_retry_after
from shared.settings import ProviderConfig

#: answers larger than this are not parsed (a vendor that sends megabytes of JSON is malformed)
MAX_ANSWER_BYTES = 2 * 1024 * 1024


class HttpRequest(BaseModel):
    """A request an adapter wants sent."""

    method: str
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: dict[str, Any] | None = None


class HttpAnswer(BaseModel):
    """What came back: status, headers (lower-cased names) and the raw body."""

    status_code: int
    headers: dict[str, str] = Field(default_factory=dict)
    body: bytes = b""


class TaskState(str, enum.Enum):  # noqa: UP042 (StrEnum would change str() of members that callers may format)
    """A vendor task's status, normalized across dialects."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class SubmitResult(BaseModel):
    """A vendor's answer to an accepted submit."""

    task_id: str
    state: TaskState = TaskState.PENDING
    cost: Cost = Field(default_factory=Cost)
    estimated_seconds: float | None = None


class PollResult(BaseModel):
    """A vendor's answer to a status poll; `progress` is a fraction from 0 to 1 where the vendor gives one."""

    state: TaskState
    progress: float | None = None
    output_urls: list[str] = Field(default_factory=list)
    failure_reason: str | None = None


class InputResolver(Protocol):
    """Turns an input (image, video, audio) into what a vendor takes.

    Inputs are https URLs, data URIs, or `s3://bucket/key` references to files the producer uploaded (local files,
    and data: URIs: producer/api.py).
    """

    def as_url(self, ref: str) -> str:
        """An http(s) URL the vendor can fetch (a presigned URL for an uploaded file)."""
        ...

    def as_data_uri(self, ref: str) -> str:
        """A base64 `data:` URI for an uploaded file; URLs and data URIs are returned as they are."""
        ...


class PassThroughInputs:
    """An InputResolver for requests with no uploaded files: everything is returned as given."""

    def as_url(self, ref: str) -> str:
        return ref

    def as_data_uri(self, ref: str) -> str:
        return ref


class ProviderAdapter(ABC):
    """One vendor dialect. Subclasses set `dialect` and implement the four translations."""

    dialect: ClassVar[str]

    @abstractmethod
    def build_submit(self, request: GenerationRequest, config: ProviderConfig, inputs: InputResolver) -> HttpRequest:
        """The submit request for `request`; raises InvalidRequest for what this vendor cannot take."""

    @abstractmethod
    def parse_submit(self, answer: HttpAnswer) -> SubmitResult:
        """Read a submit answer; raises a ProviderError subclass for an error answer."""

    def task_scope(self, request: GenerationRequest, config: ProviderConfig) -> str | None:
        """The part of the task's address besides its id that `build_submit` puts in its URL and the poll needs.

        The submit step records it on the job with the task id and hands it back to every `build_poll`, so a poll
        goes where the submit went even if what it was derived from (the catalog) has changed. None by default.
        """
        return None

    @abstractmethod
    def build_poll(
        self, task_id: str, request: GenerationRequest, config: ProviderConfig, scope: str | None = None
    ) -> HttpRequest:
        """The status request for a vendor task; `scope` is what `task_scope` said at submit (None if unrecorded)."""

    @abstractmethod
    def parse_poll(self, answer: HttpAnswer) -> PollResult:
        """Read a poll answer; raises a ProviderError subclass for an error answer."""


def join_url(base_url: str, path: str) -> str:
    """`base_url` with a documented path appended, with exactly one slash between them."""
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def bearer(config: ProviderConfig, scheme: str = "Bearer") -> dict[str, str]:
    """Authorization and content headers; no Authorization header when no key is configured."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if config.api_key:
        headers["Authorization"] = f"{scheme} {config.api_key}"
    return headers


def read_json(answer: HttpAnswer) -> dict[str, Any]:
    """The answer's JSON object, or ProviderUnavailable for a body that is too large, not JSON, or not an object."""
    if len(answer.body) > MAX_ANSWER_BYTES:
        raise ProviderUnavailable(f"provider answer too large ({len(answer.body)} bytes, HTTP {answer.status_code})")
    try:
        data = json.loads(answer.body)
    except (ValueError, UnicodeDecodeError):
        snippet = answer.body[:80].decode("utf-8", "replace")
        raise ProviderUnavailable(
            f"provider answered HTTP {answer.status_code} with a non-JSON body: {snippet!r}"
        ) from None
    if not isinstance(data, dict):
        raise ProviderUnavailable(f"provider answered HTTP {answer.status_code} with JSON that is not an object")
    return data


def retry_after_seconds(headers: dict[str, str], now: datetime | None = None) -> float | None:
    """The Retry-After header in seconds, capped at an hour (shared/retry_after.py), or None when absent or bad."""
    return parse_retry_after(headers.get("retry-after"), None if now is None else now.timestamp())


def redirect_error(answer: HttpAnswer) -> ProviderRedirected:
    """The error for a 3xx answer to a vendor API call, which is never followed.

    Permanent: no dialect answers a call with a redirect, so one means a base URL to fix (http to https, a moved
    host) or a vendor steering our authenticated requests elsewhere; retrying finds the same answer, and on a
    submit a retry would be a second POST (workers/submit.py resubmits after transient errors). The message names
    the status and the Location's host, never its path or query.
    """
    try:
        target = urlsplit(answer.headers.get("location", "")).hostname
    except ValueError:
        target = "?"
    where = f" to {target}" if target else ""
    return ProviderRedirected(
        f"HTTP {answer.status_code}: the provider redirected{where}; vendor API calls never follow redirects"
        " (check the provider's base URL)"
    )


def error_for_status(answer: HttpAnswer, message: str, insufficient: bool = False) -> ProviderError:
    """The error class an HTTP error status means, carrying the vendor's message.

    401 and 403 are auth failures, 402 (or `insufficient`) a lack of credits, 429 a rate limit honouring
    Retry-After, 408 and 5xx transient provider errors, any other 4xx a rejected request, 3xx `redirect_error`.
    """
    status = answer.status_code
    if 300 <= status < 400:
        return redirect_error(answer)
    text = f"HTTP {status}: {message}" if message else f"HTTP {status}"
    if insufficient or status == 402:
        return InsufficientCredits(text)
    if status in (401, 403):
        return AuthFailed(text)
    if status == 429:
        return RateLimited(text, retry_after_seconds(answer.headers))
    if status == 408 or status >= 500:
        return ProviderUnavailable(text, retry_after_seconds(answer.headers))
    return ProviderRejected(text)


def is_success(answer: HttpAnswer) -> bool:
    """True for the 2xx answers every dialect accepts as success."""
    return 200 <= answer.status_code < 300


def require(data: dict[str, Any], *path: str) -> Any:
    """`data[path[0]][path[1]]...`, or ProviderUnavailable naming the missing field."""
    node: Any = data
    for key in path:
        if not isinstance(node, dict) or key not in node or node[key] is None:
            raise ProviderUnavailable(f"provider answer lacks the field {'.'.join(path)}")
        node = node[key]
    return node


def number_or_none(value: Any) -> float | None:
    """A float from a JSON number or numeric string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip().rstrip("%"))
        except ValueError:
            return None
    return None
