"""Vendor protection shared by every worker on every machine: rate limit, in-flight cap, circuit breaker, credit pause.

All state lives in Redis under `genqueue:provider:{name}:...` and every decision is one Lua script, so any number
of worker processes see one limiter. Times are unix seconds passed in by the caller (`time.time()` in production,
fixed values in tests); the scripts never move a stored time backwards, so a caller whose clock lags a little
waits a little longer instead of getting extra tokens.

A submit asks `admit()` first and, when told to wait, reschedules itself for `wait_seconds` rather than sleeping
in the worker. Afterwards it reports what the vendor said: `record_success()` for an accepted submit,
`record_failure()` for a transient failure (5xx, transport), `pause_for_credits()` for an insufficient-credits
answer; and `free_slot()` once the vendor is done with the job (or refused it), which frees its in-flight slot.
"""

from __future__ import annotations

from shared.protection.guard import ProviderGuard
from shared.protection.models import Admission, BreakerState, CreditPause, ProviderStatus

__all__ = ["Admission", "BreakerState", "CreditPause", "ProviderGuard", "ProviderStatus"]
