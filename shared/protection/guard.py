"""ProviderGuard: the rate limit, in-flight cap, circuit breaker and credit pause of every provider, in Redis."""

from __future__ import annotations

from typing import Any

import redis

from shared.constants import (
    PROVIDER_BREAKER_KEY,
    PROVIDER_BUCKET_KEY,
    PROVIDER_CREDIT_PAUSE_KEY,
    PROVIDER_IN_FLIGHT_KEY,
    PROVIDER_INTERACTIVE_WAITING_KEY,
)
from shared.protection import scripts
from shared.protection.models import Admission, BreakerState, CreditPause, ProviderStatus
from shared.settings import ProviderConfig, ProviderLimits

#: a job that never freed its in-flight slot (its worker died) loses it this long after its last admission
DEFAULT_IN_FLIGHT_TTL_SECONDS = 2 * 3600.0
#: how long a half-open breaker's probe may take before another job may probe instead (a submit's lease)
DEFAULT_PROBE_LEASE_SECONDS = 120.0
#: how long a job waits when the in-flight cap is reached or another job is probing a half-open breaker
DEFAULT_BUSY_WAIT_SECONDS = 5.0
#: how long a refused interactive job holds batch jobs back, unless the caller says (its recheck delay and more)
DEFAULT_INTERACTIVE_HOLD_SECONDS = 10.0


