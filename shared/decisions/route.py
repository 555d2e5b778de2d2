"""Where a routed job goes: the candidates a request allows when it is made (`plan`), the provider chosen from
what the cluster knows at submit (`choose`), and the move to the next candidate after a refusal that charged
nothing (`failed_over`).

The rule behind them is submit's: a job is never paid for twice. A refusal moves the job on only when the vendor
cannot have taken it (`moves_on`: a 429, a 5xx answer, insufficient credits, the vendor's own validation refusal,
a refused key); a submit whose outcome is unknown never does (shared/decisions/submit.py fails it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from shared import costs, lifecycle
from shared.errors import (
    AuthFailed,
    GenqueueError,
    InsufficientCredits,
    InvalidRequest,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)
from shared.models import Cost, GenerationRequest, Job, Route, RouteCandidate, RouteFailover
from shared.protection import BreakerState, ProviderStatus
from shared.providers.base import HttpAnswer
from shared.providers.catalog import estimate_cost
from shared.providers.routes import RouteTarget, honoured, route_targets, translated
from shared.settings import ProviderConfig, Settings

#: what `--route-policy` takes
POLICIES = ("cheapest", "fastest", "preferred")


@dataclass(frozen=True)
class ProviderState:
    """What the cluster knows of one candidate provider at submit time: its configuration (None with the reason
    when it cannot be used), its limits' status, and the mean render time seen there for the route's model."""

    config: ProviderConfig | None
    unusable: str | None = None
    status: ProviderStatus | None = None
    render_seconds: float | None = None


@dataclass(frozen=True)
class Chosen:
    """A routed job's provider for this submit: the job switched to it (in memory), its configuration (admitted),
    the route as decided and the candidate chosen."""

    job: Job
    config: ProviderConfig
    route: Route
    candidate: RouteCandidate


def usable_config(settings: Settings, provider: str) -> tuple[ProviderConfig | None, str | None]:
    """`provider`'s configuration, or None and why it is not configured (unknown, no base URL, no API key)."""
    try:
        config = settings.provider(provider)
    except InvalidRequest as exc:
        return None, f"not configured: {exc.message}"
    if config.api_key is None and config.dialect != "sandbox":
        return None, f"not configured: no GENQUEUE_PROVIDERS__{provider.upper()}__API_KEY"
    return config, None


def estimate_usd(cost: Cost, config: ProviderConfig | None) -> float | None:
    """`cost` in USD: its USD figure, else its credits at the provider's `usd_per_credit`; None when unknown."""
    return costs.in_usd(cost, None if config is None else config.usd_per_credit)


def candidate(target: RouteTarget, request: GenerationRequest, config: ProviderConfig | None) -> RouteCandidate:
    """`target` for the canonical `request`: its estimate (the provider's price settings first), and why it is
    passed over when it cannot honour the request exactly."""
    sent = translated(request, target)
    cost = estimate_cost(target.provider, sent, config.prices if config is not None else None)
    refusal = honoured(request, target)
    return RouteCandidate(
        provider=target.provider,
        model=target.model,
        estimate=cost,
        estimate_usd=estimate_usd(cost, config),
        skipped=None if refusal is None else f"cannot honour the request: {refusal}",
    )


def plan(provider: str, request: GenerationRequest, policy: str, settings: Settings) -> Route:
    """The route of a job made for `provider` (`auto` or a list) and canonical `request`, before anything is sent.

    Candidates that cannot honour the request, or are not configured, are recorded as passed over with why.
    InvalidRequest (nothing stored) for an unknown policy, a model without a route, a provider not on it, or
    when no candidate is left, naming each one's reason.
    """
    if policy not in POLICIES:
        raise InvalidRequest(f"route policy {policy!r} is not one of: {', '.join(POLICIES)}")
    targets = route_targets(request.model, provider)
    candidates = []
    for target in targets:
        config, unusable = usable_config(settings, target.provider)
        found = candidate(target, request, config)
        if found.skipped is None and unusable is not None:
            found = found.model_copy(update={"skipped": unusable})
        candidates.append(found)
    if all(found.skipped is not None for found in candidates):
        reasons = "; ".join(f"{found.provider}: {found.skipped}" for found in candidates)
        raise InvalidRequest(f"no provider of route {request.model} can take the job: {reasons}")
    route = Route(
        model=request.model,
        policy=policy,  # type: ignore[arg-type]  # checked against POLICIES above
        providers=[target.provider for target in targets],
        candidates=candidates,
    )
    return route.model_copy(update={"chosen": ranked(route)[0].provider})


