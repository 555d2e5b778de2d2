"""The I/O edge of the adapters: send an `HttpRequest` with httpx and hand back an `HttpAnswer`.

Transport failures are translated here, at the boundary, into ProviderUnavailable. `SendFailed.sent` tells a
failure where the request certainly never reached the vendor (connection refused, connect timeout) from one
where it may have (the answer was lost): only the first is safe to resubmit.

Redirects are never followed, whatever the client says: a 3xx answer raises ProviderRedirected (permanent, see
`redirect_error`) here, before any adapter reads it, so no vendor error code in its body can make it retryable.
"""

from __future__ import annotations

import contextlib

import httpx

from shared.errors import ProviderUnavailable
from shared.http_deadline import Deadline
from shared.providers.base import MAX_ANSWER_BYTES, HttpAnswer, HttpRequest, redirect_error


class SendFailed(ProviderUnavailable):
    """Raised when no answer came back; `sent` is False only when the request never left."""

    def __init__(self, message: str, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


def send(
    http: httpx.Client, request: HttpRequest, api_key: str | None = None, deadline_seconds: float | None = None
) -> HttpAnswer:
    """Send `request` once, redirects not followed; the body read is capped just past MAX_ANSWER_BYTES.

    The adapter refuses larger bodies. A 3xx answer raises ProviderRedirected, its body unread; no answer at all
    raises SendFailed. With `deadline_seconds` (and a client made with shared/http_deadline.py's transport) the
    whole exchange ends by then, so a vendor trickling its answer cannot hold the worker thread.
    """
    bound = Deadline(deadline_seconds) if deadline_seconds else contextlib.nullcontext()
    try:
        with (
            bound,
            http.stream(
                request.method, request.url, headers=request.headers, json=request.json_body, follow_redirects=False
            ) as response,
        ):
            headers = {name.lower(): value for name, value in response.headers.items()}
            if 300 <= response.status_code < 400:
                raise redirect_error(HttpAnswer(status_code=response.status_code, headers=headers))
            body = bytearray()
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > MAX_ANSWER_BYTES:
                    break
            return HttpAnswer(status_code=response.status_code, headers=headers, body=bytes(body))
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        host = httpx.URL(request.url).host
        raise SendFailed(f"could not connect to {host}: {type(exc).__name__}", sent=False) from None
    except httpx.HTTPError as exc:
        host = httpx.URL(request.url).host
        detail = str(exc)[:200]
        raise SendFailed(f"no answer from {host}: {type(exc).__name__} {detail}".strip(), sent=True) from None
