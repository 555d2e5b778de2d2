"""ProviderGuard against fakeredis (which runs the Lua scripts), with explicit, deterministic times."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.constants import PROVIDER_BUCKET_KEY, PROVIDER_IN_FLIGHT_KEY
from shared.protection import Admission, BreakerState, ProviderGuard
from shared.settings import ProviderConfig, ProviderLimits

#: a realistic unix time, so that precision lost in Lua (14 significant digits) would show
T0 = 1_700_000_000.0
BUSY = 5.0
LEASE = 120.0


def provider(name: str = "vendor", **limits: Any) -> ProviderConfig:
    return ProviderConfig(name=name, dialect="sandbox", base_url="http://vendor.test", limits=ProviderLimits(**limits))


def new_guard(decode_responses: bool = False) -> ProviderGuard:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=decode_responses)
    return ProviderGuard(client, probe_lease_seconds=LEASE, busy_wait_seconds=BUSY)


@pytest.fixture(params=[False, True], ids=["bytes", "decoded"])
def guard(request: pytest.FixtureRequest) -> Iterator[ProviderGuard]:
    yield new_guard(decode_responses=request.param)


def texts(members: Any) -> set[str]:
    return {m.decode() if isinstance(m, bytes) else str(m) for m in members}


def in_flight(guard: ProviderGuard, name: str = "vendor") -> set[str]:
    return texts(guard.redis.zrange(PROVIDER_IN_FLIGHT_KEY.format(name=name), 0, -1))


def live_in_flight(guard: ProviderGuard, now: float) -> set[str]:
    """Jobs in flight at `now`: entries past their expiry stay in Redis until the next admit prunes them."""
    return texts(guard.redis.zrangebyscore(PROVIDER_IN_FLIGHT_KEY.format(name="vendor"), f"({now!r}", "+inf"))


def admitted(admission: Admission) -> bool:
    return admission.allowed and admission.wait_seconds == 0


# --- token bucket


def test_bucket_allows_burst_at_once_then_waits_exactly_for_the_next_token(guard: ProviderGuard) -> None:
    config = provider(rate_per_second=2.0, burst=3)
    assert all(admitted(guard.admit(config, f"j{i}", T0)) for i in range(3))
    refused = guard.admit(config, "j3", T0)
    assert refused == Admission(allowed=False, wait_seconds=0.5, reason="rate limit", probe=False)
    assert guard.admit(config, "j3", T0 + 0.125).wait_seconds == 0.375
    assert guard.admit(config, "j3", T0 + 0.5).allowed
    assert guard.admit(config, "j4", T0 + 0.5).wait_seconds == 0.5


def test_bucket_grants_exactly_burst_plus_rate_times_elapsed(guard: ProviderGuard) -> None:
    config = provider(rate_per_second=5.0, burst=3, max_in_flight=1000)
    now, granted, job = T0, 0, 0
    while now <= T0 + 10.0 + 1e-9:
        admission = guard.admit(config, f"j{job}", now)
        if admission.allowed:
            granted, job = granted + 1, job + 1
        else:
            assert admission.reason == "rate limit"
            now += admission.wait_seconds  # coming back exactly when told must be enough
    assert granted == 3 + 5 * 10


def test_bucket_refills_only_up_to_burst(guard: ProviderGuard) -> None:
    config = provider(rate_per_second=1.0, burst=2)
    for i in range(2):
        guard.admit(config, f"a{i}", T0)
    assert all(guard.admit(config, f"b{i}", T0 + 3600).allowed for i in range(2))
    assert guard.admit(config, "b2", T0 + 3600).wait_seconds == 1.0


def test_a_caller_whose_clock_lags_gets_no_extra_tokens(guard: ProviderGuard) -> None:
    config = provider(rate_per_second=1.0, burst=1)
    assert guard.admit(config, "ahead", T0 + 10).allowed
    late = guard.admit(config, "behind", T0 + 8)
    assert late.reason == "rate limit" and late.wait_seconds == 3.0


# --- in-flight cap


def test_cap_blocks_the_next_job_until_one_is_released(guard: ProviderGuard) -> None:
    config = provider(max_in_flight=2, burst=100)
    assert guard.admit(config, "a", T0).allowed and guard.admit(config, "b", T0).allowed
    refused = guard.admit(config, "c", T0)
    assert refused == Admission(allowed=False, wait_seconds=BUSY, reason="in-flight cap 2 reached", probe=False)
    guard.free_slot("vendor", "a")
    guard.free_slot("vendor", "a")  # twice is harmless
    assert guard.admit(config, "c", T0).allowed
    assert in_flight(guard) == {"b", "c"}


def test_refused_for_the_cap_takes_no_token(guard: ProviderGuard) -> None:
    config = provider(max_in_flight=1, burst=2, rate_per_second=0.001)
    assert guard.admit(config, "a", T0).allowed
    for _ in range(5):
        assert guard.admit(config, "b", T0).reason == "in-flight cap 1 reached"
    guard.free_slot("vendor", "a")
    assert guard.admit(config, "b", T0).allowed  # the second token was still there
    guard.free_slot("vendor", "b")
    assert guard.admit(config, "c", T0).reason == "rate limit"


def test_expired_entries_are_pruned(guard: ProviderGuard) -> None:
    config = provider(max_in_flight=1, burst=100)
    assert guard.admit(config, "crashed", T0, ttl_seconds=60).allowed
    assert not guard.admit(config, "next", T0 + 59.5).allowed
    assert guard.status([config], T0 + 59.5)[0].in_flight == 1
    assert guard.status([config], T0 + 60)[0].in_flight == 0
    assert guard.admit(config, "next", T0 + 60).allowed
    assert in_flight(guard) == {"next"}


def test_readmission_is_idempotent_takes_no_slot_or_token_and_renews_the_expiry(guard: ProviderGuard) -> None:
    config = provider(max_in_flight=1, burst=1, rate_per_second=0.001)
    assert guard.admit(config, "a", T0, ttl_seconds=60).allowed
    again = guard.admit(config, "a", T0 + 50, ttl_seconds=60)
    assert again == Admission(allowed=True, wait_seconds=0.0, reason="already in flight", probe=False)
    assert in_flight(guard) == {"a"}
    assert guard.status([config], T0 + 50)[0].tokens == pytest.approx(0.05)
    assert guard.admit(config, "b", T0 + 100).reason == "in-flight cap 1 reached"  # a's slot now expires at +110


# --- circuit breaker


def test_breaker_opens_after_threshold_consecutive_failures_only(guard: ProviderGuard) -> None:
    config = provider(breaker_threshold=3, breaker_cooldown_seconds=30, burst=100)
    for _ in range(2):
        guard.record_failure(config, T0)
    guard.record_success("vendor", "ok")  # not consecutive any more
    for _ in range(2):
        guard.record_failure(config, T0)
    assert guard.admit(config, "a", T0).allowed
    guard.record_failure(config, T0)
    assert guard.admit(config, "b", T0) == Admission(allowed=False, wait_seconds=30.0, reason="circuit open")
    assert guard.admit(config, "b", T0 + 20).wait_seconds == 10.0
    guard.record_failure(config, T0 + 25)  # a straggler failing while open does not extend it
    assert guard.admit(config, "b", T0 + 25).wait_seconds == 5.0


def test_half_open_admits_one_probe_and_success_closes(guard: ProviderGuard) -> None:
    config = provider(breaker_threshold=1, breaker_cooldown_seconds=30, burst=100)
    guard.record_failure(config, T0)
    probe = guard.admit(config, "probe", T0 + 30)
    assert probe == Admission(allowed=True, reason="probe: circuit half-open", probe=True)
    assert guard.admit(config, "probe", T0 + 31).probe  # its own redelivery is still the probe
    other = guard.admit(config, "other", T0 + 31)
    assert other == Admission(allowed=False, wait_seconds=BUSY, reason="circuit half-open: probe in progress")
    guard.record_success("vendor", "probe")
    assert guard.admit(config, "other", T0 + 31) == Admission(allowed=True, reason="admitted")
    assert guard.status([config], T0 + 31)[0].consecutive_failures == 0


def test_half_open_failure_reopens(guard: ProviderGuard) -> None:
    config = provider(breaker_threshold=2, breaker_cooldown_seconds=30, burst=100)
    guard.record_failure(config, T0)
    guard.record_failure(config, T0)
    assert guard.admit(config, "probe", T0 + 30).probe
    guard.record_failure(config, T0 + 31)
    assert guard.admit(config, "next", T0 + 40) == Admission(allowed=False, wait_seconds=21.0, reason="circuit open")
    assert guard.admit(config, "next", T0 + 61).probe


def test_a_silent_probe_blocks_others_only_for_its_lease_or_until_released(guard: ProviderGuard) -> None:
    config = provider(breaker_threshold=1, breaker_cooldown_seconds=30, burst=100)
    guard.record_failure(config, T0)
    assert guard.admit(config, "lost", T0 + 30).probe
    assert guard.admit(config, "b", T0 + 30 + LEASE - 1).wait_seconds == 1.0  # capped at the lease's end
    assert guard.admit(config, "b", T0 + 30 + LEASE).probe
    guard.free_slot("vendor", "b")  # e.g. refused with a 4xx: neither success nor transient failure
    assert guard.admit(config, "c", T0 + 30 + LEASE).probe


# --- credit pause


def test_credit_pause_lets_one_probe_through_per_interval(guard: ProviderGuard) -> None:
    config = provider(credit_probe_interval_seconds=60, burst=100)
    guard.pause_for_credits("vendor", T0, "balance too low")
    held = guard.admit(config, "a", T0 + 1)
    assert held == Admission(allowed=False, wait_seconds=59.0, reason="held: insufficient credits")
    assert guard.admit(config, "a", T0 + 60) == Admission(
        allowed=True, reason="probe: insufficient credits", probe=True
    )
    assert guard.admit(config, "b", T0 + 60).wait_seconds == 60.0
    guard.pause_for_credits("vendor", T0 + 62, "still too low")  # the probe was refused too: next slot from then
    guard.free_slot("vendor", "a")
    assert guard.admit(config, "b", T0 + 121).wait_seconds == 1.0
    assert guard.admit(config, "b", T0 + 122).probe
    guard.record_success("vendor", "straggler")  # admitted before the pause: proves nothing about the balance
    assert guard.admit(config, "c", T0 + 123).reason == "held: insufficient credits"
    guard.record_success("vendor", "b")
    assert guard.admit(config, "c", T0 + 123) == Admission(allowed=True, reason="admitted")


def test_credit_probe_slot_is_not_spent_when_another_check_refuses(guard: ProviderGuard) -> None:
    config = provider(credit_probe_interval_seconds=60, max_in_flight=1, burst=100)
    assert guard.admit(config, "running", T0).allowed
    guard.pause_for_credits("vendor", T0, "no credits")
    assert guard.admit(config, "a", T0 + 60).reason == "in-flight cap 1 reached"
    guard.free_slot("vendor", "running")
    assert guard.admit(config, "b", T0 + 61).probe


def test_resume_lifts_the_pause_and_closes_the_breaker(guard: ProviderGuard) -> None:
    config = provider(breaker_threshold=1, credit_probe_interval_seconds=60, burst=100)
    guard.pause_for_credits("vendor", T0, "no credits")
    guard.record_failure(config, T0)
    guard.resume("vendor")
    assert guard.admit(config, "a", T0 + 1) == Admission(allowed=True, reason="admitted")
    [status] = guard.status([config], T0 + 1)
    assert status.credit_pause is None and status.breaker is BreakerState.CLOSED


# --- status and the rest


def test_status_reports_every_limit_and_state(guard: ProviderGuard) -> None:
    busy = provider("busy", rate_per_second=2.0, burst=4, max_in_flight=3, breaker_threshold=2)
    held = provider("held", credit_probe_interval_seconds=60, breaker_threshold=1, breaker_cooldown_seconds=30)
    idle = provider("idle")
    for job in ("a", "b"):
        guard.admit(busy, job, T0)
    guard.record_failure(busy, T0)
    guard.pause_for_credits("held", T0, "top up your account")
    guard.record_failure(held, T0 + 5)

    busy_status, held_status, idle_status = guard.status([busy, held, idle], T0 + 0.5)
    assert busy_status.provider == "busy"
    assert (busy_status.tokens, busy_status.burst, busy_status.rate_per_second) == (3.0, 4, 2.0)
    assert (busy_status.in_flight, busy_status.max_in_flight) == (2, 3)
    assert (busy_status.breaker, busy_status.breaker_until) == (BreakerState.CLOSED, None)
    assert busy_status.consecutive_failures == 1
    assert busy_status.credit_pause is None
    assert (held_status.breaker, held_status.breaker_until) == (BreakerState.OPEN, T0 + 35)
    assert held_status.credit_pause is not None
    assert (held_status.credit_pause.since, held_status.credit_pause.message) == (T0, "top up your account")
    assert held_status.credit_pause.next_probe_at == T0 + 60
    assert (idle_status.tokens, idle_status.in_flight, idle_status.breaker) == (10.0, 0, BreakerState.CLOSED)
    assert guard.status([held], T0 + 35)[0].breaker is BreakerState.HALF_OPEN


def test_providers_are_independent(guard: ProviderGuard) -> None:
    one, two = provider("one", burst=1, rate_per_second=0.001), provider("two", burst=1, rate_per_second=0.001)
    assert guard.admit(one, "a", T0).allowed
    assert guard.admit(two, "a", T0).allowed
    assert guard.redis.exists(PROVIDER_BUCKET_KEY.format(name="one"), PROVIDER_BUCKET_KEY.format(name="two")) == 2


@pytest.mark.parametrize("limits", [{"rate_per_second": 0}, {"burst": 0}, {"max_in_flight": 0}])
def test_limits_no_submit_could_pass_are_refused_loudly(guard: ProviderGuard, limits: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="vendor"):
        guard.admit(provider(**limits), "a", T0)


# --- many workers at once


def run_threads(count: int, target: Any) -> None:
    threads = [threading.Thread(target=target, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_concurrent_admits_never_exceed_the_cap_or_the_burst() -> None:
    guard = new_guard()
    capped = provider("capped", max_in_flight=20, burst=1000)
    limited = provider("limited", max_in_flight=1000, burst=15, rate_per_second=0.001)
    granted: dict[str, list[str]] = {"capped": [], "limited": []}

    def worker(n: int) -> None:
        for i in range(50):
            for config in (capped, limited):
                if guard.admit(config, f"{n}-{i}", T0).allowed:
                    granted[config.name].append(f"{n}-{i}")

    run_threads(8, worker)
    assert len(granted["capped"]) == 20 and len(granted["limited"]) == 15
    assert in_flight(guard, "capped") == set(granted["capped"])


def test_concurrent_admits_and_releases_keep_within_the_cap() -> None:
    guard = new_guard()
    config = provider(max_in_flight=5, burst=10_000)
    lock = threading.Lock()
    holding, peak, admitted_total = 0, 0, 0

    def worker(n: int) -> None:
        nonlocal holding, peak, admitted_total
        for i in range(50):
            job = f"{n}-{i}"
            if not guard.admit(config, job, T0).allowed:
                continue
            with lock:  # counted while the slot is surely held: after admit, before release
                holding += 1
                peak = max(peak, holding)
                admitted_total += 1
            with lock:
                holding -= 1
            guard.free_slot("vendor", job)

    run_threads(8, worker)
    assert 0 < peak <= 5 and admitted_total >= 50
    assert in_flight(guard) == set()


# --- properties

operations = st.lists(
    st.tuples(
        st.sampled_from(["admit", "release"]),
        st.integers(min_value=0, max_value=11),  # job
        st.floats(min_value=0, max_value=3, allow_nan=False),  # time step
    ),
    min_size=1,
    max_size=120,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=operations,
    rate=st.floats(min_value=0.5, max_value=20),
    burst=st.integers(min_value=1, max_value=6),
    cap=st.integers(min_value=1, max_value=12),
    ttl=st.floats(min_value=0.5, max_value=30),
)
def test_in_flight_and_tokens_stay_within_limits(
    ops: list[tuple[str, int, float]], rate: float, burst: int, cap: int, ttl: float
) -> None:
    guard = new_guard()
    config = provider(rate_per_second=rate, burst=burst, max_in_flight=cap)
    expiries: dict[str, float] = {}  # the model of the in-flight set: job -> expiry
    token_times: list[float] = []
    now = T0
    for action, number, step in ops:
        now += step
        job = f"j{number}"
        expiries = {j: expiry for j, expiry in expiries.items() if expiry > now}
        if action == "release":
            guard.free_slot("vendor", job)
            expiries.pop(job, None)
        else:
            admission = guard.admit(config, job, now, ttl_seconds=ttl)
            if admission.allowed:
                if job not in expiries:
                    token_times.append(now)
                expiries[job] = now + ttl
            else:
                assert admission.wait_seconds > 0
        assert len(expiries) <= cap
        assert set(expiries) == live_in_flight(guard, now)
    for first in range(len(token_times)):
        for last in range(first, len(token_times)):
            window = token_times[last] - token_times[first]
            assert last - first + 1 <= burst + rate * window + 1e-6


def test_an_interactive_job_refused_holds_batch_jobs_back_until_it_has_the_next_token(guard: ProviderGuard) -> None:
    config = provider(rate_per_second=1, burst=1)
    assert guard.admit(config, "batch_1", T0, interactive=False).allowed  # the batch takes the only token
    waiting = guard.admit(config, "interactive", T0 + 0.1, interactive_hold_seconds=5)
    assert not waiting.allowed and waiting.reason == "rate limit"
    # the token is back at T0 + 1, but the batch may not take it while the interactive job waits for it
    refused = guard.admit(config, "batch_2", T0 + 1.2, interactive=False)
    assert not refused.allowed and refused.reason == "an interactive job goes first"
    assert guard.admit(config, "interactive", T0 + 1.3).allowed
    assert guard.admit(config, "batch_2", T0 + 2.3, interactive=False).allowed  # the hold went with its admission


def test_an_interactive_jobs_hold_on_batch_jobs_expires_if_it_never_comes_back(guard: ProviderGuard) -> None:
    config = provider(rate_per_second=1, burst=1, max_in_flight=1)
    assert guard.admit(config, "batch_1", T0, interactive=False).allowed
    # refused for the cap; then the job is canceled and never asks again
    refused = guard.admit(config, "interactive", T0, interactive_hold_seconds=0.05)
    assert not refused.allowed and refused.reason.startswith("in-flight cap")
    guard.free_slot("vendor", "batch_1")
    time.sleep(0.1)  # the hold's own expiry, in Redis time
    assert guard.admit(config, "batch_2", T0 + 2, interactive=False).allowed