class ProviderGuard:
    """Admission control for vendor submits, shared through Redis by every worker.

    `probe_lease_seconds` bounds how long a half-open probe blocks others if it never reports back;
    `busy_wait_seconds` is the wait given when the in-flight cap is reached or another job is probing.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        probe_lease_seconds: float = DEFAULT_PROBE_LEASE_SECONDS,
        busy_wait_seconds: float = DEFAULT_BUSY_WAIT_SECONDS,
    ) -> None:
        self.redis = client
        self.probe_lease_seconds = probe_lease_seconds
        self.busy_wait_seconds = busy_wait_seconds
        self._admit = client.register_script(scripts.ADMIT)
        self._free_slot = client.register_script(scripts.FREE_SLOT)
        self._success = client.register_script(scripts.SUCCESS)
        self._failure = client.register_script(scripts.FAILURE)
        self._pause = client.register_script(scripts.PAUSE)

    def admit(
        self,
        config: ProviderConfig,
        job_id: str,
        now: float,
        ttl_seconds: float = DEFAULT_IN_FLIGHT_TTL_SECONDS,
        interactive: bool = True,
        interactive_hold_seconds: float = DEFAULT_INTERACTIVE_HOLD_SECONDS,
    ) -> Admission:
        """Decide whether job `job_id` may be submitted to `config.name` now.

        An `interactive` job (one of no batch) refused for the in-flight cap or the rate holds batch jobs back
        until it is admitted, for `interactive_hold_seconds` at most (set it above the refused job's recheck
        delay): batch jobs are refused meanwhile, so the next slot and token are the interactive job's.

        Checks, in order: credit pause, circuit breaker, in-flight cap, rate limit; the first that refuses gives
        the wait and reason. When all pass, the job takes a token and an in-flight slot (held for `ttl_seconds`
        unless freed) in the same atomic step. A job already in flight is admitted again without taking
        another slot or token, but still waits while the provider is held or its breaker is open.

        `now` is the caller's `time.time()`. A refusal changes nothing and has `wait_seconds > 0`. An admission
        with `probe=True` must report how the submit went (`record_success`, `record_failure`,
        `pause_for_credits`) or `free_slot` the job, or other submits wait for the probe until its lease runs out.
        Raises ValueError for limits that could never admit anything.
        """
        limits = config.limits
        _check_limits(config.name, limits)
        allowed, wait, reason, probe = self._admit(
            keys=_keys(
                config.name,
                PROVIDER_CREDIT_PAUSE_KEY,
                PROVIDER_BREAKER_KEY,
                PROVIDER_IN_FLIGHT_KEY,
                PROVIDER_BUCKET_KEY,
                PROVIDER_INTERACTIVE_WAITING_KEY,
            ),
            args=[
                job_id,
                now,
                ttl_seconds,
                limits.rate_per_second,
                limits.burst,
                limits.max_in_flight,
                limits.credit_probe_interval_seconds,
                self.probe_lease_seconds,
                self.busy_wait_seconds,
                "1" if interactive else "",
                interactive_hold_seconds,
            ],
        )
        return Admission(allowed=bool(allowed), wait_seconds=float(wait), reason=_text(reason), probe=bool(probe))

    def free_slot(self, provider: str, job_id: str) -> None:
        """Free the in-flight slot (and half-open probe slot) of `job_id`: the vendor is done with it or refused it.

        Safe to call more than once.
        """
        self._free_slot(keys=_keys(provider, PROVIDER_IN_FLIGHT_KEY, PROVIDER_BREAKER_KEY), args=[job_id])

    def record_success(self, provider: str, job_id: str) -> None:
        """The vendor accepted `job_id`'s submit: reset failures and close the breaker.

        If `job_id` was admitted as a credit probe during the current pause, the pause is lifted too.
        """
        self._success(keys=_keys(provider, PROVIDER_BREAKER_KEY, PROVIDER_CREDIT_PAUSE_KEY), args=[job_id])

    def record_failure(self, config: ProviderConfig, now: float) -> None:
        """Count a transient vendor failure (5xx, transport error).

        The `breaker_threshold`-th consecutive failure opens the breaker for `breaker_cooldown_seconds`; a
        failure while half-open opens it again for as long. Failures while open do not extend it.
        """
        limits = config.limits
        self._failure(
            keys=_keys(config.name, PROVIDER_BREAKER_KEY),
            args=[now, limits.breaker_threshold, limits.breaker_cooldown_seconds],
        )

    def pause_for_credits(self, provider: str, now: float, message: str) -> None:
        """Hold `provider` back after an insufficient-credits answer: from now on one submit per
        `credit_probe_interval_seconds` goes through as a probe, counted from the latest refusal or probe.
        """
        self._pause(keys=_keys(provider, PROVIDER_CREDIT_PAUSE_KEY), args=[now, message])

    def resume(self, provider: str) -> None:
        """Lift the credit pause and close the breaker of `provider` (an operator's `genqueue provider resume`)."""
        self.redis.delete(*_keys(provider, PROVIDER_CREDIT_PAUSE_KEY, PROVIDER_BREAKER_KEY))

    def status(self, configs: list[ProviderConfig], now: float) -> list[ProviderStatus]:
        """A snapshot of each provider's limits and state at `now`, read in one transaction. Changes nothing."""
        pipe = self.redis.pipeline()
        for config in configs:
            pipe.hmget(PROVIDER_BUCKET_KEY.format(name=config.name), ["tokens", "at"])
            pipe.zcount(PROVIDER_IN_FLIGHT_KEY.format(name=config.name), f"({now!r}", "+inf")
            pipe.hmget(PROVIDER_BREAKER_KEY.format(name=config.name), ["failures", "open_until"])
            pipe.hmget(
                PROVIDER_CREDIT_PAUSE_KEY.format(name=config.name), ["since", "message", "refused_at", "last_probe_at"]
            )
        replies = pipe.execute()
        return [_status(config, now, replies[i * 4 : i * 4 + 4]) for i, config in enumerate(configs)]


def _status(config: ProviderConfig, now: float, replies: list[Any]) -> ProviderStatus:
    """One provider's status from the four replies `status()` read for it, computed as the admit script would."""
    bucket, in_flight, breaker, pause = replies
    limits = config.limits
    tokens = float(limits.burst)
    if bucket[0] is not None:
        last = float(bucket[1])
        tokens = min(tokens, float(bucket[0]) + max(0.0, now - last) * limits.rate_per_second)
    open_until = float(breaker[1]) if breaker[1] is not None else 0.0
    state, until = BreakerState.CLOSED, None
    if open_until > 0:
        state, until = (BreakerState.OPEN, open_until) if now < open_until else (BreakerState.HALF_OPEN, None)
    credit_pause = None
    since, message, refused_at, last_probe = pause
    if since is not None and refused_at is not None:
        last_event = max(float(refused_at), float(last_probe) if last_probe is not None else 0.0)
        credit_pause = CreditPause(
            since=float(since),
            message=_text(message or b""),
            next_probe_at=last_event + limits.credit_probe_interval_seconds,
        )
    return ProviderStatus(
        provider=config.name,
        tokens=tokens,
        burst=limits.burst,
        rate_per_second=limits.rate_per_second,
        in_flight=int(in_flight),
        max_in_flight=limits.max_in_flight,
        breaker=state,
        breaker_until=until,
        consecutive_failures=int(breaker[0]) if breaker[0] is not None else 0,
        credit_pause=credit_pause,
    )


def _check_limits(name: str, limits: ProviderLimits) -> None:
    """ValueError for limits no submit could ever pass (a misconfiguration, better loud than a silent stall)."""
    if limits.rate_per_second <= 0 or limits.burst < 1 or limits.max_in_flight < 1:
        raise ValueError(
            f"provider {name!r}: rate_per_second must be > 0, burst and max_in_flight >= 1 (got {limits!r})"
        )


def _keys(provider: str, *templates: str) -> list[str]:
    return [template.format(name=provider) for template in templates]


def _text(value: object) -> str:
    """A Redis reply (bytes or str, as the client is configured) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
