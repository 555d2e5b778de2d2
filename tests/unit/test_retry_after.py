"""One Retry-After parser (shared/retry_after.py) for vendors and webhook receivers, capped at an hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from shared.errors import ProviderUnavailable, RateLimited
from shared.providers.base import HttpAnswer, error_for_status, retry_after_seconds
from shared.retry_after import MAX_RETRY_AFTER_SECONDS, parse_retry_after
from shared.webhooks import deliver

NOW = 1_700_000_000.0


def http_date(seconds_from_now: float) -> str:
    return format_datetime(datetime.fromtimestamp(NOW + seconds_from_now, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("3600", 3600.0),
        ("3601", 3600.0),
        ("86400", 3600.0),
        ("9" * 400, 3600.0),  # inf as a float: past the cap all the same
        (http_date(90), 90.0),
        (http_date(-90), 0.0),
        (http_date(10 * 86400), 3600.0),
        ("Tue, 14 Nov 2023 22:13:20 -0000", 0.0),  # no zone: read as UTC (this is NOW)
    ],
)
def test_readable_values_are_bounded(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize("value", [None, "", "  ", "-3", "+3", "1e3", "inf", "nan", "soon", "12 seconds", "0x10"])
def test_unreadable_values_are_none(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


def test_the_cap_is_a_parameter() -> None:
    assert parse_retry_after("600", cap=60) == 60.0
    assert MAX_RETRY_AFTER_SECONDS == 3600.0


def test_vendor_answers_are_capped() -> None:
    answer = HttpAnswer(status_code=429, headers={"retry-after": "86400"})
    assert retry_after_seconds(answer.headers) == 3600.0
    error = error_for_status(answer, "slow down")
    assert isinstance(error, RateLimited) and error.retry_after == 3600.0
    unavailable = error_for_status(HttpAnswer(status_code=503, headers={"retry-after": "99999999"}), "")
    assert isinstance(unavailable, ProviderUnavailable) and unavailable.retry_after == 3600.0
    later = datetime.now(UTC) + timedelta(days=30)
    assert retry_after_seconds({"retry-after": format_datetime(later, usegmt=True)}) == 3600.0


def test_webhook_receivers_are_capped() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(429, headers={"retry-after": "1" + "0" * 12}))
    with httpx.Client(transport=transport) as client:
        result = deliver(client, "https://receiver.test/hook", {}, b"{}", timeout=5)
    assert not result.delivered and result.retry_after == 3600.0