def chosen_candidate(route: Route) -> RouteCandidate:
    """The candidate `route` chose (its provider, that provider's id of the route's model, the estimate there)."""
    return next(found for found in route.candidates if found.provider == route.chosen)


def passed_for_good(skipped: str | None) -> bool:
    """Whether a candidate passed over for `skipped` can never take the job: it cannot honour the request, or
    its provider is not configured (a limit, or an earlier refusal, may pass by)."""
    return skipped is not None and skipped.startswith(("cannot honour", "not configured"))


def choosable(route: Route) -> list[RouteCandidate]:
    """The candidates a routed job's submit may still choose: those not passed over for good."""
    return [found for found in route.candidates if not passed_for_good(found.skipped)]


def dearest_usd(route: Route) -> float | None:
    """The most the job may cost in USD wherever its submit sends it: the dearest estimate among the choosable
    candidates; None when one of them has no USD estimate."""
    estimates = [found.estimate_usd for found in choosable(route)]
    known = [value for value in estimates if value is not None]
    return None if len(known) < len(estimates) else max(known, default=0.0)


def ranked(route: Route) -> list[RouteCandidate]:
    """The candidates not passed over, best first by the route's policy (ties keep the route's order).

    cheapest: by USD estimate, unknown ones last; fastest: by observed render time, unknown ones last, then by
    USD estimate; preferred: the route's order.
    """
    order = {name: index for index, name in enumerate(route.providers)}
    open_ = [found for found in route.candidates if found.skipped is None]

    def unknown_last(value: float | None) -> tuple[bool, float]:
        return (value is None, value or 0.0)

    if route.policy == "cheapest":
        return sorted(open_, key=lambda found: (unknown_last(found.estimate_usd), order[found.provider]))
    if route.policy == "fastest":
        return sorted(
            open_,
            key=lambda found: (
                unknown_last(found.render_seconds),
                unknown_last(found.estimate_usd),
                order[found.provider],
            ),
        )
    return sorted(open_, key=lambda found: order[found.provider])


def capacity_reason(status: ProviderStatus | None, now: float) -> str | None:
    """Why a provider's limits would make a submit wait now (credits on hold, breaker open, rate budget or
    in-flight cap spent), or None. A half-open breaker is not a reason: admission lets one probe through."""
    if status is None:
        return None
    if status.credit_pause is not None:
        since = datetime.fromtimestamp(status.credit_pause.since, UTC).isoformat(timespec="seconds")
        return f"credits on hold since {since}: {status.credit_pause.message}"
    if status.breaker is BreakerState.OPEN and status.breaker_until is not None:
        return f"breaker open for {max(0.0, status.breaker_until - now):.0f} s more"
    if status.in_flight >= status.max_in_flight:
        return f"in-flight cap reached ({status.in_flight}/{status.max_in_flight})"
    if status.tokens < 1.0:
        return f"rate budget spent ({status.rate_per_second:g}/s)"
    return None


