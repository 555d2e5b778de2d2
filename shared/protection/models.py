"""What ProviderGuard answers: an admission decision, and a provider's status."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class Admission:
    """Whether a submit may go to its vendor now; if not, after how long to ask again, and why.

    `probe` is True when the submit is let through to test a held provider (credits) or a half-open breaker.
    """

    allowed: bool
    wait_seconds: float = 0.0
    reason: str = ""
    probe: bool = False


class BreakerState(enum.StrEnum):
    """A provider's circuit breaker."""

    #: submits flow
    CLOSED = "closed"
    #: too many consecutive failures: no submit until the cooldown ends
    OPEN = "open"
    #: cooldown over: one probe at a time, until a success closes it or a failure opens it again
    HALF_OPEN = "half-open"


@dataclass(frozen=True)
class CreditPause:
    """A provider held back after an insufficient-credits answer (times in unix seconds)."""

    since: float
    message: str
    next_probe_at: float


@dataclass(frozen=True)
class ProviderStatus:
    """A snapshot of one provider's protection, for `genqueue provider status`.

    `breaker_until` is when an open breaker half-opens (None otherwise).
    """

    provider: str
    tokens: float
    burst: int
    rate_per_second: float
    in_flight: int
    max_in_flight: int
    breaker: BreakerState
    breaker_until: float | None
    consecutive_failures: int
    credit_pause: CreditPause | None
