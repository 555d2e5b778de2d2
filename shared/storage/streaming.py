"""The download side of a copy: httpx errors mapped onto shared.errors, the copy's bounds, and a byte stream
regrouped into parts.

Messages name the host only: an output URL carries its signature in the query string, and error messages end up
in the job's public JSON. A bound crossed (size, time, redirects) or an address refused by the guard is
DownloadFailed, permanent: the same link would cross it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from shared.errors import DownloadFailed, DownloadUnavailable
from shared.http_deadline import Deadline
from shared.netguard import BlockedAddress

#: answers that mean the link is dead for good
GONE_STATUSES = frozenset({403, 404, 410})
#: redirects an output download follows, each hop checked by the address guard (workers/context.py)
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class CopyBounds:
    """What one output's copy may take: `max_bytes` of body, `max_seconds` of wall clock in all."""

    max_bytes: int
    max_seconds: float


def url_host(url: str) -> str:
    """The host of `url` for messages, or "?" when it does not parse."""
    try:
        return httpx.URL(url).host or "?"
    except (httpx.InvalidURL, ValueError, TypeError):
        return "?"


def check_status(response: httpx.Response, host: str) -> None:
    """Raise for any answer but 2xx: DownloadFailed for 3xx and 4xx, DownloadUnavailable for 5xx."""
    code = response.status_code
    if 200 <= code < 300:
        return
    if code in GONE_STATUSES:
        raise DownloadFailed(f"output link at {host} answered HTTP {code} (expired or missing)")
    if code >= 500:
        raise DownloadUnavailable(f"output link at {host} answered HTTP {code}")
    if 300 <= code < 400:
        raise DownloadFailed(f"output link at {host} answered HTTP {code} (redirect not followed)")
    raise DownloadFailed(f"output link at {host} answered HTTP {code}")


def check_length(response: httpx.Response, host: str, bounds: CopyBounds) -> None:
    """DownloadFailed when the answer announces more than `bounds.max_bytes`, before a byte of it is read."""
    announced = response.headers.get("content-length", "").strip()
    if announced.isdigit() and int(announced) > bounds.max_bytes:
        raise DownloadFailed(
            f"output at {host} announces {int(announced)} bytes, over the {bounds.max_bytes}-byte bound"
            " (GENQUEUE_MAX_OUTPUT_BYTES); not read"
        )


def bounded(chunks: Iterable[bytes], host: str, bounds: CopyBounds, deadline: Deadline) -> Iterator[bytes]:
    """`chunks` as they come, DownloadFailed once they pass `bounds.max_bytes` or the `deadline` has passed.

    The byte count is of the decoded body, so a compressed answer cannot slip past it.
    """
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > bounds.max_bytes:
            raise DownloadFailed(
                f"output at {host} is larger than the {bounds.max_bytes}-byte bound (GENQUEUE_MAX_OUTPUT_BYTES);"
                f" stopped after {size} bytes"
            )
        if deadline.expired:
            raise _too_slow(host, bounds)
        yield chunk


def _too_slow(host: str, bounds: CopyBounds) -> DownloadFailed:
    return DownloadFailed(
        f"copy from {host} took longer than the {bounds.max_seconds:g}s bound (GENQUEUE_MAX_COPY_SECONDS)"
    )


@contextmanager
def download_errors(host: str, bounds: CopyBounds | None = None, deadline: Deadline | None = None) -> Iterator[None]:
    """Translate httpx exceptions raised inside into DownloadFailed (permanent) or DownloadUnavailable.

    A timeout past `deadline` is the copy's wall-clock bound (permanent); a refused address names the block.
    """
    try:
        yield
    except BlockedAddress as exc:
        raise DownloadFailed(f"output link at {host} was refused by the address guard: {exc}") from exc
    except httpx.TooManyRedirects as exc:
        raise DownloadFailed(f"output link at {host} redirected more than {MAX_REDIRECTS} times") from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.DecodingError) as exc:
        raise DownloadFailed(f"output link at {host} is unusable: {type(exc).__name__}") from exc
    except httpx.TimeoutException as exc:
        if deadline is not None and bounds is not None and deadline.expired:
            raise _too_slow(host, bounds) from exc
        raise DownloadUnavailable(f"download from {host} timed out ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise DownloadUnavailable(f"download from {host} failed: {type(exc).__name__}") from exc


def iter_parts(chunks: Iterable[bytes], part_bytes: int) -> Iterator[tuple[bytearray, bool]]:
    """Regroup `chunks` into parts of exactly `part_bytes` (the last one shorter, or empty for an empty stream).

    Yields `(part, last)`. A full part is held back until the next byte arrives, so `last` is known for certain.
    The buffer is cleared once the consumer asks for the next part: use (upload) each part before moving on.
    """
    if part_bytes <= 0:
        raise ValueError("part_bytes must be positive")
    part = bytearray()
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            if len(part) == part_bytes:
                yield part, False
                part.clear()
            room = part_bytes - len(part)
            part += view[:room]
            view = view[room:]
    yield part, True