def choose(
    route: Route, request: GenerationRequest, states: dict[str, ProviderState], now: datetime
) -> tuple[Route, list[RouteCandidate]]:
    """The route re-decided at submit from `states`, and the candidates to try in order (first is `chosen`).

    A candidate is passed over when it cannot honour the request, is not configured, has refused this job before
    (while another candidate has not), or its limits would make it wait. When every configured candidate that
    honours the request would wait, they are all tried in policy order all the same, so admission's own waiting
    (and a credit pause's probes) apply rather than a stall. Empty when none is configured and honouring.
    """
    canonical = request.model_copy(update={"model": route.model})
    refused = {failover.provider for failover in route.failovers}
    by_provider = {target.provider: target for target in route_targets(route.model, ",".join(route.providers))}
    unix = now.timestamp()
    fixed: list[RouteCandidate] = []  # passed over only by what the job itself asks, or settings
    for name in route.providers:
        state = states.get(name, ProviderState(config=None, unusable="not configured"))
        found = candidate(by_provider[name], canonical, state.config)
        found = found.model_copy(update={"render_seconds": state.render_seconds})
        if found.skipped is None and state.config is None:
            found = found.model_copy(update={"skipped": state.unusable or "not configured"})
        fixed.append(found)
    untried = [found for found in fixed if found.skipped is None and found.provider not in refused]
    final: list[RouteCandidate] = []
    for found in fixed:
        if found.skipped is None and found.provider in refused and untried:
            failover = next(f for f in reversed(route.failovers) if f.provider == found.provider)
            found = found.model_copy(update={"skipped": f"refused this job earlier: {failover.code}"})
        elif found.skipped is None:
            waits = capacity_reason(states[found.provider].status, unix)
            if waits is not None:
                found = found.model_copy(update={"skipped": waits})
        final.append(found)
    decided = route.model_copy(update={"candidates": final, "decided_at": now})
    order = ranked(decided)
    if not order:  # every one waits (or has refused): admission decides among those the job may go to
        fallback = [f.model_copy(update={"skipped": None}) for f in final if _waits_only(f, refused, untried)]
        order = ranked(decided.model_copy(update={"candidates": fallback}))
    return decided.model_copy(update={"chosen": order[0].provider if order else None}), order


def _waits_only(found: RouteCandidate, refused: set[str], untried: list[RouteCandidate]) -> bool:
    """A candidate passed over only for its limits (or an earlier refusal while others remain untried)."""
    if found.skipped is None:
        return True
    if found.provider in refused and not untried:
        return True
    return not passed_for_good(found.skipped) and not found.skipped.startswith("refused this job")


def switched(job: Job, route: Route, chosen: RouteCandidate) -> Job:
    """`job` (not yet submitted) sent to `chosen` instead: its provider, the provider's model id, the estimate
    there, and the route as decided."""
    request = job.request.model_copy(update={"model": chosen.model})
    charge = job.charge.model_copy(update={"estimate": chosen.estimate})
    return job.model_copy(
        update={
            "provider": chosen.provider,
            "request": request,
            "cost": chosen.estimate,
            "charge": charge,
            "route": route.model_copy(update={"chosen": chosen.provider}),
        }
    )


def moves_on(exc: GenqueueError, answer: HttpAnswer | None) -> bool:
    """Whether a submit that ended in `exc` was refused without the vendor taking (or charging for) the job, so
    another provider may be asked at once: a 429, a 5xx answer, insufficient credits, the vendor's own
    validation refusal, a refused key. Never a send whose answer was lost, nor a 2xx genqueue could not read."""
    if isinstance(exc, ProviderUnavailable):
        return answer is not None and answer.status_code >= 500
    return isinstance(exc, RateLimited | InsufficientCredits | ProviderRejected | AuthFailed)


def next_candidate_left(route: Route, refusing: str) -> bool:
    """Whether a candidate other than `refusing` remains that has not refused the job, honours it and is configured
    (as the latest choice saw them)."""
    refused = {failover.provider for failover in route.failovers} | {refusing}
    return any(
        found.provider not in refused
        and (found.skipped is None or not found.skipped.startswith(("cannot honour", "not configured")))
        for found in route.candidates
    )


def failed_over(job: Job, task_id: str, exc: GenqueueError, now: datetime) -> Job | None:
    """The job back to submit at once after `job.provider` refused it without charging: the refusal recorded on
    its route, its intent withdrawn, its retries untouched. None when the step is no longer this task's."""
    if job.route is None:
        return None
    failover = RouteFailover(provider=job.provider, code=exc.code, message=exc.message[:300], at=now)
    route = job.route.model_copy(update={"failovers": [*job.route.failovers, failover]})
    withdrawn = job.model_copy(
        update={
            "route": route,
            "submit_started_at": None,
            "charge": job.charge.model_copy(update={"dialect": None}),
        }
    )
    return lifecycle.reschedule(withdrawn, task_id, now, 0.0)
