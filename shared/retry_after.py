"""Retry-After (RFC 9110 §10.2.3), read one way for vendors and webhook receivers alike, and capped.

Whoever sends it is not trusted to set our schedule: a value past MAX_RETRY_AFTER_SECONDS is read as that
(a vendor's "come back in 10^400 s" must neither break a countdown nor park a job for a year).
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC
from email.utils import parsedate_to_datetime

#: the longest wait a vendor or a receiver can ask of us
MAX_RETRY_AFTER_SECONDS = 3600.0

_DELTA_SECONDS = re.compile(r"\d+(\.\d+)?")


def parse_retry_after(
    value: str | None, now: float | None = None, cap: float = MAX_RETRY_AFTER_SECONDS
) -> float | None:
    """Seconds to wait from a Retry-After value, between 0 and `cap`; None when absent or unreadable.

    Delta-seconds (a decimal fraction is accepted) or an HTTP date, compared with `now` (unix seconds, default
    the clock); a date without a zone is read as UTC, a date in the past as 0. Anything else (a sign, an exponent,
    "inf", words) is unreadable.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        seconds = float(value)  # 400 digits read as inf: past the cap all the same
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), cap)
