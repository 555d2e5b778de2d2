"""How many held batch jobs of one provider, or of one route, the dispatcher may release now: pure functions of the
providers' state.

Released jobs take their token and in-flight slot only when their submit step runs (ProviderGuard.admit), so
those released and not yet started count against both. One token and one slot are kept back for interactive
jobs, which go straight to the submit queue and so start within seconds even during a large batch; where a burst
or cap of 1 leaves nothing to keep back, admission itself puts a waiting interactive job first
(shared/protection/scripts.py ADMIT).
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


def route_share(status: ProviderStatus, released: int, interval_seconds: float) -> int:
    """What one provider adds to its route's release for the next `interval_seconds`, given `released` jobs of its
    own not yet started: its allowance while it takes jobs, none while its breaker is not closed or its credits
    are on hold (the route's submits pass it over then, shared/decisions/route.py: its probes are its own jobs')."""
    if status.breaker is not BreakerState.CLOSED or status.credit_pause is not None:
        return 0
    return release_allowance(status, released, interval_seconds)


def route_allowance(shares: list[int], released: int) -> int:
    """Jobs of a route to release: what its providers' shares add up to, less the route's jobs released and not
    yet started (each will take a token and a slot of whichever provider its submit chooses)."""
    return max(0, sum(shares) - released)


def spread(shares: list[int], released: int) -> list[int]:
    """`released` jobs of a route counted against its providers' shares, in order (the first fills first): what
    each provider's allowance is then short of, for the batches after this one in the same pass."""
    taken = []
    for share in shares:
        part = min(share, released)
        taken.append(part)
        released -= part
    return taken
