"""How many held batch jobs of one provider the dispatcher may release now: a pure function of the provider's state.

Released jobs take their token and in-flight slot only when their submit step runs (ProviderGuard.admit), so
those released and not yet started count against both. One token and one slot are kept back for interactive
jobs, which go straight to the submit queue and so start within seconds even during a large batch.
"""

from __future__ import annotations

import math

from shared.protection import BreakerState, ProviderStatus


def release_allowance(status: ProviderStatus, released: int, interval_seconds: float) -> int:
    """Jobs to release for the next `interval_seconds`, given `released` ones not yet started."""
    if status.breaker is BreakerState.OPEN:
        return 0
    if status.credit_pause is not None or status.breaker is BreakerState.HALF_OPEN:
        return 1 if released == 0 else 0  # one probe at a time; ProviderGuard decides when it goes
    token_reserve = 1 if status.burst > 1 else 0
    slot_reserve = 1 if status.max_in_flight > 1 else 0
    by_rate = math.floor(status.tokens + status.rate_per_second * interval_seconds) - token_reserve - released
    by_slots = status.max_in_flight - status.in_flight - slot_reserve - released
    return max(0, min(by_rate, by_slots))
