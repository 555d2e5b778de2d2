"""The download side of a copy: httpx errors mapped onto shared.errors, and a byte stream regrouped into parts.

Messages name the host only: an output URL carries its signature in the query string, and error messages end up
in the job's public JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import httpx

from shared.errors import DownloadFailed, TransientDownloadError

#: answers that mean the link is dead for good
GONE_STATUSES = frozenset({403, 404, 410})


def url_host(url: str) -> str:
    """The host of `url` for messages, or "?" when it does not parse."""
    try:
        return httpx.URL(url).host or "?"
    except (httpx.InvalidURL, ValueError, TypeError):
        return "?"


def check_status(response: httpx.Response, host: str) -> None:
    """Raise for any answer but 2xx: DownloadFailed for 3xx and 4xx, TransientDownloadError for 5xx."""
    code = response.status_code
    if 200 <= code < 300:
        return
    if code in GONE_STATUSES:
        raise DownloadFailed(f"output link at {host} answered HTTP {code} (expired or missing)")
    if code >= 500:
        raise TransientDownloadError(f"output link at {host} answered HTTP {code}")
    if 300 <= code < 400:
        raise DownloadFailed(f"output link at {host} answered HTTP {code} (redirect not followed)")
    raise DownloadFailed(f"output link at {host} answered HTTP {code}")


@contextmanager
def download_errors(host: str) -> Iterator[None]:
    """Translate httpx exceptions raised inside into DownloadFailed (permanent) or TransientDownloadError."""
    try:
        yield
    except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.TooManyRedirects, httpx.DecodingError) as exc:
        raise DownloadFailed(f"output link at {host} is unusable: {type(exc).__name__}") from exc
    except httpx.TimeoutException as exc:
        raise TransientDownloadError(f"download from {host} timed out ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise TransientDownloadError(f"download from {host} failed: {type(exc).__name__}") from exc


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
