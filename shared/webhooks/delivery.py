"""One delivery attempt of a webhook, and the delay before the next one.

`deliver` never raises for what the network or the receiver does: every outcome is a DeliveryResult. A receiver's
Retry-After is read by shared/retry_after.py, capped at MAX_RETRY_AFTER_SECONDS.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

from shared.http_deadline import Deadline
from shared.retry_after import parse_retry_after

#: answers that ask us to slow down; their Retry-After is read
SLOW_DOWN_STATUSES = frozenset({429, 502, 503, 504})
GONE_STATUS = 410
#: how much of the receiver's answer is read (the rest is dropped unread)
MAX_ERROR_CHARS = 200


@dataclass(frozen=True)
class DeliveryResult:
    """What one POST came to.

    `delivered` for a 2xx; `gone` for 410 (stop retrying); `retry_after` in seconds when a 429/502/503/504 gave
    one; `error` a short text for anything but a 2xx (never the URL, which may carry a token).
    """

    delivered: bool
    status_code: int | None = None
    retry_after: float | None = None
    gone: bool = False
    error: str | None = None


def deliver(http: httpx.Client, url: str, headers: dict[str, str], body: bytes, timeout: float) -> DeliveryResult:
    """POST `body` to `url` once, redirects not followed, the answer's body left unread.

    `timeout` bounds each network operation and is the attempt's overall deadline: connecting, sending and the
    receiver's status line and headers all end within it, however slowly the receiver answers, when `http` sends
    through deadline transports (shared/netguard.py's do; workers/context.py's webhook client is one).
    """
    deadline = Deadline(timeout)
    try:
        with (
            deadline,
            http.stream(
                "POST", url, content=body, headers=headers, timeout=timeout, follow_redirects=False
            ) as response,
        ):
            return _result(response)
    except httpx.TimeoutException as exc:
        if deadline.expired:
            error = f"no answer within the attempt's {timeout:g}s deadline ({type(exc).__name__})"
        else:
            error = f"timed out after {timeout:g}s ({type(exc).__name__})"
        return DeliveryResult(delivered=False, error=error)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return DeliveryResult(delivered=False, error=f"{type(exc).__name__}: {str(exc)[:MAX_ERROR_CHARS]}")


def _result(response: httpx.Response) -> DeliveryResult:
    code = response.status_code
    if 200 <= code < 300:
        return DeliveryResult(delivered=True, status_code=code)
    if code == GONE_STATUS:
        return DeliveryResult(delivered=False, status_code=code, gone=True, error="HTTP 410: endpoint gone")
    if 300 <= code < 400:
        return DeliveryResult(delivered=False, status_code=code, error=f"HTTP {code}: redirects are not followed")
    retry_after = parse_retry_after(response.headers.get("retry-after")) if code in SLOW_DOWN_STATUSES else None
    return DeliveryResult(delivered=False, status_code=code, retry_after=retry_after, error=f"HTTP {code}")


def next_delay(
    attempt_index: int,
    delays: list[float],
    retry_after: float | None,
    jitter: float = 0.1,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds to wait before retry number `attempt_index` (0 = the first retry), or None once `delays` is spent.

    The scheduled delay gets ± `jitter` (a fraction) of random spread; a receiver's Retry-After wins when larger.
    """
    if attempt_index < 0 or attempt_index >= len(delays):
        return None
    spread = (rng or random).uniform(-jitter, jitter)
    delay = max(0.0, delays[attempt_index] * (1 + spread))
    if retry_after is not None and retry_after > delay:
        return retry_after
    return delay
